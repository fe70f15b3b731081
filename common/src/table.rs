//! Parquet schemas of the run directory. API boundary: pandas, polars and DuckDB read these.
//!
//! * Features (`features/<unit>.a<n>.parquet`): columns `representation` (utf8), `stimulus`
//!   (u32, index into `dataset.json`), `values` (list of f32 or f16). One row group per
//!   representation, in the order listed in the key-value metadata `diffprobe.representations`,
//!   so a probe unit reads only its representation's bytes.
//! * Probe rows (`probes/<unit>.a<n>.parquet`): one row per (representation, attribute, fold)
//!   with the fold's RMSE, baseline, Pearson r, permutation p, the null RMSEs and the out-of-fold
//!   predictions.
//! * Alignment rows (`alignment/<unit>.a<n>.parquet`, merged into `report/alignment.parquet`):
//!   one row per (representation, analysis, distance, fold), see [`AlignmentRow`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float16Array, Float32Array, Float64Array, ListArray,
    RecordBatch, StringArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Float16Type, Float32Type, Float64Type, Schema, UInt32Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::spec::StorageDtype;

const REPRESENTATIONS_KEY: &str = "diffprobe.representations";

/// One representation's block in a features file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBlock {
    /// Representation key, e.g. `text.3/mean`.
    pub key: String,
    /// Feature width D.
    pub dim: usize,
    /// Stimulus indices, one per row.
    pub stimuli: Vec<u32>,
    /// Row-major values, `stimuli.len() × dim`.
    pub values: Vec<f32>,
}

fn writer_props() -> WriterProperties {
    // Fixed properties (no timestamps): equal inputs give byte-identical files.
    WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_created_by("diffprobe".into())
        .build()
}

fn list_field(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

fn features_schema(dtype: StorageDtype) -> Arc<Schema> {
    let item = match dtype {
        StorageDtype::F32 => DataType::Float32,
        StorageDtype::F16 => DataType::Float16,
    };
    Arc::new(Schema::new(vec![
        Field::new("representation", DataType::Utf8, false),
        Field::new("stimulus", DataType::UInt32, false),
        Field::new("values", list_field(item), false),
    ]))
}

fn offsets(rows: usize, width: usize) -> OffsetBuffer<i32> {
    OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows))
}

/// Writes a features file: one row group per block, to `file` (already open, e.g. a temp file).
pub fn write_features(
    file: &mut File,
    path: &Path,
    blocks: &[FeatureBlock],
    dtype: StorageDtype,
) -> Result<(), DataError> {
    let schema = features_schema(dtype);
    let index: Vec<(&str, usize)> = blocks.iter().map(|b| (b.key.as_str(), b.dim)).collect();
    let meta =
        KeyValue::new(REPRESENTATIONS_KEY.into(), serde_json::to_string(&index).expect("json"));
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let arrow_err = |e| DataError::Arrow { path: path.into(), source: e };
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(writer_props())).map_err(pq)?;
    writer.append_key_value_metadata(meta);
    for b in blocks {
        let rows = b.stimuli.len();
        if b.values.len() != rows * b.dim {
            return Err(DataError::table(
                path,
                format!("{}: {} values for {rows} rows of width {}", b.key, b.values.len(), b.dim),
            ));
        }
        let values: ArrayRef = match dtype {
            StorageDtype::F32 => Arc::new(Float32Array::from(b.values.clone())),
            StorageDtype::F16 => Arc::new(Float16Array::from_iter_values(
                b.values.iter().map(|&v| half::f16::from_f32(v)),
            )),
        };
        let item = values.data_type().clone();
        let list = ListArray::try_new(
            Arc::new(Field::new("item", item, false)),
            offsets(rows, b.dim),
            values,
            None,
        )
        .map_err(arrow_err)?;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![b.key.as_str(); rows])),
                Arc::new(UInt32Array::from(b.stimuli.clone())),
                Arc::new(list),
            ],
        )
        .map_err(arrow_err)?;
        writer.write(&batch).map_err(pq)?;
        writer.flush().map_err(pq)?; // ends the row group: one per representation
    }
    writer.close().map_err(pq)?;
    Ok(())
}

