//! Integration tests of `recsys-train import`: formats, validation, atomicity and partitions.

mod common;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use recsys_train::Error;
use recsys_train::arrow;
use recsys_train::dataset::{Dataset, MANIFEST};
use recsys_train::import::{EventTypeSource, ImportReport, OnError, TsFormat, import};
use recsys_train::read::InputFormat;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn ids(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// The events of one date, read back through the dataset.
fn partition(ds: &Dataset, date: &str) -> RecordBatch {
    let p = ds
        .manifest
        .partitions
        .get(date)
        .unwrap_or_else(|| panic!("no partition {date}"));
    ds.read_partition(p, None).unwrap()
}

#[test]
fn csv_with_header_rfc3339_and_event_type_column() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write_file(
        tmp.path(),
        "events.csv",
        "user,item,ts,event_type,price\n\
         u2,i9,2024-05-01T10:00:00Z,view,9.5\n\
         u1,i9,2024-05-01T11:30:00.250Z,click,9.5\n\
         u2,i3,2024-05-02T01:00:00+02:00,add_to_cart,3.25\n\
         u3,i3,2024-05-02T09:00:00Z,purchase,3.25\n\
         u1,i7,2024-05-03T00:00:00Z,view,\n",
    );
    let out = tmp.path().join("data");
    let mut opts = options(&[&csv], "user=user,item=item,ts=ts,price=price");
    opts.event_type = Some("event_type".parse().unwrap());
    let report = import(&out, &opts).unwrap();
    assert_eq!(report.rows_read, 5);
    assert_eq!(report.rows_imported, 5);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!((report.users, report.items, report.events), (3, 3, 5));
    // 2024-05-02T01:00+02:00 is 2024-05-01T23:00Z: its day is the first one.
    assert_eq!(report.partitions, vec!["2024-05-01", "2024-05-02", "2024-05-03"]);

    // Layout.
    assert!(out.join(MANIFEST).is_file());
    assert!(out.join("items.parquet").is_file());
    assert!(out.join("users.parquet").is_file());
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["format"], "techshop-recs-dataset");
    assert_eq!(manifest["num_events"], 5);
    for date in ["2024-05-01", "2024-05-02", "2024-05-03"] {
        let dir = out.join("events").join(format!("date={date}"));
        let parts: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(!parts.is_empty());
        for p in &parts {
            assert!(p.starts_with("part-") && p.ends_with(".parquet"), "{date}: {p}");
        }
    }

    // Dense ids in order of first appearance.
    let ds = assert_consistent(&out);
    assert_eq!(ids(ds.users.ids.ids()), ["u2", "u1", "u3"]);
    assert_eq!(ids(ds.items.ids.ids()), ["i9", "i3", "i7"]);
    assert_eq!(
        (ds.manifest.num_users, ds.manifest.num_items, ds.manifest.num_events),
        (3, 3, 5)
    );
    // The same tables read directly from items.parquet / users.parquet.
    let items = read_parquet(&out.join("items.parquet"));
    assert_eq!(u64s(&items, "item_idx"), [Some(0), Some(1), Some(2)]);
    assert_eq!(strs(&items, "item_id"), ["i9", "i3", "i7"]);
    assert_eq!(f64s(&items, "price"), [Some(9.5), Some(3.25), None]);
    let users = read_parquet(&out.join("users.parquet"));
    assert_eq!(strs(&users, "user_id"), ["u2", "u1", "u3"]);

    let day1 = partition(&ds, "2024-05-01");
    assert_eq!(
        timestamps(&day1, "timestamp"),
        [
            ms("2024-05-01T10:00:00Z"),
            ms("2024-05-01T11:30:00.250Z"),
            ms("2024-05-01T23:00:00Z")
        ]
    );
    assert_eq!(strs(&day1, "event_type"), ["view", "click", "add_to_cart"]);
    assert_eq!(strs(&day1, "user_id"), ["u2", "u1", "u2"]);
    assert_eq!(u64s(&day1, "user_idx"), [Some(0), Some(1), Some(0)]);
    assert_eq!(u64s(&day1, "item_idx"), [Some(0), Some(0), Some(1)]);
    assert_eq!(f64s(&day1, "price"), [Some(9.5), Some(9.5), Some(3.25)]);
    let day3 = partition(&ds, "2024-05-03");
    assert_eq!(strs(&day3, "item_id"), ["i7"]);
    assert_eq!(f64s(&day3, "price"), [None]);
    assert_eq!(strs(&partition(&ds, "2024-05-02"), "event_type"), ["purchase"]);
}

