//! Stable content-hash ids. A unit id is a pure function of the unit (its coordinates and, for
//! stage-1 units, the resolved settings it runs with, `crate::settings`) and of fingerprints of
//! its inputs: the same spec gives the same ids, so a re-run or a resume skips committed units,
//! and a changed analysis re-runs only the units it touches.

use serde::Serialize;

/// Id of a unit of work: 16 hex digits of blake3 over its canonical JSON description.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UnitId(pub String);

impl UnitId {
    /// Hashes any serialisable description. serde_json writes struct fields in declaration
    /// order and maps in key order (BTreeMap), which makes the bytes canonical.
    pub fn of<T: Serialize>(kind: &str, description: &T) -> UnitId {
        let json = serde_json::to_vec(description).expect("unit descriptions serialise");
        let mut hasher = blake3::Hasher::new();
        hasher.update(kind.as_bytes());
        hasher.update(&[0]);
        hasher.update(&json);
        UnitId(format!("{}-{}", kind, &hasher.finalize().to_hex()[..16]))
    }
}

impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// blake3 of bytes as hex, for content fingerprints (e.g. of a ratings table).
pub fn fingerprint(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_sensitive() {
        let a = UnitId::of("probe", &("text.1/mean", 3, 150.0));
        assert_eq!(a, UnitId::of("probe", &("text.1/mean", 3, 150.0)));
        assert_ne!(a, UnitId::of("probe", &("text.1/mean", 3, 151.0)));
        assert_ne!(a, UnitId::of("capture", &("text.1/mean", 3, 150.0)));
        assert!(a.0.starts_with("probe-") && a.0.len() == "probe-".len() + 16);
    }
}
