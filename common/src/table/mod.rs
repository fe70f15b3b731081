//! Parquet schemas of the run directory. API boundary: pandas, polars and DuckDB read these.
//!
//! * Features (`features/<unit>.a<n>.parquet`): [`features`], one row group per representation.
//! * Probe rows (`probes/<unit>.a<n>.parquet`) and grid rows (`grid/…`, merged into
//!   `report/grid.parquet`): [`ProbeRow`], [`GridRow`].
//! * Alignment rows (`alignment/<unit>.a<n>.parquet`, merged into `report/alignment.parquet`):
//!   [`AlignmentRow`], an enum in memory flattened to nullable columns only in this module.
//! * Direction and cluster rows (`directions/…`, `clusters/…`, merged into
//!   `report/directions.parquet` and `report/clusters.parquet`): [`DirectionsRow`], [`ClusterRow`].
//! * Dense-probe rows (`dense/…`, merged into `report/dense.parquet`): [`DenseRow`].
//! * Semantic-lens rows (`semantic/…`, merged into `report/semantic.parquet`): [`SemanticRow`].
//! * The report's own tables (`report/rmse.parquet`, …): the rows of `report.rs`, one
//!   [`ReportTable`] each.
//!
//! Each row type is defined once, as a serde struct: its Arrow schema is traced from the struct
//! ([`serde_arrow`], strings as `Utf8`, lists as `List` with items named `item`, arrow's own
//! naming, which older files use) and its rows are written and read through that schema by
//! [`write_rows`] and [`read_rows`]. The golden files under `common/tests/golden/tables/` were
//! written by the hand-written writers this replaced; the tests pin the bytes to them.

mod alignment;
mod dense;
mod directions;
mod features;
mod probe;
mod report;
mod semantic;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::error::DataError;

pub use alignment::{
    analysis, read_alignment_rows, write_alignment_rows, AlignmentRow, ProbeScore, ProbeTraining,
    TripletScore,
};
pub use dense::{read_dense_rows, write_dense_rows, DenseRow, STRIP_IMAGES};
pub use directions::{
    direction_analysis, read_cluster_rows, read_direction_rows, write_cluster_rows,
    write_direction_rows, ClusterRow, DirectionsRow,
};
pub use features::{
    feature_index, read_feature_block, read_feature_block_if_present, write_features, FeatureBlock,
};
pub use probe::{
    read_grid_rows, read_probe_rows, write_grid_rows, write_probe_rows, GridRow, ProbeRow,
};
pub use report::{
    read_report_table, write_report_table, EntanglementRow, ReportTable, RmseRow, SignificanceRow,
    SummaryTableRow,
};
pub use semantic::{read_semantic_rows, write_semantic_rows, SemanticRow};

fn writer_props() -> WriterProperties {
    // Fixed properties (no timestamps): equal inputs give byte-identical files.
    WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_created_by("diffprobe".into())
        .build()
}

/// The Arrow schema of row type `T`, traced from its serde shape: field order, names, types and
/// nullability (`Option`) are the struct's.
fn schema_of<'de, T: Deserialize<'de>>() -> Arc<Schema> {
    let options =
        TracingOptions::default().strings_as_large_utf8(false).sequence_as_large_list(false);
    // A row type that cannot be traced is a bug in this module, caught by its tests.
    let fields = Vec::<FieldRef>::from_type::<T>(options).expect("row types trace");
    Arc::new(Schema::new(
        fields.into_iter().map(|f| Arc::new(arrow_naming(&f))).collect::<Vec<_>>(),
    ))
}

/// serde_arrow names list items `element`; arrow (and so every file written before) `item`.
fn arrow_naming(field: &Field) -> Field {
    match field.data_type() {
        DataType::List(item) => field
            .clone()
            .with_data_type(DataType::List(Arc::new(arrow_naming(item).with_name("item")))),
        _ => field.clone(),
    }
}

/// Writes `rows` as one record batch in `T`'s schema.
fn write_rows<T: Serialize + DeserializeOwned>(
    file: &mut File,
    path: &Path,
    rows: &[T],
) -> Result<(), DataError> {
    let schema = schema_of::<T>();
    let batch = serde_arrow::to_record_batch(schema.fields(), &rows)
        .map_err(|e| DataError::Rows { path: path.into(), source: e })?;
    write_batch(file, path, &batch)
}

/// Reads every row of a file in `T`'s schema; `what` names the table in the error when the
/// file's columns are not `T`'s (names and order).
fn read_rows<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, DataError> {
    let schema = schema_of::<T>();
    let mut rows = Vec::new();
    for b in read_batches(path, &schema, what)? {
        let batch: Vec<T> = serde_arrow::from_record_batch(&b)
            .map_err(|e| DataError::Rows { path: path.into(), source: e })?;
        rows.extend(batch);
    }
    Ok(rows)
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
pub(crate) mod golden {
    //! The golden files written by the hand-written writers before this module used serde.
    use std::path::PathBuf;

    /// Path of a golden file.
    pub(crate) fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tables").join(name)
    }

    /// Asserts that `write` produces exactly the golden file `name`'s bytes.
    pub(crate) fn assert_writes_same_bytes(
        name: &str,
        write: impl FnOnce(&mut std::fs::File, &std::path::Path) -> Result<(), crate::error::DataError>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(name);
        crate::fs::write_atomic(&out, |f| write(f, &out)).unwrap();
        let (got, want) = (std::fs::read(&out).unwrap(), std::fs::read(path(name)).unwrap());
        assert!(got == want, "{name}: {} bytes written, golden file has {}", got.len(), want.len());
    }
}