// ---------------------------------------------------------------------------------------------
// Malformed rows.

const BAD_HEADER: &str = "customer,product,when,kind,amount\n";
const BAD_MAP: &str = "user=customer,item=product,ts=when,event_type=kind,price=amount";
const GOOD_ROWS: &str = "w1,j1,2024-07-01T10:00:00Z,view,1.0\nw2,j2,2024-07-01T11:00:00Z,click,2.0\n";
const TAIL_ROW: &str = "w3,j3,2024-07-02T10:00:00Z,purchase,3.0\n";

/// The bad rows, one per reason: (line, column, value as reported, reason key, reason word).
const BAD_ROWS: [(&str, &str, &str, &str, &str); 5] = [
    (
        ",ghost_item_a,2024-07-01T12:00:00Z,view,1.0",
        "customer",
        "",
        "missing_id",
        "missing",
    ),
    (
        "ghost_user_b,ghost_item_b,2024-13-45T99:00:00Z,view,1.0",
        "when",
        "2024-13-45T99:00:00Z",
        "bad_timestamp",
        "timestamp",
    ),
    (
        "ghost_user_c,ghost_item_c,2024-07-01T12:00:00Z,wishlist,1.0",
        "kind",
        "wishlist",
        "unknown_event_type",
        "event type",
    ),
    (
        "ghost_user_d,ghost_item_d,2024-07-01T12:00:00Z,purchase,-4.5",
        "amount",
        "-4.5",
        "negative_price",
        "negative",
    ),
    (
        "ghost_user_e,ghost_item_e,2024-07-01T12:00:00Z,view,NaN",
        "amount",
        "NaN",
        "not_finite",
        "finite",
    ),
];

/// A dataset with one good import of an earlier day, to check a failed import leaves it alone.
fn dataset_with_one_import(dir: &Path) -> PathBuf {
    let good = write_file(
        dir,
        "good.csv",
        &format!("{BAD_HEADER}a1,b1,2024-06-30T08:00:00Z,view,5\na2,b2,2024-06-30T09:00:00Z,purchase,6\n"),
    );
    let out = dir.join("data");
    import(&out, &options(&[&good], BAD_MAP)).unwrap();
    out
}

fn bad_row_fails(case: usize) {
    let (line, column, value, _, word) = BAD_ROWS[case];
    let tmp = tempfile::tempdir().unwrap();
    let out = dataset_with_one_import(tmp.path());
    let before = tree(&out);
    let before_dirs = dirs(&out);
    let manifest = fs::read(out.join(MANIFEST)).unwrap();

    let bad = write_file(
        tmp.path(),
        "bad.csv",
        &format!("{BAD_HEADER}{GOOD_ROWS}{line}\n{TAIL_ROW}"),
    );
    let mut opts = options(&[&bad], BAD_MAP);
    opts.on_error = OnError::Fail;
    let err = import(&out, &opts).expect_err("a malformed row must fail the import");
    assert!(err.is_user_error(), "{err}");
    match &err {
        Error::BadRow {
            file,
            row,
            column: c,
            value: v,
            reason,
        } => {
            assert_eq!(file, &bad.display().to_string());
            assert_eq!(*row, 3, "1-based data row (header not counted)");
            assert_eq!(c, column);
            assert_eq!(v, value);
            assert!(reason.contains(word), "reason {reason:?} should mention {word:?}");
        }
        other => panic!("expected Error::BadRow, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv") && msg.contains("row 3") && msg.contains(column),
        "{msg}"
    );

    // Nothing changed: same manifest bytes, same files with the same bytes, no new directories.
    assert_eq!(fs::read(out.join(MANIFEST)).unwrap(), manifest, "manifest rewritten");
    let after = tree(&out);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "files added or removed by a failed import"
    );
    assert!(after == before, "file contents changed by a failed import");
    assert_eq!(dirs(&out), before_dirs, "directories added by a failed import");
    let ds = assert_consistent(&out);
    assert_eq!(ds.manifest.num_events, 2);
    assert_eq!(ids(ds.users.ids.ids()), ["a1", "a2"]);
}

#[test]
fn bad_row_missing_user_id_fails_and_changes_nothing() {
    bad_row_fails(0);
}

#[test]
fn bad_row_unparseable_timestamp_fails_and_changes_nothing() {
    bad_row_fails(1);
}

