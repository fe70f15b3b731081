//! `JobSpec::validate`: every check of a whole spec that needs no file contents, each error
//! naming the file (or layer) and the key.

use super::{positive, CaptureMode, JobSpec, ModelKind, Pooling};
use crate::error::SpecError;

impl JobSpec {
    fn validate_lora(&self, file: &str) -> Result<(), SpecError> {
        for (i, lora) in self.model.lora.iter().enumerate() {
            let err = |key: &str, msg: String| {
                Err(SpecError::new(file, format!("model.lora[{i}].{key}"), msg))
            };
            if self.model.kind != ModelKind::Sd {
                return err("path", "LoRA merging is for `kind = \"sd\"` models".into());
            }
            if !lora.path.is_file() {
                return err("path", format!("{} is not a file", lora.path.display()));
            }
            if !lora.scale.is_finite() {
                return err("scale", format!("expected a finite number, found {}", lora.scale));
            }
        }
        Ok(())
    }

    /// `[analysis.directions]`/`[analysis.clusters]` need paired per-replicate rows of a
    /// generation run, and clusters need the directions' contrasts.
    fn validate_directions(&self, file: &str) -> Result<(), SpecError> {
        let a = &self.analysis;
        let section = match (&a.directions, &a.clusters) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {
                let msg = "needs [analysis.directions] (its contrasts file names the queries)";
                return Err(SpecError::new(file, "analysis.clusters", msg));
            }
            (Some(_), Some(c)) => {
                c.validate(file)?;
                "analysis.directions"
            }
            (Some(_), None) => "analysis.directions",
        };
        if let Some(d) = &a.directions {
            d.validate(file)?;
        }
        let g = &self.capture.generate;
        let needs = |key: &str, what: &str| {
            let msg = format!("[{section}] needs {what}");
            Err(SpecError::new(file, key, msg))
        };
        if self.model.kind != ModelKind::Sd || self.capture.mode != CaptureMode::Generate {
            return needs("capture.mode", "`kind = \"sd\"` and `mode = \"generate\"`");
        }
        if !g.keep_replicates {
            return needs("capture.generate.keep_replicates", "`keep_replicates = true`");
        }
        if g.noise != super::NoiseSeeding::PerReplicate {
            return needs("capture.generate.noise", "paired noise: `noise = \"per_replicate\"`");
        }
        if g.replicates < 2 {
            return needs("capture.generate.replicates", "at least 2 replicates");
        }
        Ok(())
    }

    /// `[analysis.dense_probe]` needs an `sd` model with an unreduced U-Net pooling, and one
    /// image per stimulus in generation mode (its labels are of that image).
    fn validate_dense(&self, file: &str) -> Result<(), SpecError> {
        let Some(d) = &self.analysis.dense_probe else { return Ok(()) };
        d.validate(file)?;
        let needs = |key: &str, what: &str| {
            Err(SpecError::new(file, key, format!("[analysis.dense_probe] needs {what}")))
        };
        if self.model.kind != ModelKind::Sd {
            return needs("model.kind", "an `sd` model");
        }
        if !self.capture.unet_pooling.contains(&Pooling::None) {
            return needs("capture.unet_pooling", "the unreduced U-Net pooling `\"none\"`");
        }
        if self.capture.mode == CaptureMode::Generate && self.capture.generate.replicates != 1 {
            return needs(
                "capture.generate.replicates",
                "one image per stimulus (`replicates = 1`)",
            );
        }
        Ok(())
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        let name = &self.job.name;
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || name.starts_with('.')
        {
            return err(
                "job.name",
                format!("expected letters, digits, '-', '_' or '.', found {name:?}"),
            );
        }
        for (key, path) in [
            ("model.path", &self.model.path),
            ("stimuli.file", &self.stimuli.file),
            ("targets.file", &self.targets.file),
        ] {
            if !path.exists() {
                return err(key, format!("{} does not exist", path.display()));
            }
        }
        self.validate_lora(file)?;
        if !self.stimuli.template.contains("{stimulus}") {
            return err("stimuli.template", "expected a template containing {stimulus}".into());
        }
        if self.targets.columns.is_empty() {
            return err("targets.columns", "expected at least one rating column".into());
        }
        let attributes: Vec<&String> = self.targets.columns.values().collect();
        let mut seen = std::collections::BTreeSet::new();
        for a in &attributes {
            if !seen.insert(a) {
                return err("targets.columns", format!("attribute {a:?} is named twice"));
            }
        }
        for attr in self.targets.groups.keys() {
            if !seen.contains(&attr) {
                return err(
                    &format!("targets.groups.{attr}"),
                    format!("no attribute {attr:?}; attributes are {attributes:?}"),
                );
            }
        }
        let c = &self.capture;
        if c.taps.is_empty() {
            return err("capture.taps", "expected at least one tap".into());
        }
        if let Some(bad) = c.pooling.iter().find(|p| !p.is_text()) {
            return err(
                "capture.pooling",
                format!("{:?} is not a text pooling; expected cls, mean or eos", bad.name()),
            );
        }
        if let Some(bad) = c.unet_pooling.iter().find(|p| !p.is_unet()) {
            return err(
                "capture.unet_pooling",
                format!(
                    "{:?} is not a U-Net pooling; expected mean, max, flatten, none or mask_mean",
                    bad.name()
                ),
            );
        }
        let masked = c.unet_pooling.contains(&Pooling::MaskMean);
        if masked && (c.mode != CaptureMode::Image || c.image.masks.is_none()) {
            return err(
                "capture.unet_pooling",
                "mask_mean needs mode = \"image\" and capture.image.masks (a folder of masks)"
                    .into(),
            );
        }
        if self.model.kind == ModelKind::Sd {
            match c.mode {
                CaptureMode::Generate => c.generate.validate(file)?,
                CaptureMode::Image => c.image.validate(file)?,
            }
        } else if c.mode == CaptureMode::Image || !c.unet_pooling.is_empty() {
            let key =
                if c.mode == CaptureMode::Image { "capture.mode" } else { "capture.unet_pooling" };
            return err(key, "needs model.kind = \"sd\"".into());
        }
        positive(file, "capture.batch_size", c.batch_size)?;
        positive(file, "capture.max_tokens", c.max_tokens)?;
        let p = &self.analysis.attribute_probe;
        if p.folds < 2 {
            return err(
                "analysis.attribute_probe.folds",
                format!("expected at least 2, found {}", p.folds),
            );
        }
        positive(file, "analysis.attribute_probe.components", p.components)?;
        if !(p.alpha.is_finite() && p.alpha > 0.0) {
            return err(
                "analysis.attribute_probe.alpha",
                format!("expected a positive number, found {}", p.alpha),
            );
        }
        if let Some(bad) = p.alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return err(
                "analysis.attribute_probe.alphas",
                format!("expected positive numbers, found {bad}"),
            );
        }
        if let Some(bad) = p.grid_alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return err(
                "analysis.attribute_probe.grid_alphas",
                format!("expected positive numbers, found {bad}"),
            );
        }
        if p.alpha_inner_folds == 1 {
            return err(
                "analysis.attribute_probe.alpha_inner_folds",
                "expected 0 (leave-one-out) or at least 2, found 1".into(),
            );
        }
        if p.grid_components.contains(&0) {
            return err(
                "analysis.attribute_probe.grid_components",
                "expected sizes of at least 1, found 0".into(),
            );
        }
        if p.grid_components.is_empty() != p.grid_alphas.is_empty() {
            return err(
                "analysis.attribute_probe.grid_components",
                "expected both grid_components and grid_alphas, or neither".into(),
            );
        }
        if let Some(a) = &self.analysis.alignment {
            a.validate(file)?;
        }
        self.validate_directions(file)?;
        self.validate_dense(file)?;
        if let Some(s) = &self.analysis.semantic {
            s.validate(file)?;
        }
        let s = &self.sweep;
        positive(file, "sweep.stimuli_per_unit", s.stimuli_per_unit)?;
        positive(file, "sweep.folds_per_unit", s.folds_per_unit)?;
        positive(file, "sweep.max_attempts", s.max_attempts as usize)?;
        for (key, v) in [
            ("sweep.lease_ttl_s", s.lease_ttl_s),
            ("sweep.heartbeat_s", s.heartbeat_s),
            ("sweep.retry_backoff_s", s.retry_backoff_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return err(key, format!("expected a positive number of seconds, found {v}"));
            }
        }
        if s.heartbeat_s * 2.0 > s.lease_ttl_s {
            return err(
                "sweep.heartbeat_s",
                format!(
                    "expected at most half of sweep.lease_ttl_s ({}), found {}",
                    s.lease_ttl_s, s.heartbeat_s
                ),
            );
        }
        self.slurm.validate(file)
    }
}
