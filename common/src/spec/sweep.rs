//! `[sweep]` and `[slurm]`: how work is cut into units and supervised, and the sbatch settings
//! of the Slurm launcher. Neither changes a result (the plan's property test holds them out of
//! every unit id but `stimuli_per_unit` / `folds_per_unit`, which regroup work).

use serde::{Deserialize, Serialize};

use super::positive;
use crate::error::SpecError;

/// `[sweep]`: how work is cut into units and supervised.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Stimuli per capture unit.
    #[serde(default = "default_stimuli_per_unit")]
    pub stimuli_per_unit: usize,
    /// Folds per probe unit.
    #[serde(default = "default_folds_per_unit")]
    pub folds_per_unit: usize,
    /// Seconds a lease lives without a heartbeat.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: f64,
    /// Seconds between worker heartbeats.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: f64,
    /// Failed attempts before a unit is quarantined.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Base of the exponential retry backoff, seconds.
    #[serde(default = "default_backoff")]
    pub retry_backoff_s: f64,
}

/// `[slurm]`: sbatch settings for `--launcher slurm` (validated now, used by the Slurm launcher).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// `--partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default)]
    pub qos: Option<String>,
    /// `--time`, e.g. `01:00:00`, `2-00:00:00` or minutes.
    #[serde(default = "default_slurm_time")]
    pub time: String,
    /// `--gres`, e.g. `gpu:1`.
    #[serde(default)]
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default = "default_cpus")]
    pub cpus_per_task: u32,
    /// `--mem`, e.g. `16G`.
    #[serde(default)]
    pub mem: Option<String>,
    /// Array throttle (`%N`): tasks running at once.
    #[serde(default)]
    pub array_parallelism: Option<u32>,
    /// `--signal`: warning signal before the time limit, e.g. `B:USR1@120`.
    #[serde(default = "default_signal")]
    pub signal: String,
    /// Extra `#SBATCH` lines, verbatim (without the `#SBATCH` prefix).
    #[serde(default)]
    pub extra: Vec<String>,
}

fn default_stimuli_per_unit() -> usize {
    250
}
fn default_folds_per_unit() -> usize {
    5
}
fn default_ttl() -> f64 {
    30.0
}
fn default_heartbeat() -> f64 {
    5.0
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff() -> f64 {
    2.0
}
fn default_slurm_time() -> String {
    "01:00:00".into()
}
fn default_cpus() -> u32 {
    4
}
fn default_signal() -> String {
    "B:USR1@120".into()
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            stimuli_per_unit: default_stimuli_per_unit(),
            folds_per_unit: default_folds_per_unit(),
            lease_ttl_s: default_ttl(),
            heartbeat_s: default_heartbeat(),
            max_attempts: default_max_attempts(),
            retry_backoff_s: default_backoff(),
        }
    }
}
impl Default for SlurmSection {
    fn default() -> Self {
        SlurmSection {
            partition: None,
            account: None,
            qos: None,
            time: default_slurm_time(),
            gres: None,
            cpus_per_task: default_cpus(),
            mem: None,
            array_parallelism: None,
            signal: default_signal(),
            extra: Vec::new(),
        }
    }
}

impl SlurmSection {
    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        if !valid_slurm_time(&self.time) {
            return err(
                "slurm.time",
                format!("expected minutes, HH:MM:SS or D-HH:MM:SS, found {:?}", self.time),
            );
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || digits.len() + 1 < mem.len()
            {
                return err(
                    "slurm.mem",
                    format!("expected a size like 16G or 4000M, found {mem:?}"),
                );
            }
        }
        positive(file, "slurm.cpus_per_task", self.cpus_per_task as usize)?;
        if self.array_parallelism == Some(0) {
            return err("slurm.array_parallelism", "expected at least 1, found 0".into());
        }
        let sig_ok = self.signal.split_once('@').is_some_and(|(sig, secs)| {
            let sig = sig.strip_prefix("B:").unwrap_or(sig);
            !sig.is_empty()
                && sig.chars().all(|c| c.is_ascii_alphanumeric())
                && secs.parse::<u32>().is_ok()
        });
        if !sig_ok {
            return err(
                "slurm.signal",
                format!("expected [B:]SIGNAL@SECONDS like B:USR1@120, found {:?}", self.signal),
            );
        }
        for (i, line) in self.extra.iter().enumerate() {
            if line.contains('\n') || !line.starts_with("--") {
                return err(
                    &format!("slurm.extra[{i}]"),
                    format!("expected one sbatch option starting with --, found {line:?}"),
                );
            }
        }
        Ok(())
    }
}

fn valid_slurm_time(t: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !all_digits(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| all_digits(p))
}