/// The (representation key, width) of each row group of a features file.
pub fn feature_index(path: &Path) -> Result<Vec<(String, usize)>, DataError> {
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    index_of(path, &builder)
}

fn index_of(
    path: &Path,
    builder: &ParquetRecordBatchReaderBuilder<File>,
) -> Result<Vec<(String, usize)>, DataError> {
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.iter()
        .find(|k| k.key == REPRESENTATIONS_KEY)
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| {
            DataError::table(path, format!("missing key-value metadata {REPRESENTATIONS_KEY}"))
        })
}

/// Reads one representation's block from a features file, touching only its row group.
pub fn read_feature_block(path: &Path, key: &str) -> Result<FeatureBlock, DataError> {
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let index = index_of(path, &builder)?;
    let (group, dim) = index
        .iter()
        .enumerate()
        .find(|(_, (k, _))| k == key)
        .map(|(i, (_, d))| (i, *d))
        .ok_or_else(|| {
            DataError::table(
                path,
                format!(
                    "no representation {key:?}; file has {:?}",
                    index.iter().map(|x| &x.0).collect::<Vec<_>>()
                ),
            )
        })?;
    let reader = builder.with_row_groups(vec![group]).build().map_err(pq)?;
    let mut block =
        FeatureBlock { key: key.to_string(), dim, stimuli: Vec::new(), values: Vec::new() };
    for batch in reader {
        let batch = batch.map_err(|e| DataError::Arrow { path: path.into(), source: e })?;
        let stim = batch.column(1).as_primitive::<UInt32Type>();
        block.stimuli.extend(stim.values().iter().copied());
        let list = batch.column(2).as_list::<i32>();
        let vals = list.values();
        match vals.data_type() {
            DataType::Float32 => {
                block.values.extend(vals.as_primitive::<Float32Type>().values().iter().copied())
            }
            DataType::Float16 => block
                .values
                .extend(vals.as_primitive::<Float16Type>().values().iter().map(|v| v.to_f32())),
            other => {
                return Err(DataError::table(
                    path,
                    format!("values column has type {other}, expected a list of f32 or f16"),
                ))
            }
        }
    }
    if block.values.len() != block.stimuli.len() * dim {
        return Err(DataError::table(
            path,
            format!(
                "{key}: {} values for {} rows of width {dim}",
                block.values.len(),
                block.stimuli.len()
            ),
        ));
    }
    Ok(block)
}

/// One probe result: a (representation, attribute, fold).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRow {
    /// Representation key.
    pub representation: String,
    /// Attribute index into `dataset.json`'s attributes.
    pub attribute: u32,
    /// Attribute name.
    pub attribute_name: String,
    /// Fold index.
    pub fold: u32,
    /// PCA components used.
    pub n_components: u32,
    /// Ridge penalty used (fixed, or chosen by leave-one-out from the spec's grid).
    pub alpha: f64,
    /// Held-out RMSE.
    pub rmse: f64,
    /// Held-out RMSE of predicting the training mean.
    pub baseline_rmse: f64,
    /// Pearson r between predictions and ratings within the fold.
    pub pearson_r: f64,
    /// Permutation p-value.
    pub p_value: f64,
    /// Effective degrees of freedom of the fit, `Σ λ_p / (λ_p + α)` over the retained
    /// components (`probe::effective_df`); below about 1 the fit is shrunk to the mean.
    pub effective_df: f64,
    /// Held-out RMSE of each permutation, in permutation order.
    pub null_rmse: Vec<f64>,
    /// Test stimulus indices.
    pub test_indices: Vec<u32>,
    /// Out-of-fold predictions, aligned with `test_indices`.
    pub predictions: Vec<f64>,
}

