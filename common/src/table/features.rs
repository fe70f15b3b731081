//! Features files (`features/<unit>.a<n>.parquet`): columns `representation` (utf8), `stimulus`
//! (u32, index into `dataset.json`), `values` (list of f32 or f16). One row group per
//! representation, in the order listed in the key-value metadata `diffprobe.representations`,
//! so a probe unit reads only its representation's bytes.
//!
//! Written column by column rather than through [`super::write_rows`]: a block's values are one
//! flat buffer handed to Arrow as is (no per-value serde), each block is flushed as its own row
//! group, and f16 storage is chosen at run time.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float16Array, Float32Array, ListArray, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float16Type, Float32Type, Schema, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};

use super::writer_props;
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

fn features_schema(dtype: StorageDtype) -> Arc<Schema> {
    let item = match dtype {
        StorageDtype::F32 => DataType::Float32,
        StorageDtype::F16 => DataType::Float16,
    };
    Arc::new(Schema::new(vec![
        Field::new("representation", DataType::Utf8, false),
        Field::new("stimulus", DataType::UInt32, false),
        Field::new("values", DataType::List(Arc::new(Field::new("item", item, false))), false),
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
    match read_feature_block_if_present(path, key)? {
        Some(block) => Ok(block),
        None => {
            let keys: Vec<String> = feature_index(path)?.into_iter().map(|x| x.0).collect();
            Err(DataError::table(path, format!("no representation {key:?}; file has {keys:?}")))
        }
    }
}

/// [`read_feature_block`], or `None` when the file has no such representation.
pub fn read_feature_block_if_present(
    path: &Path,
    key: &str,
) -> Result<Option<FeatureBlock>, DataError> {
    let pq = |e| DataError::Parquet { path: path.into(), source: e };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let index = index_of(path, &builder)?;
    let found = index.iter().enumerate().find(|(_, (k, _))| k == key).map(|(i, (_, d))| (i, *d));
    let Some((group, dim)) = found else { return Ok(None) };
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
    Ok(Some(block))
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

    fn golden_blocks() -> Vec<FeatureBlock> {
        vec![
            FeatureBlock {
                key: "text.0/cls".into(),
                dim: 2,
                stimuli: vec![4, 5],
                values: vec![1.0, -2.5, 3.25, 4.0],
            },
            FeatureBlock {
                key: "unet.mid/mean@t3".into(),
                dim: 3,
                stimuli: vec![4, 5],
                values: vec![0.5, 0.1, -7.0, 1e-3, 2.0, 65504.0],
            },
        ]
    }

    #[test]
    fn features_match_the_golden_files() {
        use crate::table::golden;
        let blocks = golden_blocks();
        let f32_file = golden::path("features_f32.parquet");
        assert_eq!(read_feature_block(&f32_file, "unet.mid/mean@t3").unwrap(), blocks[1]);
        let f16_file = golden::path("features_f16.parquet");
        let index = feature_index(&f16_file).unwrap();
        assert_eq!(index, [("text.0/cls".to_string(), 2), ("unet.mid/mean@t3".to_string(), 3)]);
        for (dtype, name) in [
            (StorageDtype::F32, "features_f32.parquet"),
            (StorageDtype::F16, "features_f16.parquet"),
        ] {
            golden::assert_writes_same_bytes(name, |f, p| write_features(f, p, &blocks, dtype));
        }
    }
}