#[test]
fn bad_row_unknown_event_type_fails_and_changes_nothing() {
    bad_row_fails(2);
}

#[test]
fn bad_row_negative_price_fails_and_changes_nothing() {
    bad_row_fails(3);
}

#[test]
fn bad_row_nan_price_fails_and_changes_nothing() {
    bad_row_fails(4);
}

#[test]
fn bad_row_in_second_file_fails_after_first_file_was_read() {
    // The first input is fine and covers new days; the second has a bad row: nothing is committed.
    let tmp = tempfile::tempdir().unwrap();
    let out = dataset_with_one_import(tmp.path());
    let before = tree(&out);
    let first = write_file(tmp.path(), "a.csv", &format!("{BAD_HEADER}{GOOD_ROWS}{TAIL_ROW}"));
    let second = write_file(
        tmp.path(),
        "b.csv",
        &format!("{BAD_HEADER}{TAIL_ROW}{}\n", BAD_ROWS[2].0),
    );
    let err = import(&out, &options(&[&first, &second], BAD_MAP)).unwrap_err();
    match &err {
        Error::BadRow { file, row, value, .. } => {
            assert_eq!(file, &second.display().to_string());
            assert_eq!(*row, 2);
            assert_eq!(value, "wishlist");
        }
        other => panic!("expected Error::BadRow, got {other:?}"),
    }
    assert!(tree(&out) == before, "a failed import changed the dataset");
}

#[test]
fn skip_mode_skips_and_counts_bad_rows_per_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_lines: String = BAD_ROWS.iter().map(|r| format!("{}\n", r.0)).collect();
    let csv = write_file(
        tmp.path(),
        "mixed.csv",
        &format!("{BAD_HEADER}{GOOD_ROWS}{bad_lines}{TAIL_ROW}"),
    );
    let out = tmp.path().join("data");
    let mut opts = options(&[&csv], BAD_MAP);
    opts.on_error = OnError::Skip;
    let report = import(&out, &opts).unwrap();
    let expected: BTreeMap<String, u64> = BAD_ROWS.iter().map(|r| (r.3.to_string(), 1)).collect();
    assert_eq!(report.skipped, expected);
    assert_eq!(report.rows_read, 8);
    assert_eq!(report.rows_imported, 3);
    assert_eq!(report.events, 3);
    assert_eq!(report.partitions, vec!["2024-07-01", "2024-07-02"]);
    let ds = assert_consistent(&out);
    // Skipped rows leave no trace, not even in the id dictionaries.
    assert_eq!(ids(ds.users.ids.ids()), ["w1", "w2", "w3"]);
    assert_eq!(ids(ds.items.ids.ids()), ["j1", "j2", "j3"]);
    assert_eq!(strs(&partition(&ds, "2024-07-01"), "user_id"), ["w1", "w2"]);
}

// ---------------------------------------------------------------------------------------------
// Zipped CSV, BOM, strftime dates, constant event type, line prices, derived tables.

const TAFENG_LIKE: &str = "\u{feff}TRANSACTION_DT,CUSTOMER_ID,AGE_GROUP,PIN_CODE,PRODUCT_SUBCLASS,PRODUCT_ID,AMOUNT,ASSET,SALES_PRICE\n\
11/1/2000,01104905,,115,110411,4710199010372,2,24,37\n\
11/1/2000,00418683,35-39,221,120107,4710857472535,1,48,57\n\
11/2/2000,01104905,45-49,106,110411,4710199010372,3,36,60\n\
12/25/2000,00418683,40-44,115,120107,4710857472535,4,96,226\n\
12/31/2000,C3,,,,4710000000001,1,10,10\n\
2/28/2001,01104905,45-49,115,100205,4710000000002,8,9,2\n";

const TAFENG_MAP: &str = "user=CUSTOMER_ID,item=PRODUCT_ID,ts=TRANSACTION_DT,category=PRODUCT_SUBCLASS,\
line_price=SALES_PRICE,quantity=AMOUNT,age_bucket=AGE_GROUP,region=PIN_CODE";

fn tafeng_options(file: &Path) -> recsys_train::import::ImportOptions {
    let mut opts = options(&[file], TAFENG_MAP);
    opts.ts_format = "%m/%d/%Y".parse().unwrap();
    opts.event_type = Some("purchase".parse().unwrap());
    opts
}