fn probe_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("representation", DataType::Utf8, false),
        Field::new("attribute", DataType::UInt32, false),
        Field::new("attribute_name", DataType::Utf8, false),
        Field::new("fold", DataType::UInt32, false),
        Field::new("n_components", DataType::UInt32, false),
        Field::new("alpha", DataType::Float64, false),
        Field::new("rmse", DataType::Float64, false),
        Field::new("baseline_rmse", DataType::Float64, false),
        Field::new("pearson_r", DataType::Float64, false),
        Field::new("p_value", DataType::Float64, false),
        Field::new("effective_df", DataType::Float64, false),
        Field::new("null_rmse", list_field(DataType::Float64), false),
        Field::new("test_indices", list_field(DataType::UInt32), false),
        Field::new("predictions", list_field(DataType::Float64), false),
    ]))
}

fn list_of<T: Array + 'static>(
    lengths: impl Iterator<Item = usize>,
    values: T,
) -> Result<ListArray, arrow::error::ArrowError> {
    let item = values.data_type().clone();
    ListArray::try_new(
        Arc::new(Field::new("item", item, false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    )
}

/// Writes probe rows as one record batch.
pub fn write_probe_rows(file: &mut File, path: &Path, rows: &[ProbeRow]) -> Result<(), DataError> {
    let arrow_err = |e| DataError::Arrow { path: path.into(), source: e };
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let f64s = |f: fn(&ProbeRow) -> f64| {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) as ArrayRef
    };
    let u32s = |f: fn(&ProbeRow) -> u32| {
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.representation.as_str()))),
        u32s(|r| r.attribute),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.attribute_name.as_str()))),
        u32s(|r| r.fold),
        u32s(|r| r.n_components),
        f64s(|r| r.alpha),
        f64s(|r| r.rmse),
        f64s(|r| r.baseline_rmse),
        f64s(|r| r.pearson_r),
        f64s(|r| r.p_value),
        f64s(|r| r.effective_df),
        Arc::new(
            list_of(
                rows.iter().map(|r| r.null_rmse.len()),
                Float64Array::from_iter_values(
                    rows.iter().flat_map(|r| r.null_rmse.iter().copied()),
                ),
            )
            .map_err(arrow_err)?,
        ),
        Arc::new(
            list_of(
                rows.iter().map(|r| r.test_indices.len()),
                UInt32Array::from_iter_values(
                    rows.iter().flat_map(|r| r.test_indices.iter().copied()),
                ),
            )
            .map_err(arrow_err)?,
        ),
        Arc::new(
            list_of(
                rows.iter().map(|r| r.predictions.len()),
                Float64Array::from_iter_values(
                    rows.iter().flat_map(|r| r.predictions.iter().copied()),
                ),
            )
            .map_err(arrow_err)?,
        ),
    ];
    let batch = RecordBatch::try_new(probe_schema(), columns).map_err(arrow_err)?;
    let mut writer =
        ArrowWriter::try_new(file, probe_schema(), Some(writer_props())).map_err(pq)?;
    writer.write(&batch).map_err(pq)?;
    writer.close().map_err(pq)?;
    Ok(())
}

/// Every record batch of a file whose columns must be `schema`'s (names and order).
fn read_batches(path: &Path, schema: &Schema, what: &str) -> Result<Vec<RecordBatch>, DataError> {
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?.build().map_err(pq)?;
    let mut batches = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| DataError::Arrow { path: path.into(), source: e })?;
        let names = |s: &Schema| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        if names(&b.schema()) != names(schema) {
            return Err(DataError::table(
                path,
                format!("not {what} (columns {:?})", names(&b.schema())),
            ));
        }
        batches.push(b);
    }
    Ok(batches)
}

/// Reads every probe row of a file.
pub fn read_probe_rows(path: &Path) -> Result<Vec<ProbeRow>, DataError> {
    let mut rows = Vec::new();
    for b in read_batches(path, &probe_schema(), "a probe-rows file")? {
        let s = |i: usize| b.column(i).as_string::<i32>().clone();
        let u = |i: usize| b.column(i).as_primitive::<UInt32Type>().clone();
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
        let (rep, attr, name, fold, ncomp) = (s(0), u(1), s(2), u(3), u(4));
        let (alpha, rmse, base, r, p, df) = (f(5), f(6), f(7), f(8), f(9), f(10));
        let (nulls, tests, preds) = (
            b.column(11).as_list::<i32>(),
            b.column(12).as_list::<i32>(),
            b.column(13).as_list::<i32>(),
        );
        for i in 0..b.num_rows() {
            rows.push(ProbeRow {
                representation: rep.value(i).to_string(),
                attribute: attr.value(i),
                attribute_name: name.value(i).to_string(),
                fold: fold.value(i),
                n_components: ncomp.value(i),
                alpha: alpha.value(i),
                rmse: rmse.value(i),
                baseline_rmse: base.value(i),
                pearson_r: r.value(i),
                p_value: p.value(i),
                effective_df: df.value(i),
                null_rmse: nulls.value(i).as_primitive::<Float64Type>().values().to_vec(),
                test_indices: tests.value(i).as_primitive::<UInt32Type>().values().to_vec(),
                predictions: preds.value(i).as_primitive::<Float64Type>().values().to_vec(),
            });
        }
    }
    Ok(rows)
}

