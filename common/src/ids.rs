//! Stable content-hash ids. A unit id is a pure function of the unit (its coordinates and, for
//! stage-1 units, the resolved settings it runs with, `crate::settings`) and of fingerprints of
//! its inputs: the same spec gives the same ids, so a re-run or a resume skips committed units,
//! and a changed analysis re-runs only the units it touches.
//!
//! Unit kinds and ids are stored and sent as text (the state database, the gRPC messages, file
//! names); [`UnitKind`] and [`UnitId`] parse that text back with a typed error, so a string that
//! names no kind or is no id is refused where it enters, never carried along.

use serde::Serialize;

/// The kind of a unit of work, stored as its snake_case name (`capture`, `probe`, `grid`,
/// `alignment`): the `kind` tag of a unit descriptor, the prefix of its id and its `units.kind`
/// column in the state database.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum UnitKind {
    /// Runs the model on a shard of stimuli.
    Capture,
    /// Fits probes of one representation on a block of folds.
    Probe,
    /// The P × α grid of one representation.
    Grid,
    /// Odd-one-out alignment of one representation.
    Alignment,
    /// Prompt directions (biases, rankings) of one representation.
    Directions,
    /// Concept clusters of one representation.
    Clusters,
    /// Dense probes of one unreduced representation.
    Dense,
    /// Semantic-lens scores of one representation.
    Semantic,
}

impl UnitKind {
    /// The run-directory folder of this kind's outputs.
    pub fn output_dir(self) -> &'static str {
        match self {
            UnitKind::Capture => "features",
            UnitKind::Probe | UnitKind::Grid => "probes",
            UnitKind::Alignment => "alignment",
            UnitKind::Directions => "directions",
            UnitKind::Clusters => "clusters",
            UnitKind::Dense => "dense",
            UnitKind::Semantic => "semantic",
        }
    }

    /// Whether `dir` is the output folder of some kind.
    pub fn is_output_dir(dir: &str) -> bool {
        use strum::IntoEnumIterator;
        UnitKind::iter().any(|k| k.output_dir() == dir)
    }
}

/// Kinds order by name, as the text keys they replace did (status lines and summaries list
/// kinds in this order).
impl Ord for UnitKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_ref().cmp(other.as_ref())
    }
}

impl PartialOrd for UnitKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Id of a unit of work: its kind, `-` and 16 hex digits of blake3 over its canonical JSON
/// description (`probe-0123456789abcdef`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UnitId(pub String);

/// Text that is not a unit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a unit id: {0:?} (expected <kind>-<16 hex digits>, e.g. probe-0123456789abcdef)")]
pub struct UnitIdError(pub String);

impl UnitId {
    /// Hashes any serialisable description. serde_json writes struct fields in declaration
    /// order and maps in key order (BTreeMap), which makes the bytes canonical. `kind` is a
    /// [`UnitKind`] for a unit, or another name for a fingerprint that is no unit's id.
    pub fn of<T: Serialize>(kind: impl AsRef<str>, description: &T) -> UnitId {
        let kind = kind.as_ref();
        let json = serde_json::to_vec(description).expect("unit descriptions serialise");
        let mut hasher = blake3::Hasher::new();
        hasher.update(kind.as_bytes());
        hasher.update(&[0]);
        hasher.update(&json);
        UnitId(format!("{}-{}", kind, &hasher.finalize().to_hex()[..16]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind named by the id's prefix.
    pub fn kind(&self) -> Result<UnitKind, UnitIdError> {
        let (kind, _) = self.0.rsplit_once('-').ok_or_else(|| UnitIdError(self.0.clone()))?;
        kind.parse().map_err(|_| UnitIdError(self.0.clone()))
    }
}

impl std::str::FromStr for UnitId {
    type Err = UnitIdError;

    /// Accepts exactly what [`UnitId::of`] makes for a [`UnitKind`].
    fn from_str(s: &str) -> Result<UnitId, UnitIdError> {
        let bad = || UnitIdError(s.to_string());
        let (kind, hash) = s.rsplit_once('-').ok_or_else(bad)?;
        let hex = hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex || kind.parse::<UnitKind>().is_err() {
            return Err(bad());
        }
        Ok(UnitId(s.to_string()))
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
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn ids_are_stable_and_sensitive() {
        let a = UnitId::of("probe", &("text.1/mean", 3, 150.0));
        assert_eq!(a, UnitId::of("probe", &("text.1/mean", 3, 150.0)));
        assert_eq!(a, UnitId::of(UnitKind::Probe, &("text.1/mean", 3, 150.0)));
        assert_ne!(a, UnitId::of("probe", &("text.1/mean", 3, 151.0)));
        assert_ne!(a, UnitId::of("capture", &("text.1/mean", 3, 150.0)));
        assert!(a.0.starts_with("probe-") && a.0.len() == "probe-".len() + 16);
    }

    /// Would catch a kind renamed in one place only: every kind's name parses back to it, ids
    /// made for it parse and name it, and kinds sort by name.
    #[test]
    fn kinds_and_ids_parse_back_and_anything_else_is_refused() {
        for kind in UnitKind::iter() {
            assert_eq!(kind.to_string().parse::<UnitKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""), "serde and strum agree on the name");
            let id = UnitId::of(kind, &1);
            assert_eq!(id.0.parse::<UnitId>(), Ok(id.clone()));
            assert_eq!(id.kind(), Ok(kind));
        }
        let names: Vec<&str> = UnitKind::iter().map(<&str>::from).collect();
        let mut sorted: Vec<UnitKind> = UnitKind::iter().collect();
        sorted.sort();
        let mut by_name = names.clone();
        by_name.sort();
        assert_eq!(sorted.iter().map(|k| k.as_ref()).collect::<Vec<_>>(), by_name);
        for bad in [
            "",
            "probe",
            "probe-",
            "probe-0123",
            "probes-0123456789abcdef",
            "probe-0123456789ABCDEF",
            "captures-0123456789abcdef",
            "probe-0123456789abcdeg",
        ] {
            assert_eq!(bad.parse::<UnitId>(), Err(UnitIdError(bad.to_string())), "{bad:?}");
        }
    }
}