fn check_tafeng_like(out: &Path, report: &ImportReport) {
    assert_eq!(report.rows_imported, 6);
    assert!(report.skipped.is_empty());
    assert_eq!(
        report.partitions,
        vec!["2000-11-01", "2000-11-02", "2000-12-25", "2000-12-31", "2001-02-28"]
    );
    let ds = assert_consistent(out);
    // Ids keep their leading zeros (they are text).
    assert_eq!(ids(ds.users.ids.ids()), ["01104905", "00418683", "C3"]);
    assert_eq!(
        ids(ds.items.ids.ids()),
        ["4710199010372", "4710857472535", "4710000000001", "4710000000002"]
    );
    // Users: attributes from the first row that has them (an empty AGE_GROUP is absent).
    assert_eq!(
        ds.users.age_bucket,
        [Some("45-49".to_string()), Some("35-39".to_string()), None]
    );
    assert_eq!(
        ds.users.region,
        [Some("115".to_string()), Some("221".to_string()), None]
    );
    // Items: category from the events; price = the first unit price seen.
    assert_eq!(
        ds.items.category,
        [
            Some("110411".to_string()),
            Some("120107".to_string()),
            None,
            Some("100205".to_string())
        ]
    );
    assert_eq!(ds.items.price, [Some(18.5), Some(57.0), Some(10.0), Some(0.25)]);
    // Events: dates at midnight UTC, unit price = line price / quantity, quantity kept.
    let d = partition(&ds, "2000-11-01");
    assert_eq!(timestamps(&d, "timestamp"), [ms("2000-11-01T00:00:00Z"); 2]);
    assert_eq!(strs(&d, "event_type"), ["purchase", "purchase"]);
    assert_eq!(f64s(&d, "price"), [Some(18.5), Some(57.0)]);
    assert_eq!(u64s(&d, "quantity"), [Some(2), Some(1)]);
    let d = partition(&ds, "2000-11-02");
    assert_eq!(f64s(&d, "price"), [Some(20.0)]);
    assert_eq!(u64s(&d, "quantity"), [Some(3)]);
    let d = partition(&ds, "2000-12-25");
    assert_eq!(f64s(&d, "price"), [Some(56.5)]);
    let d = partition(&ds, "2001-02-28");
    assert_eq!(timestamps(&d, "timestamp"), [ms("2001-02-28T00:00:00Z")]);
    assert_eq!(f64s(&d, "price"), [Some(0.25)]);
    assert_eq!(u64s(&d, "quantity"), [Some(8)]);
}

#[test]
fn zipped_csv_with_bom_dates_line_prices_and_derived_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let zip_path = tmp.path().join("sales.csv.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&zip_path).unwrap());
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // Archives made on macOS carry resource forks first; they must be passed over.
    zip.start_file("__MACOSX/._sales.csv", o).unwrap();
    zip.write_all(b"\0\x05\x16\x07junk").unwrap();
    zip.start_file("sales.csv", o).unwrap();
    zip.write_all(TAFENG_LIKE.as_bytes()).unwrap();
    zip.finish().unwrap();
    let out = tmp.path().join("data");
    let report = import(&out, &tafeng_options(&zip_path)).unwrap();
    check_tafeng_like(&out, &report);
}

#[test]
fn plain_csv_with_bom_matches_the_zipped_import() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write_file(tmp.path(), "sales.csv", TAFENG_LIKE);
    assert!(fs::read(&csv).unwrap().starts_with(&[0xef, 0xbb, 0xbf]));
    let out = tmp.path().join("data");
    let report = import(&out, &tafeng_options(&csv)).unwrap();
    check_tafeng_like(&out, &report);
}

// ---------------------------------------------------------------------------------------------
// Parquet and Arrow IPC.