/// One cell of the hyper-parameter grid of a representation.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRow {
    /// Representation key.
    pub representation: String,
    /// Fold the grid was computed on.
    pub fold: u32,
    /// PCA size asked for.
    pub components: u32,
    /// PCA size used (capped by training size, width and rank).
    pub n_components: u32,
    /// Ridge penalty.
    pub alpha: f64,
    /// Held-out RMSE averaged over attributes.
    pub mean_rmse: f64,
}

fn grid_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("representation", DataType::Utf8, false),
        Field::new("fold", DataType::UInt32, false),
        Field::new("components", DataType::UInt32, false),
        Field::new("n_components", DataType::UInt32, false),
        Field::new("alpha", DataType::Float64, false),
        Field::new("mean_rmse", DataType::Float64, false),
    ]))
}

/// Writes grid rows (a grid unit's output, and the merged `report/grid.parquet`).
pub fn write_grid_rows(file: &mut File, path: &Path, rows: &[GridRow]) -> Result<(), DataError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.representation.as_str()))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.fold))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.components))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.n_components))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.alpha))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.mean_rmse))),
    ];
    let batch = RecordBatch::try_new(grid_schema(), columns)
        .map_err(|e| DataError::Arrow { path: path.into(), source: e })?;
    write_batch(file, path, &batch)
}

/// Reads grid rows.
pub fn read_grid_rows(path: &Path) -> Result<Vec<GridRow>, DataError> {
    let mut rows = Vec::new();
    for b in read_batches(path, &grid_schema(), "a grid file")? {
        let rep = b.column(0).as_string::<i32>().clone();
        let u = |i: usize| b.column(i).as_primitive::<UInt32Type>().clone();
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
        let (fold, comps, used, alpha, rmse) = (u(1), u(2), u(3), f(4), f(5));
        for i in 0..b.num_rows() {
            rows.push(GridRow {
                representation: rep.value(i).to_string(),
                fold: fold.value(i),
                components: comps.value(i),
                n_components: used.value(i),
                alpha: alpha.value(i),
                mean_rmse: rmse.value(i),
            });
        }
    }
    Ok(rows)
}

