//! Exposure logs in the dataset: `recsys-train import --exposures LOG --out DATA` copies the
//! serving exposure log (format 2, JSON lines, [`recsys_core::exposure`]) into daily Parquet
//! tables, and [`for_each_exposure`] reads either form back for `ope` and `ab-report`.
//!
//! Layout: `DATA/exposures/exposures-YYYY-MM-DD.parquet`, one file per UTC day of the records'
//! `ts`, one row per shown item ([`schema`]): the record's fields repeated on each of its items'
//! rows, in log order. A record that showed nothing is one row whose item fields are null, so N
//! records read back as N records. An import replaces the days it contains (each file written
//! atomically, write then rename) and keeps the others, like an event import.
//!
//! The tables are plain Parquet: a notebook reads them with `pyarrow.parquet.read_table` or
//! pandas, and they join the events on `request_id`.
//!
//! What it does not do: exposures are not events (an item shown is not an item viewed), so
//! training and the feature pipeline do not read them; deduplication across imports is by day
//! only (a day imported twice is replaced, not doubled).

use crate::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float32Array, Float32Builder, Float64Array, Float64Builder,
    Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder, UInt8Array, UInt8Builder, UInt32Array,
    UInt32Builder,
};
use crate::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crate::dataset::{Dataset, day_to_date, read_parquet, write_parquet};
use crate::progress::Progress;
use crate::{Error, Result};
use recsys_core::exposure::{ExposedItem, ExposureContext, ExposureRecord, FORMAT_VERSION};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The dataset's subdirectory of exposure tables.
pub const DIR: &str = "exposures";

/// The columns of an exposure table, one row per shown item.
pub fn schema() -> SchemaRef {
    let s = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("request_id", false),
        Field::new("ts", DataType::Int64, false),
        s("user_id", false),
        s("variant", false),
        s("model_version", false),
        s("policy", false),
        s("page", true),
        s("device", true),
        Field::new("hour", DataType::UInt8, true),
        Field::new("cached", DataType::Boolean, false),
        s("source", true),
        Field::new("position", DataType::UInt32, true),
        s("item_id", true),
        Field::new("score", DataType::Float32, true),
        Field::new("propensity", DataType::Float64, true),
    ]))
}

/// The file of one day (`YYYY-MM-DD`) in the dataset's exposure directory.
pub fn file_name(day: &str) -> String {
    format!("exposures-{day}.parquet")
}

/// What `import --exposures` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExposureImport {
    /// Records read from the log.
    pub records: u64,
    /// Rows written (one per shown item, one per empty record).
    pub rows: u64,
    /// Days written (replacing the same days of an earlier import).
    pub days: Vec<String>,
}

