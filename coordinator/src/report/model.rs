//! The report model: every number, verdict, best cell, flag and note the report shows, made
//! once by [`super::reduce`] and only formatted by `render::markdown` and `render::html`.
//! What is missing is a `None` or an enum variant, never a sentinel inside a string.

use common::spec::{AlignmentSection, AttributeProbeSection};
use common::table::GridRow;

use super::alignment::AlignmentResults;
use super::calibration::Calibration;
use super::probe::{Cell, SummaryRow};
use super::status::RunStatus;

/// The whole report.
#[derive(Debug, Clone)]
pub(crate) struct ReportModel {
    pub(crate) settings: Settings,
    pub(crate) stimuli: Stimuli,
    /// Every merged (representation, attribute), in plan order.
    pub(crate) cells: Vec<Cell>,
    /// Per representation and group (`all` first).
    pub(crate) summary: Vec<SummaryRow>,
    /// Every representation planned for a probe unit or with results, in plan order.
    pub(crate) representations: Vec<Representation>,
    /// Attribute groups (from the dataset), in name order.
    pub(crate) groups: Vec<String>,
    /// Per attribute, in dataset order: the representation with the lowest mean RMSE.
    pub(crate) best_per_attribute: Vec<(String, Option<usize>)>,
    /// The text encoder's representation with the highest mean reduction (index into
    /// `representations`).
    pub(crate) best_text: Option<usize>,
    /// The per-fold permutation rate and, for a null control, its verdict; `None` without tests.
    pub(crate) calibration: Option<Calibration>,
    /// Per representation and attribute pair, in plan order.
    pub(crate) pairs: Vec<Pair>,
    /// The correlation-structure figure's representation and attributes.
    pub(crate) correlation: Correlation,
    pub(crate) grid: Grid,
    pub(crate) alignment: Option<Alignment>,
    /// Prompt directions and clusters (`[analysis.directions]`).
    pub(crate) directions: Option<super::directions::Directions>,
    /// Dense probes (`[analysis.dense_probe]`).
    pub(crate) dense: Option<super::dense::Dense>,
    /// The semantic lens (`[analysis.semantic]`).
    pub(crate) semantic: Option<super::semantic::Semantic>,
    pub(crate) status: RunStatus,
}

/// What the spec asked for, as the report states it.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) job_name: String,
    pub(crate) null_control: bool,
    /// The model directory's file name.
    pub(crate) model_name: String,
    pub(crate) model_path: String,
    /// The model kind and device, as `Debug` spells them.
    pub(crate) model_kind: String,
    pub(crate) device: String,
    pub(crate) probe: AttributeProbeSection,
    pub(crate) alignment: Option<AlignmentSection>,
    /// The resolved `spec.toml`.
    pub(crate) spec_toml: String,
}

/// The stimuli and attributes the run used.
#[derive(Debug, Clone)]
pub(crate) struct Stimuli {
    pub(crate) n: usize,
    pub(crate) dropped: usize,
    /// Attribute names with their group.
    pub(crate) attributes: Vec<(String, Option<String>)>,
}

/// A representation as the figures show it.
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    pub(crate) key: String,
    /// Its `all` summary row (index into `summary`), when it has results.
    pub(crate) all: Option<usize>,
    pub(crate) coverage: Coverage,
    pub(crate) fit: Fit,
}

/// How far a representation's probe units got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub(crate) planned: usize,
    pub(crate) committed: usize,
    pub(crate) quarantined: usize,
}

/// What a representation's fits say about themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// No results to judge.
    NoResults,
    Usable,
    /// The penalty shrank the probes to the training mean (`SHRUNK_DF`).
    Shrunk,
    /// No fold had a component to fit: the features are constant across stimuli.
    Constant,
}

/// The correlation of one attribute pair's human ratings and model predictions, within folds.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) representation: String,
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) human_r: f64,
    pub(crate) model_r: f64,
}

impl Pair {
    /// |model r| − |human r|: positive when the predictions of the pair go together more than
    /// the ratings do.
    pub(crate) fn abs_delta(&self) -> f64 {
        self.model_r.abs() - self.human_r.abs()
    }
}

/// The representation with the lowest mean RMSE, for the correlation-structure figure.
#[derive(Debug, Clone)]
pub(crate) enum Correlation {
    NoResults,
    /// Fewer than two attributes with results.
    TooFewAttributes,
    Shown {
        representation: String,
        attributes: Vec<String>,
        /// Its pairs, from `ReportModel::pairs`.
        pairs: Vec<Pair>,
    },
}

/// The P × α grid (paper Fig. 5).
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// Every grid row, in plan order (empty without a grid).
    pub(crate) rows: Vec<GridRow>,
    /// Each representation's best cell (lowest mean RMSE), in plan order.
    pub(crate) best_per_rep: Vec<GridRow>,
    /// The overall best cell's representation's whole grid; `None` when no cell is finite.
    pub(crate) best: Option<GridOfBest>,
    /// Representations of grid units without results, with their state.
    pub(crate) missing_units: Vec<(String, String)>,
}

/// The whole grid of the representation with the overall best cell.
#[derive(Debug, Clone)]
pub(crate) struct GridOfBest {
    pub(crate) cell: GridRow,
    /// Rows: P ascending; columns: α ascending.
    pub(crate) components: Vec<u32>,
    pub(crate) alphas: Vec<f64>,
    pub(crate) values: Vec<Vec<Option<f64>>>,
    /// The lowest and highest finite mean RMSE of the grid (the colour scale).
    pub(crate) range: (f64, f64),
    /// Position of the best cell in `values`.
    pub(crate) mark: Option<(usize, usize)>,
}

/// Odd-one-out alignment (`[analysis.alignment]`).
#[derive(Debug, Clone)]
pub(crate) struct Alignment {
    pub(crate) results: AlignmentResults,
    /// The primary distance's name.
    pub(crate) primary: String,
    /// Every column: OOOA per distance, then the linear probe, then the predicted embedding.
    pub(crate) series: Vec<Series>,
    /// One row per representation planned for an alignment unit or with results.
    pub(crate) rows: Vec<AlignmentRepRow>,
    /// The human embedding's own accuracy per distance.
    pub(crate) ceiling: Vec<(String, Option<f64>)>,
    pub(crate) best_odd_one_out: Option<(String, f64)>,
    pub(crate) best_linear_probe: Option<(String, f64)>,
    pub(crate) best_embedding: Option<(String, f64)>,
    /// Representations with ties under the primary distance: (rep, ties, triplets).
    pub(crate) ties: Vec<(String, u32, u32)>,
    /// Representations whose linear probe stayed at ln 3 in every fold.
    pub(crate) silent: Vec<String>,
    /// The primary OOOA as tap × context, for representations with a context.
    pub(crate) contexts: Vec<String>,
    pub(crate) by_context: Vec<(String, Vec<Option<f64>>)>,
    /// Alignment units without results: (what, state).
    pub(crate) missing_units: Vec<(String, String)>,
}

/// One column of the alignment table and figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Series {
    OddOneOut(usize),
    LinearProbe,
    PredictedEmbedding,
}

/// One representation's alignment numbers.
#[derive(Debug, Clone)]
pub(crate) struct AlignmentRepRow {
    pub(crate) representation: String,
    /// Whether it has any result (a planned unit may have none).
    pub(crate) has_results: bool,
    /// One value per [`Series`], in `Alignment::series` order.
    pub(crate) values: Vec<Option<f64>>,
    /// Linear-probe folds that ran, when fewer than planned (and some did).
    pub(crate) probe_folds_run: Option<usize>,
    pub(crate) r2: Option<f64>,
}