/// One alignment result (`alignment/<unit>.a<n>.parquet` and the merged
/// `report/alignment.parquet`, same columns). Which fields are set depends on `analysis`:
///
/// | `analysis` | `distance` | `fold` | set |
/// |---|---|---|---|
/// | `odd_one_out` | each spec distance | null | accuracy, correct, ties, n_triplets, n_concepts, chance |
/// | `linear_probe` | `dot` | a fold | accuracy, correct, n_triplets and n_concepts (test fold), chance, n_train, n_dropped, epochs, stopped_early, train_loss, test_loss |
/// | `linear_probe` | `dot` | null (merged: mean over folds) | accuracy, correct and n_triplets (Σ over folds), n_concepts, chance |
/// | `embedding_regression` | null | a fold | r2 (mean over dimensions), r2_dimensions, alpha_dimensions, n_concepts (test fold) |
/// | `embedding_regression` | each spec distance | null | accuracy, correct, ties, n_triplets of the out-of-fold predicted embedding; r2 (overall), r2_dimensions (mean over folds) |
/// | `human_embedding` | each spec distance | null | accuracy, correct, ties, n_triplets of the human embedding itself (merged only; representation empty) |
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlignmentRow {
    /// Representation key (empty for `human_embedding`).
    pub representation: String,
    /// `odd_one_out`, `linear_probe`, `embedding_regression` or `human_embedding`.
    pub analysis: String,
    /// `cosine`, `euclidean` or `dot`; null for the per-fold R² of the embedding regression.
    pub distance: Option<String>,
    /// Fold; null for results over all concepts (or, merged, the mean over folds).
    pub fold: Option<u32>,
    /// Odd-one-out accuracy (ties count as wrong).
    pub accuracy: Option<f64>,
    /// Triplets answered as the human did.
    pub correct: Option<u32>,
    /// Triplets without a unique closest pair (counted wrong), where the rows score triplets
    /// by a distance (not the linear probe's).
    pub ties: Option<u32>,
    /// Triplets scored.
    pub n_triplets: u32,
    /// Concepts involved (all, or the test fold's).
    pub n_concepts: u32,
    /// Accuracy of guessing (1/3) where an accuracy is reported.
    pub chance: Option<f64>,
    /// R² of the embedding regression.
    pub r2: Option<f64>,
    /// R² per embedding dimension.
    pub r2_dimensions: Vec<f64>,
    /// Ridge α chosen per embedding dimension (per-fold rows).
    pub alpha_dimensions: Vec<f64>,
    /// Linear probe: training triplets.
    pub n_train: Option<u32>,
    /// Linear probe: triplets dropped because they mix training and test concepts.
    pub n_dropped: Option<u32>,
    /// Linear probe: epochs run.
    pub epochs: Option<u32>,
    /// Linear probe: whether early stopping ended training.
    pub stopped_early: Option<bool>,
    /// Linear probe: mean cross-entropy of the last epoch's training batches.
    pub train_loss: Option<f64>,
    /// Linear probe: mean cross-entropy on the test triplets.
    pub test_loss: Option<f64>,
}

/// The `analysis` values of [`AlignmentRow`].
pub mod analysis {
    /// Odd-one-out accuracy of the representation itself.
    pub const ODD_ONE_OUT: &str = "odd_one_out";
    /// The linear-probe alignment.
    pub const LINEAR_PROBE: &str = "linear_probe";
    /// Ridge regression onto the human embedding.
    pub const EMBEDDING_REGRESSION: &str = "embedding_regression";
    /// Odd-one-out accuracy of the human embedding itself.
    pub const HUMAN_EMBEDDING: &str = "human_embedding";
}

fn alignment_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("representation", DataType::Utf8, false),
        Field::new("analysis", DataType::Utf8, false),
        Field::new("distance", DataType::Utf8, true),
        Field::new("fold", DataType::UInt32, true),
        Field::new("accuracy", DataType::Float64, true),
        Field::new("correct", DataType::UInt32, true),
        Field::new("ties", DataType::UInt32, true),
        Field::new("n_triplets", DataType::UInt32, false),
        Field::new("n_concepts", DataType::UInt32, false),
        Field::new("chance", DataType::Float64, true),
        Field::new("r2", DataType::Float64, true),
        Field::new("r2_dimensions", list_field(DataType::Float64), false),
        Field::new("alpha_dimensions", list_field(DataType::Float64), false),
        Field::new("n_train", DataType::UInt32, true),
        Field::new("n_dropped", DataType::UInt32, true),
        Field::new("epochs", DataType::UInt32, true),
        Field::new("stopped_early", DataType::Boolean, true),
        Field::new("train_loss", DataType::Float64, true),
        Field::new("test_loss", DataType::Float64, true),
    ]))
}

