//! The import readers (CSV, Parquet, Arrow IPC, sequence text, item-attribute JSON) and the whole
//! `import` of a CSV event file: `data[0]` picks the reader, the rest is the file. Contract: an
//! error naming the file or a row, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_train::import::{ImportOptions, OnError, import};
use recsys_train::progress::Progress;
use recsys_train::read::{InputFormat, for_each_batch};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (format, name) = match pick % 6 {
        0 => (InputFormat::Csv, "events.csv"),
        1 => (InputFormat::Parquet, "events.parquet"),
        2 => (InputFormat::Arrow, "events.arrow"),
        3 => (InputFormat::Sequences, "Beauty.txt"),
        4 => (InputFormat::Json, "items.json"),
        _ => (InputFormat::Csv, "import.csv"),
    };
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write input");
    if pick % 6 == 5 {
        // The whole import: column mapping, time parsing, partitioning, the dataset's manifest.
        let map = "user=user_id,item=item_id,ts=timestamp".parse().expect("column map");
        let mut opts = ImportOptions::new(vec![path], map);
        opts.progress = Progress::quiet();
        if pick & 0x80 != 0 {
            opts.on_error = OnError::Skip;
        }
        let _ = import(&dir.path().join("data"), &opts);
    } else {
        let mut rows = 0usize;
        let _ = for_each_batch(&path, format, &mut |batch, _| {
            rows += batch.num_rows();
            Ok(())
        });
    }
});