/// Imports the exposure log at `logs` (a JSONL file or a log directory) into the dataset at
/// `out` (created when missing), one Parquet table per UTC day (module docs).
pub fn import_exposures(out: &Path, logs: &Path, progress: Progress) -> Result<ExposureImport> {
    let _lock = Dataset::lock_dir(out)?;
    Dataset::open_or_create(out)?;
    let mut by_day: BTreeMap<i64, Vec<ExposureRecord>> = BTreeMap::new();
    let bar = progress.counter("exposures");
    let records = recsys_core::exposure::for_each_exposure(logs, |r| {
        by_day.entry(r.ts.div_euclid(86_400_000)).or_default().push(r);
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let dir = out.join(DIR);
    let mut report = ExposureImport {
        records,
        ..Default::default()
    };
    for (day, recs) in &by_day {
        let date = day_to_date(*day);
        let batch = to_batch(recs)?;
        report.rows += batch.num_rows() as u64;
        write_parquet(&dir.join(file_name(&date)), schema(), &[batch])?;
        report.days.push(date);
    }
    progress.summary(format!(
        "imported {} exposure records ({} rows) into {} day(s) under {}",
        report.records,
        report.rows,
        report.days.len(),
        dir.display()
    ));
    Ok(report)
}

/// The rows of `records` as one record batch of [`schema`].
pub fn to_batch(records: &[ExposureRecord]) -> Result<RecordBatch> {
    let rows: usize = records.iter().map(|r| r.items.len().max(1)).sum();
    let mut request_id = StringBuilder::new();
    let mut ts = Int64Builder::with_capacity(rows);
    let mut user_id = StringBuilder::new();
    let mut variant = StringBuilder::new();
    let mut model_version = StringBuilder::new();
    let mut policy = StringBuilder::new();
    let mut page = StringBuilder::new();
    let mut device = StringBuilder::new();
    let mut hour = UInt8Builder::with_capacity(rows);
    let mut cached = BooleanBuilder::with_capacity(rows);
    let mut source = StringBuilder::new();
    let mut position = UInt32Builder::with_capacity(rows);
    let mut item_id = StringBuilder::new();
    let mut score = Float32Builder::with_capacity(rows);
    let mut propensity = Float64Builder::with_capacity(rows);
    for r in records {
        let n = r.items.len().max(1);
        for i in 0..n {
            request_id.append_value(&r.request_id);
            ts.append_value(r.ts);
            user_id.append_value(&r.user_id);
            variant.append_value(&r.variant);
            model_version.append_value(&r.model_version);
            policy.append_value(&r.policy);
            page.append_option(r.context.page.as_deref());
            device.append_option(r.context.device.as_deref());
            hour.append_option(r.context.hour);
            cached.append_value(r.cached);
            source.append_option(r.source.as_deref());
            match r.items.get(i) {
                Some(it) => {
                    position.append_value(it.position);
                    item_id.append_value(&it.item_id);
                    score.append_value(it.score);
                    propensity.append_value(it.propensity);
                }
                None => {
                    position.append_null();
                    item_id.append_null();
                    score.append_null();
                    propensity.append_null();
                }
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(ts.finish()),
        Arc::new(user_id.finish()),
        Arc::new(variant.finish()),
        Arc::new(model_version.finish()),
        Arc::new(policy.finish()),
        Arc::new(page.finish()),
        Arc::new(device.finish()),
        Arc::new(hour.finish()),
        Arc::new(cached.finish()),
        Arc::new(source.finish()),
        Arc::new(position.finish()),
        Arc::new(item_id.finish()),
        Arc::new(score.finish()),
        Arc::new(propensity.finish()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The Parquet exposure tables under `path`: the file itself when it ends in `.parquet`, the
/// tables of its `exposures/` subdirectory when it has one (a dataset), or a directory's
/// `*.parquet` files, in name order. Empty when there are none.
fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(if path.extension().is_some_and(|x| x == "parquet") {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = if path.join(DIR).is_dir() {
        path.join(DIR)
    } else {
        path.to_path_buf()
    };
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    crate::read::files_with_extension(&dir, "parquet")
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::data(
                path,
                format!("not an exposure table: column {name:?} missing or of another type"),
            )
        })
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_string())
}

/// Calls `f` with every exposure record under `path`, whichever form it has: the serving log
/// (a JSONL file or a log directory, [`recsys_core::exposure::for_each_exposure`]) or the
/// imported Parquet tables (a table, a directory of them, or a dataset directory). A directory
/// holding both reads the Parquet tables. Rows of a table form one record while the request id
/// stays the same and positions increase. Returns the number of records; an error of `f` stops
/// the reading and is returned.
pub fn for_each_exposure(path: &Path, mut f: impl FnMut(ExposureRecord) -> recsys_core::Result<()>) -> Result<u64> {
    let tables = parquet_files(path)?;
    if tables.is_empty() {
        return Ok(recsys_core::exposure::for_each_exposure(path, f)?);
    }
    let mut n = 0u64;
    for file in tables {
        for batch in read_parquet(&file, None)? {
            let request_id = column::<StringArray>(&batch, &file, "request_id")?;
            let ts = column::<Int64Array>(&batch, &file, "ts")?;
            let user_id = column::<StringArray>(&batch, &file, "user_id")?;
            let variant = column::<StringArray>(&batch, &file, "variant")?;
            let model_version = column::<StringArray>(&batch, &file, "model_version")?;
            let policy = column::<StringArray>(&batch, &file, "policy")?;
            let page = column::<StringArray>(&batch, &file, "page")?;
            let device = column::<StringArray>(&batch, &file, "device")?;
            let hour = column::<UInt8Array>(&batch, &file, "hour")?;
            let cached = column::<BooleanArray>(&batch, &file, "cached")?;
            let source = column::<StringArray>(&batch, &file, "source")?;
            let position = column::<UInt32Array>(&batch, &file, "position")?;
            let item_id = column::<StringArray>(&batch, &file, "item_id")?;
            let score = column::<Float32Array>(&batch, &file, "score")?;
            let propensity = column::<Float64Array>(&batch, &file, "propensity")?;
            let mut current: Option<ExposureRecord> = None;
            for i in 0..batch.num_rows() {
                let same = current.as_ref().is_some_and(|c| {
                    c.request_id == request_id.value(i)
                        && position.is_valid(i)
                        && c.items.last().is_some_and(|l| l.position < position.value(i))
                });
                if !same {
                    if let Some(c) = current.take() {
                        f(c)?;
                        n += 1;
                    }
                    current = Some(ExposureRecord {
                        v: FORMAT_VERSION,
                        request_id: request_id.value(i).to_string(),
                        ts: ts.value(i),
                        user_id: user_id.value(i).to_string(),
                        variant: variant.value(i).to_string(),
                        model_version: model_version.value(i).to_string(),
                        policy: policy.value(i).to_string(),
                        context: ExposureContext {
                            page: opt_str(page, i),
                            device: opt_str(device, i),
                            hour: hour.is_valid(i).then(|| hour.value(i)),
                        },
                        items: Vec::new(),
                        cached: cached.value(i),
                        source: opt_str(source, i),
                    });
                }
                if position.is_valid(i) && item_id.is_valid(i) {
                    let c = current.as_mut().expect("set above");
                    c.items.push(ExposedItem {
                        item_id: item_id.value(i).to_string(),
                        position: position.value(i),
                        score: if score.is_valid(i) { score.value(i) } else { 0.0 },
                        propensity: if propensity.is_valid(i) {
                            propensity.value(i)
                        } else {
                            1.0
                        },
                    });
                }
            }
            if let Some(c) = current.take() {
                f(c)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ts: i64, items: usize) -> ExposureRecord {
        ExposureRecord {
            v: FORMAT_VERSION,
            request_id: id.into(),
            ts,
            user_id: format!("U-{id}"),
            variant: "control".into(),
            model_version: "1.0.0".into(),
            policy: "two-tower+explore(eps=0.1,pool=20)".into(),
            context: ExposureContext {
                page: Some("home".into()),
                device: items.is_multiple_of(2).then(|| "mobile".into()),
                hour: Some(7),
            },
            items: (0..items)
                .map(|p| ExposedItem {
                    item_id: format!("P{p}"),
                    position: p as u32 + 1,
                    score: 1.0 / (p as f32 + 1.0),
                    propensity: 0.5 + p as f64 / 100.0,
                })
                .collect(),
            cached: items == 3,
            source: Some("model".into()),
        }
    }

    #[test]
    fn import_round_trips_every_record_by_day_and_replaces_days() {
        let tmp = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        let recs = vec![
            record("a", 20_000 * day + 5, 3),
            record("b", 20_000 * day + 9, 0),
            // The same id twice in a row: two records (positions restart).
            record("c", 20_001 * day, 2),
            record("c", 20_001 * day + 1, 4),
        ];
        let log = tmp.path().join("log");
        std::fs::create_dir_all(&log).unwrap();
        let text: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        std::fs::write(log.join("exposures-x.jsonl"), text).unwrap();
        let data = tmp.path().join("data");
        let rep = import_exposures(&data, &log, Progress::quiet()).unwrap();
        assert_eq!(rep.records, 4);
        assert_eq!(rep.rows, 3 + 1 + 2 + 4);
        assert_eq!(rep.days, ["2024-10-04", "2024-10-05"]);
        let mut back = Vec::new();
        let n = for_each_exposure(&data, |r| {
            back.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(back, recs);
        // The JSONL log reads through the same function.
        let mut from_log = Vec::new();
        for_each_exposure(&log, |r| {
            from_log.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(from_log, recs);
        // A second import of one day replaces it and keeps the other.
        std::fs::write(
            log.join("exposures-x.jsonl"),
            serde_json::to_string(&record("d", 20_000 * day + 1, 1)).unwrap() + "\n",
        )
        .unwrap();
        import_exposures(&data, &log, Progress::quiet()).unwrap();
        let ids: Vec<String> = {
            let mut v = Vec::new();
            for_each_exposure(&data.join(DIR), |r| {
                v.push(r.request_id);
                Ok(())
            })
            .unwrap();
            v
        };
        assert_eq!(ids, ["d", "c", "c"]);
    }

    #[test]
    fn a_table_of_another_shape_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("request_id", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["r"])) as ArrayRef]).unwrap();
        write_parquet(&path, schema, &[batch]).unwrap();
        let err = for_each_exposure(&path, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("\"ts\""), "{err}");
        assert!(err.to_string().contains("x.parquet"), "{err}");
    }

    #[test]
    fn a_missing_log_is_a_user_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = import_exposures(&tmp.path().join("data"), &tmp.path().join("nope"), Progress::quiet()).unwrap_err();
        assert!(err.is_user_error(), "{err}");
    }
}