/// Writes alignment rows as one record batch (a unit's output, and the merged table).
pub fn write_alignment_rows(
    file: &mut File,
    path: &Path,
    rows: &[AlignmentRow],
) -> Result<(), DataError> {
    let arrow_err = |e| DataError::Arrow { path: path.into(), source: e };
    let f64s = |f: fn(&AlignmentRow) -> Option<f64>| {
        Arc::new(rows.iter().map(f).collect::<Float64Array>()) as ArrayRef
    };
    let u32s = |f: fn(&AlignmentRow) -> Option<u32>| {
        Arc::new(rows.iter().map(f).collect::<UInt32Array>()) as ArrayRef
    };
    let lists = |f: fn(&AlignmentRow) -> &[f64]| -> Result<ArrayRef, DataError> {
        Ok(Arc::new(
            list_of(
                rows.iter().map(|r| f(r).len()),
                Float64Array::from_iter_values(rows.iter().flat_map(|r| f(r).iter().copied())),
            )
            .map_err(arrow_err)?,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.representation.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.analysis.as_str()))),
        Arc::new(rows.iter().map(|r| r.distance.as_deref()).collect::<StringArray>()),
        u32s(|r| r.fold),
        f64s(|r| r.accuracy),
        u32s(|r| r.correct),
        u32s(|r| r.ties),
        u32s(|r| Some(r.n_triplets)),
        u32s(|r| Some(r.n_concepts)),
        f64s(|r| r.chance),
        f64s(|r| r.r2),
        lists(|r| &r.r2_dimensions)?,
        lists(|r| &r.alpha_dimensions)?,
        u32s(|r| r.n_train),
        u32s(|r| r.n_dropped),
        u32s(|r| r.epochs),
        Arc::new(rows.iter().map(|r| r.stopped_early).collect::<BooleanArray>()),
        f64s(|r| r.train_loss),
        f64s(|r| r.test_loss),
    ];
    let batch = RecordBatch::try_new(alignment_schema(), columns).map_err(arrow_err)?;
    write_batch(file, path, &batch)
}

/// Reads alignment rows.
pub fn read_alignment_rows(path: &Path) -> Result<Vec<AlignmentRow>, DataError> {
    let mut rows = Vec::new();
    for b in read_batches(path, &alignment_schema(), "an alignment file")? {
        let s = |i: usize| b.column(i).as_string::<i32>().clone();
        let u = |i: usize| b.column(i).as_primitive::<UInt32Type>().clone();
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
        let opt_f = |a: &Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        let opt_u = |a: &UInt32Array, i: usize| a.is_valid(i).then(|| a.value(i));
        let (rep, analysis, distance, fold) = (s(0), s(1), s(2), u(3));
        let (accuracy, correct, ties, n_triplets, n_concepts, chance, r2) =
            (f(4), u(5), u(6), u(7), u(8), f(9), f(10));
        let (r2_dims, alpha_dims) = (b.column(11).as_list::<i32>(), b.column(12).as_list::<i32>());
        let (n_train, n_dropped, epochs) = (u(13), u(14), u(15));
        let stopped = b.column(16).as_boolean().clone();
        let (train_loss, test_loss) = (f(17), f(18));
        let floats =
            |l: &ListArray, i: usize| l.value(i).as_primitive::<Float64Type>().values().to_vec();
        for i in 0..b.num_rows() {
            rows.push(AlignmentRow {
                representation: rep.value(i).to_string(),
                analysis: analysis.value(i).to_string(),
                distance: distance.is_valid(i).then(|| distance.value(i).to_string()),
                fold: opt_u(&fold, i),
                accuracy: opt_f(&accuracy, i),
                correct: opt_u(&correct, i),
                ties: opt_u(&ties, i),
                n_triplets: n_triplets.value(i),
                n_concepts: n_concepts.value(i),
                chance: opt_f(&chance, i),
                r2: opt_f(&r2, i),
                r2_dimensions: floats(r2_dims, i),
                alpha_dimensions: floats(alpha_dims, i),
                n_train: opt_u(&n_train, i),
                n_dropped: opt_u(&n_dropped, i),
                epochs: opt_u(&epochs, i),
                stopped_early: stopped.is_valid(i).then(|| stopped.value(i)),
                train_loss: opt_f(&train_loss, i),
                test_loss: opt_f(&test_loss, i),
            });
        }
    }
    Ok(rows)
}

