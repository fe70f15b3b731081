//! The one conversion of each unit's resolved settings (`common::settings`, embedded in the
//! unit by the plan) into the library config it runs with. Each destructures its settings
//! whole and builds the config without `..Default::default()`, so a field added on either side
//! fails to compile here instead of being filled by a default the unit id never saw.
//!
//! Free functions, not `From`: both sides are foreign to this crate (the orphan rule), and
//! neither `common` nor the libraries may depend on the other.

use alignment::{Distance, EmbeddingRegressionConfig, LinearProbeConfig};
use common::settings::{
    EarlyStopping, LinearProbeSettings, Permute, ProbeSettings, RegressionSettings,
};
use common::spec::{AlignmentDistance, ProbePrecision};

/// `probe::ProbeConfig` of a probe unit (its `folds` is the split, not a config field).
pub(crate) fn probe_config(s: &ProbeSettings) -> probe::ProbeConfig {
    let ProbeSettings {
        folds: _,
        n_components,
        alpha,
        alpha_grid,
        alpha_inner_folds,
        n_permutations,
        seed,
        permute,
        zscore,
        reselect_alpha_in_permutations,
        precision,
    } = s.clone();
    probe::ProbeConfig {
        n_components,
        alpha,
        n_permutations,
        seed,
        permute: match permute {
            Permute::TrainingPerFold => probe::Permute::TrainingPerFold,
            Permute::Pool => probe::Permute::Pool,
        },
        zscore,
        alpha_grid,
        reselect_alpha_in_permutations,
        alpha_inner_folds,
        precision: match precision {
            ProbePrecision::F64 => probe::Precision::F64,
            ProbePrecision::F32 => probe::Precision::F32,
        },
    }
}

/// `alignment::LinearProbeConfig` of a linear-probe unit.
pub(crate) fn linear_probe_config(s: &LinearProbeSettings) -> LinearProbeConfig {
    let LinearProbeSettings {
        folds,
        seed,
        lambda,
        learning_rate,
        batch_size,
        max_epochs,
        patience,
        min_delta,
        max_grad_norm,
        init_std,
        init_bias,
        early_stopping,
    } = *s;
    LinearProbeConfig {
        folds,
        seed,
        lambda,
        learning_rate,
        batch_size,
        max_epochs,
        patience,
        min_delta,
        max_grad_norm,
        init_std,
        init_bias,
        early_stopping: match early_stopping {
            EarlyStopping::TestLoss => alignment::EarlyStopping::TestLoss,
            EarlyStopping::ValidationLoss { fraction } => {
                alignment::EarlyStopping::ValidationLoss { fraction }
            }
        },
    }
}

/// `alignment::EmbeddingRegressionConfig` of an evaluate unit's regression.
pub(crate) fn regression_config(s: &RegressionSettings) -> EmbeddingRegressionConfig {
    let RegressionSettings { folds, seed, alphas, zscore, distance: d } = s.clone();
    EmbeddingRegressionConfig { folds, seed, alphas, zscore, distance: distance(d) }
}

/// The library's distance for a spec distance.
pub(crate) fn distance(d: AlignmentDistance) -> Distance {
    match d {
        AlignmentDistance::Cosine => Distance::Cosine,
        AlignmentDistance::Euclidean => Distance::Euclidean,
        AlignmentDistance::Dot => Distance::NegDot,
    }
}

#[cfg(test)]
mod tests {
    use common::spec::{AlignmentSection, AttributeProbeSection};

    use super::*;

    /// The spec's defaults are the paper's, and so are the libraries' `Default`s (kept for
    /// library users): the defaulted spec converts to exactly the library defaults.
    #[test]
    fn default_spec_settings_are_the_library_defaults() {
        let probe = AttributeProbeSection::default().probe_settings();
        assert_eq!(probe_config(&probe), probe::ProbeConfig::default());
        let section: AlignmentSection = serde_json::from_str(
            r#"{"triplets": "t.csv", "linear_probe": true, "embedding": "e.csv"}"#,
        )
        .unwrap();
        let linear = section.linear_probe_settings().unwrap();
        assert_eq!(linear_probe_config(&linear), LinearProbeConfig::default());
        let regression = section.evaluate_settings().regression.unwrap();
        assert_eq!(regression_config(&regression), EmbeddingRegressionConfig::default());
    }
}