fn numeric_ts_batch() -> (RecordBatch, Vec<i64>) {
    let ts = vec![
        ms("2024-03-10T23:59:59.999Z"),
        ms("2024-03-10T08:00:00.001Z"),
        ms("2024-03-11T00:00:00Z"),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("uid", DataType::Utf8, false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("when_ms", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("unit_price", DataType::Float64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["x", "y", "x"])),
        Arc::new(StringArray::from(vec!["s2", "s1", "s2"])),
        Arc::new(Int64Array::from(ts.clone())),
        Arc::new(StringArray::from(vec!["click", "view", "purchase"])),
        Arc::new(Float64Array::from(vec![Some(1.5), None, Some(1.5)])),
    ];
    (RecordBatch::try_new(schema, cols).unwrap(), ts)
}

const NUMERIC_MAP: &str = "user=uid,item=sku,ts=when_ms,price=unit_price";

fn check_numeric_import(input: &Path) {
    let (_, ts) = numeric_ts_batch();
    let out = input.parent().unwrap().join("data");
    let mut opts = options(&[input], NUMERIC_MAP);
    opts.ts_format = TsFormat::UnixMs;
    let report = import(&out, &opts).unwrap();
    assert_eq!(report.rows_imported, 3);
    assert_eq!(report.partitions, vec!["2024-03-10", "2024-03-11"]);
    let ds = assert_consistent(&out);
    assert_eq!(ids(ds.users.ids.ids()), ["x", "y"]);
    assert_eq!(ids(ds.items.ids.ids()), ["s2", "s1"]);
    let d = partition(&ds, "2024-03-10");
    // Sorted by time inside the partition.
    assert_eq!(timestamps(&d, "timestamp"), [ts[1], ts[0]]);
    assert_eq!(strs(&d, "event_type"), ["view", "click"]);
    assert_eq!(f64s(&d, "price"), [None, Some(1.5)]);
    assert_eq!(timestamps(&partition(&ds, "2024-03-11"), "timestamp"), [ts[2]]);

    // Without --ts-format a numeric column cannot be read as RFC 3339: an argument error.
    let fresh = input.parent().unwrap().join("fresh");
    let err = import(&fresh, &options(&[input], NUMERIC_MAP)).unwrap_err();
    match &err {
        Error::InvalidArgument { name, reason, .. } => {
            assert_eq!(name, "ts-format");
            assert!(reason.contains("--ts-format"), "{reason}");
            assert!(
                reason.contains("when_ms"),
                "the reason should name the column: {reason}"
            );
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(err.is_user_error());
    assert!(err.to_string().contains("ts-format"), "{err}");
    assert!(!fresh.join(MANIFEST).exists(), "a failed import created a manifest");
}

#[test]
fn parquet_input_with_unix_ms_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let (batch, _) = numeric_ts_batch();
    let path = tmp.path().join("events.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    check_numeric_import(&path);
}

#[test]
fn arrow_ipc_file_input_with_unix_ms_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let (batch, _) = numeric_ts_batch();
    let path = tmp.path().join("events.arrow");
    let mut w = arrow::ipc::writer::FileWriter::try_new(fs::File::create(&path).unwrap(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    check_numeric_import(&path);
}

#[test]
fn arrow_ipc_stream_input_with_several_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (batch, _) = numeric_ts_batch();
    let path = tmp.path().join("events.arrows");
    let mut w = arrow::ipc::writer::StreamWriter::try_new(fs::File::create(&path).unwrap(), &batch.schema()).unwrap();
    // The same rows split into two messages: the size check walks every message.
    let half = batch.num_rows() / 2;
    w.write(&batch.slice(0, half)).unwrap();
    w.write(&batch.slice(half, batch.num_rows() - half)).unwrap();
    w.finish().unwrap();
    check_numeric_import(&path);
}

// ---------------------------------------------------------------------------------------------
// Sequences and item-attribute JSON.

#[test]
fn sequences_with_item_attribute_json() {
    let tmp = tempfile::tempdir().unwrap();
    let seq = write_file(tmp.path(), "Shop.txt", "A 2 1 10\nB 1 3\n");
    let attrs = write_file(
        tmp.path(),
        "Shop_item2attributes.json",
        r#"{"1": [3, 4], "2": [5], "10": [7, 8, 9]}"#,
    );
    let out = tmp.path().join("data");
    let mut opts = options(&[&seq], "user=user,item=item,ts=position");
    opts.format = Some(InputFormat::Sequences);
    opts.ts_format = TsFormat::Unix;
    opts.event_type = Some(EventTypeSource::Const(recsys_core::schema::EventType::Purchase));
    opts.items = Some(attrs);
    let report = import(&out, &opts).unwrap();
    assert_eq!((report.users, report.items, report.events), (2, 4, 5));
    let ds = assert_consistent(&out);
    assert_eq!(ids(ds.users.ids.ids()), ["A", "B"]);
    // The catalogue comes first (in numeric id order), then items only the events name.
    assert_eq!(ids(ds.items.ids.ids()), ["1", "2", "10", "3"]);
    let s = |v: &str| Some(v.to_string());
    // category = first attribute, brand = last attribute when there are two or more.
    assert_eq!(ds.items.category, [s("3"), s("5"), s("7"), None]);
    assert_eq!(ds.items.brand, [s("4"), None, s("9"), None]);
    let d = partition(&ds, "1970-01-01");
    let ts = timestamps(&d, "timestamp");
    let users = strs(&d, "user_id");
    let items = strs(&d, "item_id");
    let of = |u: &str| -> Vec<(String, i64)> {
        (0..d.num_rows())
            .filter(|&k| users[k] == u)
            .map(|k| (items[k].clone(), ts[k]))
            .collect()
    };
    // Position k is second k (ts-format unix): the sequence order is the time order.
    assert_eq!(
        of("A"),
        [("2".to_string(), 0), ("1".to_string(), 1000), ("10".to_string(), 2000)]
    );
    assert_eq!(of("B"), [("1".to_string(), 0), ("3".to_string(), 1000)]);
    assert!(strs(&d, "event_type").iter().all(|t| t == "purchase"));
}

// ---------------------------------------------------------------------------------------------
// Partitions: appending and replacing days.

fn part_files(ds: &Dataset, date: &str) -> Vec<String> {
    ds.manifest.partitions[date].files.clone()
}

fn stamps(out: &Path, files: &[String]) -> Vec<(std::time::SystemTime, Vec<u8>)> {
    files
        .iter()
        .map(|f| {
            let p = out.join(f);
            (fs::metadata(&p).unwrap().modified().unwrap(), fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn days_append_and_replace_without_touching_other_days() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let header = "user,item,ts,event_type\n";
    let day_a = write_file(
        tmp.path(),
        "a.csv",
        &format!(
            "{header}ua,ia,2024-04-01T08:00:00Z,view\nub,ib,2024-04-01T09:00:00Z,click\nua,ib,2024-04-01T23:59:59.999Z,purchase\n"
        ),
    );
    let r = import_csv(&out, &day_a);
    assert_eq!(r.partitions, vec!["2024-04-01"]);
    let ds = assert_consistent(&out);
    let a_files = part_files(&ds, "2024-04-01");
    let a_stamps = stamps(&out, &a_files);
    let ids_after_a = (ds.users.ids.ids().to_vec(), ds.items.ids.ids().to_vec());

    std::thread::sleep(std::time::Duration::from_millis(20));
    let day_b = write_file(
        tmp.path(),
        "b.csv",
        &format!("{header}uc,ic,2024-04-02T00:00:00Z,view\nua,ia,2024-04-02T10:00:00Z,add_to_cart\n"),
    );
    let r = import_csv(&out, &day_b);
    assert_eq!(r.partitions, vec!["2024-04-02"]);
    assert_eq!(r.events, 5);
    let ds = assert_consistent(&out);
    assert_eq!(part_files(&ds, "2024-04-01"), a_files, "day A's file list changed");
    assert_eq!(stamps(&out, &a_files), a_stamps, "day A's files were rewritten");
    assert_eq!(ds.manifest.partitions["2024-04-01"].rows, 3);
    assert_eq!(ds.manifest.partitions["2024-04-02"].rows, 2);
    // Earlier indices are kept; new ids are appended.
    assert_eq!(ids(ds.users.ids.ids()), ["ua", "ub", "uc"]);
    assert_eq!(ids(ds.items.ids.ids()), ["ia", "ib", "ic"]);
    assert!(ds.users.ids.ids().starts_with(&ids_after_a.0));
    let b_files = part_files(&ds, "2024-04-02");
    let b_stamps = stamps(&out, &b_files);

    // Re-import day A with different rows: that partition is replaced, B is untouched.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let day_a2 = write_file(
        tmp.path(),
        "a2.csv",
        &format!("{header}ud,id,2024-04-01T12:00:00Z,view\n"),
    );
    let r = import_csv(&out, &day_a2);
    assert_eq!(r.partitions, vec!["2024-04-01"]);
    assert_eq!(r.events, 3);
    let ds = assert_consistent(&out);
    assert_eq!(ds.manifest.partitions["2024-04-01"].rows, 1);
    assert_eq!(ds.manifest.partitions["2024-04-02"].rows, 2);
    assert_eq!(part_files(&ds, "2024-04-02"), b_files, "day B's file list changed");
    assert_eq!(stamps(&out, &b_files), b_stamps, "day B's files were rewritten");
    let new_a = part_files(&ds, "2024-04-01");
    for f in &a_files {
        assert!(!new_a.contains(f), "replaced part file {f} still live");
        assert!(!out.join(f).exists(), "replaced part file {f} not deleted");
    }
    let d = partition(&ds, "2024-04-01");
    assert_eq!(strs(&d, "user_id"), ["ud"]);
    assert_eq!(u64s(&d, "user_idx"), [Some(3)]);
    assert_eq!(u64s(&d, "item_idx"), [Some(3)]);
    // The dictionary is append-only: ids only the replaced day used keep their index.
    assert_eq!(ids(ds.users.ids.ids()), ["ua", "ub", "uc", "ud"]);
    assert_eq!(ids(ds.items.ids.ids()), ["ia", "ib", "ic", "id"]);
    // Day B's rows still point at the right ids.
    let d = partition(&ds, "2024-04-02");
    assert_eq!(u64s(&d, "user_idx"), [Some(2), Some(0)]);
    assert_eq!(u64s(&d, "item_idx"), [Some(2), Some(0)]);
}

#[test]
fn one_import_spanning_many_days_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let mut csv = String::from("user,item,ts,event_type\n");
    let t0 = ms("2024-01-01T00:00:00Z");
    // Rows out of time order across ten days, every 37 minutes.
    for k in 0..400i64 {
        let t = t0 + ((k * 7919) % 400) * 37 * 60_000;
        csv.push_str(&format!("u{},i{},{},view\n", k % 13, k % 29, rfc3339(t)));
    }
    let f = write_file(tmp.path(), "many.csv", &csv);
    let r = import_csv(&out, &f);
    assert_eq!(r.events, 400);
    assert_eq!(r.partitions.len(), 11);
    let ds = assert_consistent(&out);
    assert_eq!(ds.manifest.partitions.values().map(|p| p.rows).sum::<u64>(), 400);
    // Re-importing the same file replaces every day and leaves the same counts.
    let r = import_csv(&out, &f);
    assert_eq!(r.events, 400);
    let ds2 = assert_consistent(&out);
    assert_eq!(
        ds2.manifest.partitions.values().map(|p| p.rows).collect::<Vec<_>>(),
        ds.manifest.partitions.values().map(|p| p.rows).collect::<Vec<_>>()
    );
    assert_eq!(ds2.users.ids.ids(), ds.users.ids.ids());
}

// ---------------------------------------------------------------------------------------------
// Real data.

#[test]
fn real_ta_feng() {
    let Some(zip) = real_data_file("ta-feng/ta_feng.csv.zip") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tafeng");
    let map = "user=CUSTOMER_ID,item=PRODUCT_ID,ts=TRANSACTION_DT,category=PRODUCT_SUBCLASS,\
               line_price=SALES_PRICE,quantity=AMOUNT,age_bucket=AGE_GROUP,region=PIN_CODE";
    let mut opts = options(&[&zip], map);
    opts.ts_format = "%m/%d/%Y".parse().unwrap();
    opts.event_type = Some("purchase".parse().unwrap());
    let report = import(&out, &opts).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.rows_imported, 817_741);
    assert_eq!(report.events, 817_741);
    assert_eq!(report.users, 32_266);
    assert_eq!(report.items, 23_812);
    let ds = Dataset::open(&out).unwrap();
    let m = &ds.manifest;
    assert_eq!(m.num_events, 817_741);
    assert_eq!(m.num_users, 32_266);
    assert_eq!(m.num_items, 23_812);
    assert_eq!(m.partitions.len(), 120);
    assert_eq!(m.partitions.keys().next().map(String::as_str), Some("2000-11-01"));
    assert_eq!(m.partitions.keys().last().map(String::as_str), Some("2001-02-28"));
    assert_eq!(m.partitions.values().map(|p| p.rows).sum::<u64>(), 817_741);
    let distinct_categories: std::collections::HashSet<_> = ds.items.category.iter().flatten().collect();
    // 2,012 subclasses occur in the rows; an item keeps the category of its first row, and those
    // first rows name 1,998 distinct subclasses (computed independently with Python's csv module).
    assert_eq!(
        distinct_categories.len(),
        1_998,
        "distinct first PRODUCT_SUBCLASS of the items"
    );
    assert!(ds.items.category.iter().all(Option::is_some));
    assert!(ds.items.price.iter().all(|p| p.is_some_and(|p| p >= 0.0)));
}

#[test]
fn real_amazon_beauty() {
    let Some(seq) = real_data_file("amazon-2014-5core/Beauty.txt") else {
        return;
    };
    let attrs = real_data_file("amazon-2014-5core/Beauty_item2attributes.json").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("beauty");
    let mut opts = options(&[&seq], "user=user,item=item,ts=position");
    opts.format = Some(InputFormat::Sequences);
    opts.ts_format = "unix".parse().unwrap();
    opts.event_type = Some("purchase".parse().unwrap());
    opts.items = Some(attrs);
    let report = import(&out, &opts).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.users, 22_363);
    assert_eq!(report.items, 12_101);
    assert_eq!(report.events, 198_502);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(
        (ds.manifest.num_users, ds.manifest.num_items, ds.manifest.num_events),
        (22_363, 12_101, 198_502)
    );
    // Every item has attributes, so every item has a category.
    assert!(ds.items.category.iter().all(Option::is_some));
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers.

/// Two imports racing on one dataset: each either fails (the lock is held) or its rows survive.
/// This failed when `import` read the dataset before taking the writer lock (a lost update: the
/// second import committed a stale view and garbage-collected the first one's files).
#[test]
fn concurrent_imports_that_both_succeed_are_both_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    // A large user table makes opening the dataset slow enough to widen the window.
    let mut csv = String::from("user,item,ts,event_type\n");
    for k in 0..300_000 {
        csv.push_str(&format!("user{k},item{},2024-01-01T00:00:00Z,view\n", k % 50_000));
    }
    let big = write_file(tmp.path(), "big.csv", &csv);
    import_csv(&out, &big);
    for round in 0..10u64 {
        let day = 1 + round;
        let fa = write_file(
            tmp.path(),
            &format!("a{round}.csv"),
            &format!("user,item,ts,event_type\nA{round},itemA{round},2024-02-{day:02}T00:00:00Z,view\n"),
        );
        let fb = write_file(
            tmp.path(),
            &format!("b{round}.csv"),
            &format!("user,item,ts,event_type\nB{round},itemB{round},2024-03-{day:02}T00:00:00Z,view\n"),
        );
        let (oa, ob) = (out.clone(), out.clone());
        let a = std::thread::spawn(move || import(&oa, &options(&[&fa], "user=user,item=item,ts=ts")).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(15 * (round % 5)));
        let b = std::thread::spawn(move || import(&ob, &options(&[&fb], "user=user,item=item,ts=ts")).is_ok());
        let (a_ok, b_ok) = (a.join().unwrap(), b.join().unwrap());
        let ds = assert_consistent(&out);
        if a_ok {
            assert!(
                ds.users.ids.get(&format!("A{round}")).is_some(),
                "round {round}: import A returned Ok but its rows are gone"
            );
            assert!(ds.manifest.partitions.contains_key(&format!("2024-02-{day:02}")));
        }
        if b_ok {
            assert!(
                ds.users.ids.get(&format!("B{round}")).is_some(),
                "round {round}: import B returned Ok but its rows are gone"
            );
        }
    }
}

/// Inputs the fuzzer (`fuzz/run.sh`, target `import_formats`) found to take the process down, each
/// in `tests/data/fuzz/` under a name whose extension gives its format: every one must be a data
/// error naming the file, with nothing written.
#[test]
fn inputs_found_by_fuzzing_are_errors_naming_the_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("data");
        let mut opts = recsys_train::import::ImportOptions::new(
            vec![path.clone()],
            "user=user_id,item=item_id,ts=timestamp".parse().unwrap(),
        );
        opts.progress = recsys_train::progress::Progress::quiet();
        let e = import(&out, &opts).expect_err(&path.display().to_string());
        assert!(matches!(e, Error::InvalidData { .. }), "{}: {e:?}", path.display());
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(
            !out.join(MANIFEST).exists(),
            "{}: a dataset was written",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 1, "no inputs in {}", dir.display());
}

/// Found by fuzzing: a 755-byte Arrow IPC stream whose message header claims a multi-gigabyte
/// body made Arrow's reader allocate 4 GB before failing. The sizes are now checked against the
/// file's length first: a prompt data error that says what the header claimed.
#[test]
fn an_arrow_stream_claiming_more_than_the_file_holds_is_refused_before_reading_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/arrow-ipc-stream-claims-4gb.arrows");
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = recsys_train::import::ImportOptions::new(
        vec![path.clone()],
        "user=user_id,item=item_id,ts=timestamp".parse().unwrap(),
    );
    opts.progress = recsys_train::progress::Progress::quiet();
    let e = import(&tmp.path().join("data"), &opts).unwrap_err();
    assert!(e.to_string().contains("claims"), "{e}");
    assert!(e.to_string().contains("arrow-ipc-stream-claims-4gb.arrows"), "{e}");
}