/// Writes a plain report table (named columns of f64, u32 or strings) — the merged outputs.
pub fn write_batch(file: &mut File, path: &Path, batch: &RecordBatch) -> Result<(), DataError> {
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(writer_props())).map_err(pq)?;
    writer.write(batch).map_err(pq)?;
    writer.close().map_err(pq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_round_trip_reads_one_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let blocks = vec![
            FeatureBlock {
                key: "text.0/cls".into(),
                dim: 2,
                stimuli: vec![4, 5],
                values: vec![1.0, 2.0, 3.0, 4.0],
            },
            FeatureBlock {
                key: "text.1/mean".into(),
                dim: 3,
                stimuli: vec![4, 5],
                values: vec![0.5; 6],
            },
        ];
        for dtype in [StorageDtype::F32, StorageDtype::F16] {
            crate::fs::write_atomic(&path, |f| write_features(f, &path, &blocks, dtype)).unwrap();
            let meta = parquet::file::reader::SerializedFileReader::new(File::open(&path).unwrap())
                .unwrap();
            use parquet::file::reader::FileReader;
            assert_eq!(meta.metadata().num_row_groups(), 2);
            assert_eq!(read_feature_block(&path, "text.1/mean").unwrap(), blocks[1]);
            assert_eq!(read_feature_block(&path, "text.0/cls").unwrap(), blocks[0]);
            let err = read_feature_block(&path, "text.9/cls").unwrap_err().to_string();
            assert!(err.contains("no representation \"text.9/cls\""), "{err}");
        }
    }

    #[test]
    fn probe_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let row = ProbeRow {
            representation: "text.2/cls".into(),
            attribute: 1,
            attribute_name: "visual".into(),
            fold: 3,
            n_components: 120,
            alpha: 150.0,
            rmse: 0.5,
            baseline_rmse: 0.7,
            pearson_r: 0.4,
            p_value: 0.001,
            effective_df: 0.2,
            null_rmse: vec![0.7, 0.71],
            test_indices: vec![1, 9],
            predictions: vec![2.5, 3.5],
        };
        let rows = vec![row.clone(), ProbeRow { fold: 4, null_rmse: vec![], ..row }];
        crate::fs::write_atomic(&path, |f| write_probe_rows(f, &path, &rows)).unwrap();
        assert_eq!(read_probe_rows(&path).unwrap(), rows);
    }

    #[test]
    fn alignment_rows_round_trip_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        let rows = vec![
            AlignmentRow {
                representation: "text.1/mean".into(),
                analysis: analysis::ODD_ONE_OUT.into(),
                distance: Some("cosine".into()),
                accuracy: Some(0.5),
                correct: Some(3),
                ties: Some(1),
                n_triplets: 6,
                n_concepts: 10,
                chance: Some(1.0 / 3.0),
                ..AlignmentRow::default()
            },
            AlignmentRow {
                representation: "text.1/mean".into(),
                analysis: analysis::EMBEDDING_REGRESSION.into(),
                fold: Some(2),
                n_concepts: 2,
                r2: Some(0.25),
                r2_dimensions: vec![0.2, 0.3],
                alpha_dimensions: vec![1.0, 100.0],
                ..AlignmentRow::default()
            },
            AlignmentRow {
                representation: "text.1/mean".into(),
                analysis: analysis::LINEAR_PROBE.into(),
                distance: Some("dot".into()),
                fold: Some(0),
                accuracy: Some(0.4),
                n_train: Some(40),
                n_dropped: Some(7),
                epochs: Some(12),
                stopped_early: Some(true),
                train_loss: Some(1.05),
                test_loss: Some(1.09),
                ..AlignmentRow::default()
            },
        ];
        crate::fs::write_atomic(&path, |f| write_alignment_rows(f, &path, &rows)).unwrap();
        assert_eq!(read_alignment_rows(&path).unwrap(), rows);
        let grid_file = dir.path().join("g.parquet");
        let grid = [GridRow {
            representation: "text.1/mean".into(),
            fold: 0,
            components: 2,
            n_components: 2,
            alpha: 1.0,
            mean_rmse: 0.5,
        }];
        crate::fs::write_atomic(&grid_file, |f| write_grid_rows(f, &grid_file, &grid)).unwrap();
        let e = read_alignment_rows(&grid_file).unwrap_err().to_string();
        assert!(e.contains("not an alignment file"), "{e}");
    }
}
