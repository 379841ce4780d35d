//! Helpers shared by the integration tests of `recsys-train`.
#![allow(dead_code)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recsys_core::schema::DAY_MS;
use recsys_train::arrow;
use recsys_train::dataset::{Dataset, MANIFEST};
use recsys_train::import::{ColumnMap, ImportOptions, ImportReport};
use recsys_train::progress::Progress;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The shared real data sets (`../shared/data` beside the clone).
pub fn real_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// A real data file of the shared notes (`../shared/data`), or `None` to skip the test: when it is
/// missing (a clone with nothing beside it) or `TECHSHOP_SKIP_REAL_DATA=1`, with a notice on
/// stderr. With `TECHSHOP_REQUIRE_TEST_DATA=1` (CI, which has the data beside its clone) a missing
/// file fails the test instead, so CI still runs every test on real data.
pub fn real_data_file(rel: &str) -> Option<PathBuf> {
    if std::env::var("TECHSHOP_SKIP_REAL_DATA").as_deref() == Ok("1") {
        notice(&format!("TECHSHOP_SKIP_REAL_DATA=1: skipping the test on {rel}"));
        return None;
    }
    let p = real_data_dir().join(rel);
    if !p.is_file() {
        let msg = format!(
            "real data file {} is missing (see shared/data/README.md for how to obtain it)",
            p.display()
        );
        assert!(
            std::env::var("TECHSHOP_REQUIRE_TEST_DATA").as_deref() != Ok("1"),
            "{msg}; TECHSHOP_REQUIRE_TEST_DATA=1 requires it"
        );
        notice(&format!("SKIPPED: {msg}"));
        return None;
    }
    Some(p)
}

/// A `NOTICE:` line on the process's stderr, visible in `cargo test`'s output even when the test
/// passes (the test harness captures `eprintln!`, not writes to the stderr handle).
pub fn notice(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOTICE: {text}");
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, content).unwrap();
    p
}

/// UTC milliseconds of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_millis()
}

/// RFC 3339 text (millisecond precision, `Z`) of UTC milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Import options with quiet progress.
pub fn options(events: &[&Path], map: &str) -> ImportOptions {
    let map: ColumnMap = map.parse().unwrap();
    let mut o = ImportOptions::new(events.iter().map(|p| p.to_path_buf()).collect(), map);
    o.progress = Progress::quiet();
    o
}

/// Imports one CSV file (RFC 3339 timestamps, event type from column `event_type`).
pub fn import_csv(out: &Path, file: &Path) -> ImportReport {
    let opts = options(&[file], "user=user,item=item,ts=ts");
    recsys_train::import::import(out, &opts).unwrap_or_else(|e| panic!("import of {}: {e}", file.display()))
}

/// Every file under `dir` (relative path) with its bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Every directory under `dir` (relative path).
pub fn dirs(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf());
                walk(root, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Reads a whole Parquet file into one batch.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// A column as strings (any type castable to Utf8, dictionaries included).
pub fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
    c.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
}

/// A non-null string column.
pub fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
    strings(b, name).into_iter().map(|s| s.expect("non-null")).collect()
}

/// A column as f64 (nullable).
pub fn f64s(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let c = arrow::compute::cast(c, &DataType::Float64).unwrap();
    c.as_primitive::<arrow::datatypes::Float64Type>().iter().collect()
}

/// A column as u64 (nullable).
pub fn u64s(b: &RecordBatch, name: &str) -> Vec<Option<u64>> {
    let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let c = arrow::compute::cast(c, &DataType::UInt64).unwrap();
    c.as_primitive::<arrow::datatypes::UInt64Type>().iter().collect()
}

/// A millisecond timestamp column as i64.
pub fn timestamps(b: &RecordBatch, name: &str) -> Vec<i64> {
    let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let c = c
        .as_primitive_opt::<TimestampMillisecondType>()
        .unwrap_or_else(|| panic!("{name} is {} not timestamp[ms]", c.data_type()));
    assert_eq!(c.null_count(), 0, "{name} has nulls");
    c.values().to_vec()
}

/// Checks that a reader of the dataset at `dir` sees a complete, consistent state: every file the
/// manifest lists exists and reads back with the recorded rows and time range, every row lies in
/// its partition's day, every id index is in the dictionary, no file under `events/` is unlisted,
/// and no temporary file is left anywhere.
pub fn assert_consistent(dir: &Path) -> Dataset {
    let ds = Dataset::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let m = &ds.manifest;
    let mut listed = BTreeSet::new();
    let mut total = 0;
    for (date, p) in &m.partitions {
        assert!(!p.files.is_empty(), "partition {date} lists no files");
        for f in &p.files {
            assert!(
                f.starts_with(&format!("events/date={date}/part-")) && f.ends_with(".parquet"),
                "{f} is not a part file of {date}"
            );
            assert!(ds.path_of(f).is_file(), "manifest lists {f}, which does not exist");
            assert!(listed.insert(PathBuf::from(f)), "{f} listed twice");
        }
        let b = ds.read_partition(p, None).unwrap();
        assert_eq!(b.num_rows() as u64, p.rows, "rows of {date}");
        let ts = timestamps(&b, "timestamp");
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{date} is not in time order");
        assert_eq!(ts.first().copied(), Some(p.min_ts), "min_ts of {date}");
        assert_eq!(ts.last().copied(), Some(p.max_ts), "max_ts of {date}");
        for t in &ts {
            let day = recsys_train::dataset::day_to_date(t.div_euclid(DAY_MS));
            assert_eq!(&day, date, "event at {t} in partition {date}");
        }
        for (u, id) in u64s(&b, "user_idx").into_iter().zip(strs(&b, "user_id")) {
            assert_eq!(
                ds.users.ids.id(u.unwrap() as u32),
                Some(id.as_str()),
                "user_idx in {date}"
            );
        }
        for (i, id) in u64s(&b, "item_idx").into_iter().zip(strs(&b, "item_id")) {
            assert_eq!(
                ds.items.ids.id(i.unwrap() as u32),
                Some(id.as_str()),
                "item_idx in {date}"
            );
        }
        total += p.rows;
    }
    assert_eq!(m.num_events, total, "num_events");
    assert_eq!(m.num_users, ds.users.len() as u64, "num_users");
    assert_eq!(m.num_items, ds.items.len() as u64, "num_items");
    let files = tree(dir);
    let under_events: BTreeSet<PathBuf> = files.keys().filter(|p| p.starts_with("events")).cloned().collect();
    assert_eq!(under_events, listed, "files under events/ vs the manifest");
    for p in files.keys() {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with('.') && !name.contains(".tmp"),
            "temporary file {} left",
            p.display()
        );
    }
    for d in dirs(&dir.join("events")) {
        assert!(
            m.partitions
                .contains_key(d.to_string_lossy().trim_start_matches("date=")),
            "directory events/{} belongs to no partition",
            d.display()
        );
    }
    assert!(dir.join(MANIFEST).is_file());
    ds
}
