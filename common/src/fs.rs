//! Atomic file writes and checksums. A file in the run directory is either absent or complete:
//! it is written to a temporary name beside its target, fsynced, renamed, and the directory is
//! fsynced, so a worker killed mid-write never leaves a truncated output under a real name.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Writes a file atomically: `write` fills a temporary file beside `target`, which is then
/// fsynced and renamed over `target`.
pub fn write_atomic<F>(target: &Path, write: F) -> Result<(), DataError>
where
    F: FnOnce(&mut File) -> Result<(), DataError>,
{
    let tmp = temp_path(target);
    let mut file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = write(&mut file).and_then(|()| {
        file.flush().map_err(|e| DataError::io(&tmp, e))?;
        file.sync_all().map_err(|e| DataError::io(&tmp, e))
    });
    drop(file);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, target).map_err(|e| DataError::io(target, e))?;
    if let Some(dir) = target.parent() {
        // Persist the rename itself; without this a power loss can forget the new name.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes bytes atomically.
pub fn write_bytes_atomic(target: &Path, bytes: &[u8]) -> Result<(), DataError> {
    write_atomic(target, |f| f.write_all(bytes).map_err(|e| DataError::io(target, e)))
}

/// The temporary name used while `target` is being written. It starts with a dot and ends in
/// `.tmp`, so readers that list a directory never mistake it for an output.
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let unique = format!(".{name}.{}.{}.tmp", std::process::id(), nanos());
    target.with_file_name(unique)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// blake3 of a file's bytes, as lowercase hex, and its length.
pub fn checksum_file(path: &Path) -> Result<(String, u64), DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().to_hex().to_string(), len))
}

/// How a file compares with the blake3 checksum recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The file hashes to the recorded checksum.
    Matches,
    /// The file is there but hashes to something else (flipped bits, a truncated or replaced
    /// copy): `found` is its checksum now, `bytes` its length.
    Differs {
        /// blake3 of the file as it is now, hex.
        found: String,
        /// Its length in bytes.
        bytes: u64,
    },
    /// The file cannot be read (deleted, renamed, permissions): the error, in words.
    Unreadable(String),
}

impl Verification {
    /// Whether the file is exactly what was recorded.
    pub fn matches(&self) -> bool {
        matches!(self, Verification::Matches)
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Matches => write!(f, "matches its checksum"),
            Verification::Differs { found, bytes } => {
                write!(f, "checksum is now {found} ({bytes} bytes)")
            }
            Verification::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Compares a file with the blake3 checksum (`expected`, hex) recorded when it was committed.
/// Comparison is case-insensitive on the hex digits.
pub fn verify_file(path: &Path, expected: &str) -> Verification {
    match checksum_file(path) {
        Ok((found, _)) if found.eq_ignore_ascii_case(expected) => Verification::Matches,
        Ok((found, bytes)) => Verification::Differs { found, bytes },
        Err(DataError::Io { source, .. }) => Verification::Unreadable(source.to_string()),
        Err(e) => Verification::Unreadable(e.to_string()),
    }
}

/// Moves `path` into `dir` (created if needed) under its own name, never deleting anything: if
/// that name is taken there, a numbered suffix is added. Returns the new path.
pub fn move_aside(path: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut target = dir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_and_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.parquet");
        write_bytes_atomic(&target, b"hello").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        let failed = dir.path().join("b.parquet");
        let err = write_atomic(&failed, |_| Err(DataError::table("x", "boom")));
        assert!(err.is_err());
        assert!(!failed.exists());
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "only the completed file remains: {names:?}");
        let (sum, len) = checksum_file(&target).unwrap();
        assert_eq!(len, 5);
        assert_eq!(sum, blake3::hash(b"hello").to_hex().to_string());
    }

    #[test]
    fn verification_tells_a_matching_a_changed_and_a_missing_file_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let mut bytes = vec![7u8; 4096];
        write_bytes_atomic(&path, &bytes).unwrap();
        let (sum, _) = checksum_file(&path).unwrap();
        assert_eq!(verify_file(&path, &sum), Verification::Matches);
        assert!(verify_file(&path, &sum.to_uppercase()).matches(), "hex case does not matter");
        // 16 bytes flipped in the middle: same length, another checksum.
        for b in &mut bytes[2000..2016] {
            *b ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        match verify_file(&path, &sum) {
            Verification::Differs { found, bytes: n } => {
                assert_ne!(found, sum);
                assert_eq!(n, 4096);
            }
            other => panic!("a flipped file must differ: {other:?}"),
        }
        // Moved aside, never deleted; a second file of the same name gets a suffix.
        let aside = dir.path().join("corrupt");
        let moved = move_aside(&path, &aside).unwrap();
        assert_eq!(moved, aside.join("f.parquet"));
        assert!(matches!(verify_file(&path, &sum), Verification::Unreadable(_)));
        std::fs::write(&path, b"again").unwrap();
        assert_eq!(move_aside(&path, &aside).unwrap(), aside.join("f.parquet.1"));
        assert_eq!(std::fs::read(aside.join("f.parquet")).unwrap(), bytes);
    }
}
