//! Readers for the input formats the importer accepts: CSV (plain or zipped), Parquet, Arrow IPC
//! (file or stream), user-sequence text files and item-attribute JSON.
//!
//! Every reader yields record batches to a callback together with the 1-based number of the
//! batch's first data row, so errors can name the exact row of the input file.

use crate::arrow;
use crate::{Error, Result};
use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

/// Rows per batch handed to the callback.
pub const BATCH_ROWS: usize = 1 << 16;

/// An input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Comma-separated values with a header line (also inside a `.zip`).
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC, file or stream format (`.arrow`, `.ipc`, `.feather`).
    Arrow,
    /// One line per user: `user_id item_id item_id ...` in time order (the Amazon 5-core files);
    /// yields columns `user`, `item`, `position`.
    Sequences,
    /// A JSON object `{"item_id": [attribute, ...], ...}` (item attributes); yields columns
    /// `item_id`, `category` (first attribute), `brand` (last attribute when there are two or more).
    Json,
}

impl InputFormat {
    /// Guesses the format from the file name.
    pub fn detect(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let fmt =
            if name.ends_with(".csv") || name.ends_with(".csv.zip") || name.ends_with(".zip") || name.ends_with(".tsv")
            {
                InputFormat::Csv
            } else if name.ends_with(".parquet") || name.ends_with(".pq") {
                InputFormat::Parquet
            } else if name.ends_with(".arrow")
                || name.ends_with(".ipc")
                || name.ends_with(".feather")
                || name.ends_with(".arrows")
            {
                InputFormat::Arrow
            } else if name.ends_with(".json") {
                InputFormat::Json
            } else {
                return Err(Error::arg(
                    "format",
                    path.display(),
                    "cannot tell the format from the file name; pass --format csv|parquet|arrow|sequences|json",
                ));
            };
        Ok(fmt)
    }
}

/// Calls `f(batch, first_row)` for every batch of the file.
pub fn for_each_batch(
    path: &Path,
    format: InputFormat,
    f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>,
) -> Result<()> {
    match format {
        InputFormat::Csv => read_csv(path, f),
        InputFormat::Parquet => {
            let file = File::open(path).map_err(Error::io(path))?;
            let reader = decoder(path, "Parquet file", || {
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))?
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))
            })?;
            feed(path, reader, f)
        }
        InputFormat::Arrow => {
            // Arrow's readers allocate what the file's headers claim before reading it (found by
            // fuzzing: 755 bytes made the stream reader allocate 4 GB): the sizes are checked
            // against the file's length first.
            if ipc_file_fits(path)? {
                let file = File::open(path).map_err(Error::io(path))?;
                let reader = decoder(path, "Arrow IPC file", || {
                    arrow::ipc::reader::FileReader::try_new(file, None)
                        .map_err(|e| Error::data(path, format!("not a readable Arrow IPC file: {e}")))
                })?;
                return feed(path, reader, f);
            }
            ipc_stream_fits(path)?;
            let file = File::open(path).map_err(Error::io(path))?;
            let reader = decoder(path, "Arrow IPC stream", || {
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| Error::data(path, format!("not an Arrow IPC file or stream: {e}")))
            })?;
            feed(path, reader, f)
        }
        InputFormat::Sequences => read_sequences(path, f),
        InputFormat::Json => read_attribute_json(path, f),
    }
}

/// Runs one step of a third-party decoder (Parquet, Arrow IPC) so that a panic inside it on
/// malformed input (found by fuzzing: arrow-ipc 60's reader slices a buffer at an offset the file
/// gives without checking it) becomes an [`Error::InvalidData`] naming the file instead of taking the
/// process down. Nothing of the decoder is used after it panicked.
fn decoder<T>(path: &Path, what: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        let why: String = why.chars().take(200).collect();
        Err(Error::data(
            path,
            format!("malformed {what}: the decoder failed on it ({why})"),
        ))
    })
}

/// The magic bytes at both ends of an Arrow IPC file (the stream format has none).
const IPC_MAGIC: &[u8; 6] = b"ARROW1";

/// For a file that starts with the Arrow IPC file magic: checks that the footer and every block it
/// lists lie inside the file, so that the reader's allocations stay within the file's size.
/// `Ok(false)` when the file does not start with the magic (try the stream format).
fn ipc_file_fits(path: &Path) -> Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).map_err(Error::io(path))?;
    let len = file.metadata().map_err(Error::io(path))?.len();
    let mut magic = [0u8; 6];
    if len < 6 || file.read_exact(&mut magic).is_err() || &magic != IPC_MAGIC {
        return Ok(false);
    }
    let bad = |why: String| Error::data(path, format!("not a readable Arrow IPC file: {why}"));
    // magic (6) + padding (2) ... footer, footer length (4), magic (6)
    if len < 18 {
        return Err(bad(format!("{len} bytes is too short for the file format")));
    }
    let mut tail = [0u8; 10];
    file.seek(SeekFrom::End(-10)).map_err(Error::io(path))?;
    file.read_exact(&mut tail).map_err(Error::io(path))?;
    if &tail[4..] != IPC_MAGIC {
        return Err(bad("no magic at the end (truncated?)".into()));
    }
    let footer_len = i32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
    if footer_len < 0 || footer_len as u64 > len - 18 {
        return Err(bad(format!("footer of {footer_len} bytes in a file of {len}")));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::End(-10 - i64::from(footer_len)))
        .map_err(Error::io(path))?;
    file.read_exact(&mut footer).map_err(Error::io(path))?;
    let footer = arrow::ipc::root_as_footer(&footer).map_err(|e| bad(format!("unreadable footer: {e}")))?;
    let blocks = footer
        .recordBatches()
        .into_iter()
        .chain(footer.dictionaries())
        .flatten();
    for (n, b) in blocks.enumerate() {
        let end = i128::from(b.offset()) + i128::from(b.metaDataLength()) + i128::from(b.bodyLength());
        if b.offset() < 0 || b.metaDataLength() < 0 || b.bodyLength() < 0 || end > i128::from(len) {
            return Err(bad(format!(
                "block {n} claims bytes {} to {end}, outside the file's {len}",
                b.offset()
            )));
        }
    }
    Ok(true)
}

/// Walks the messages of an Arrow IPC stream (metadata length, metadata, body) and checks that each
/// one's metadata and body lie inside the file before the reader allocates for them.
fn ipc_stream_fits(path: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = BufReader::new(File::open(path).map_err(Error::io(path))?);
    let len = file.get_ref().metadata().map_err(Error::io(path))?.len();
    let bad = |why: String| Error::data(path, format!("not an Arrow IPC file or stream: {why}"));
    let mut pos = 0u64;
    for n in 0.. {
        let mut word = [0u8; 4];
        if pos == len || file.read_exact(&mut word).is_err() {
            return Ok(()); // the end of the data (the reader reports a missing end marker)
        }
        pos += 4;
        let mut meta_len = i32::from_le_bytes(word);
        if meta_len == -1 {
            // The continuation marker, then the length.
            file.read_exact(&mut word)
                .map_err(|_| bad(format!("message {n}: truncated length")))?;
            pos += 4;
            meta_len = i32::from_le_bytes(word);
        }
        if meta_len == 0 {
            return Ok(()); // end of stream
        }
        if meta_len < 0 || meta_len as u64 > len - pos {
            return Err(bad(format!(
                "message {n} claims {meta_len} bytes of metadata, {} are left in the file",
                len - pos
            )));
        }
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact(&mut meta).map_err(Error::io(path))?;
        pos += meta_len as u64;
        let message =
            arrow::ipc::root_as_message(&meta).map_err(|e| bad(format!("message {n}: unreadable metadata: {e}")))?;
        let body = message.bodyLength();
        if body < 0 || body as u64 > len - pos {
            return Err(bad(format!(
                "message {n} claims a body of {body} bytes, {} are left in the file",
                len - pos
            )));
        }
        file.seek(SeekFrom::Current(body)).map_err(Error::io(path))?;
        pos += body as u64;
    }
    Ok(())
}

fn feed(
    path: &Path,
    reader: impl Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>>,
    f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>,
) -> Result<()> {
    let mut reader = reader;
    let mut row = 1u64;
    // Only the decoder's own step runs under the guard: the callback (our import) is not hidden.
    while let Some(b) = decoder(path, "input", || Ok(reader.next()))? {
        let b = b.map_err(|e| Error::data(path, format!("after row {}: {e}", row - 1)))?;
        let n = b.num_rows() as u64;
        f(b, row)?;
        row += n;
    }
    Ok(())
}

fn read_csv(path: &Path, f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>) -> Result<()> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".zip") {
        let file = File::open(path).map_err(Error::io(path))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| Error::data(path, format!("not a readable zip archive: {e}")))?;
        let index = (0..zip.len())
            .find(|&i| {
                zip.by_index(i)
                    .map(|e| e.is_file() && e.name().is_ok_and(|n| !n.starts_with("__MACOSX") && !n.ends_with('/')))
                    .unwrap_or(false)
            })
            .ok_or_else(|| Error::data(path, "the zip archive holds no file"))?;
        let entry = zip.by_index(index).map_err(|e| Error::data(path, e.to_string()))?;
        read_csv_stream(path, BufReader::with_capacity(1 << 20, entry), f)
    } else {
        let file = File::open(path).map_err(Error::io(path))?;
        read_csv_stream(path, BufReader::with_capacity(1 << 20, file), f)
    }
}

fn read_csv_stream<R: Read>(
    path: &Path,
    mut input: BufReader<R>,
    f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>,
) -> Result<()> {
    let mut header = Vec::new();
    input.read_until(b'\n', &mut header).map_err(Error::io(path))?;
    if header.starts_with(&[0xef, 0xbb, 0xbf]) {
        header.drain(..3);
    }
    let delimiter = if path.to_string_lossy().to_ascii_lowercase().ends_with(".tsv") {
        b'\t'
    } else {
        b','
    };
    let names: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(header.as_slice())
        .records()
        .next()
        .transpose()
        .map_err(|e| Error::data(path, format!("unreadable CSV header: {e}")))?
        .ok_or_else(|| Error::data(path, "empty CSV file (no header line)"))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_delimiter(delimiter)
        .with_truncated_rows(true)
        .with_batch_size(BATCH_ROWS)
        .build(Cursor::new(header).chain(input))
        .map_err(|e| Error::data(path, e.to_string()))?;
    feed(path, reader, f)
}

fn read_sequences(path: &Path, f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(Error::io(path))?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, true),
        Field::new("item", DataType::Utf8, true),
        Field::new("position", DataType::Int64, true),
    ]));
    let (mut users, mut items, mut pos) = (StringBuilder::new(), StringBuilder::new(), Int64Builder::new());
    let mut row = 1u64;
    let mut pending = 0usize;
    let mut emit = |users: &mut StringBuilder,
                    items: &mut StringBuilder,
                    pos: &mut Int64Builder,
                    row: &mut u64,
                    pending: &mut usize|
     -> Result<()> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(users.finish()),
            Arc::new(items.finish()),
            Arc::new(pos.finish()),
        ];
        let b = RecordBatch::try_new(schema.clone(), cols)?;
        let n = b.num_rows() as u64;
        f(b, *row)?;
        *row += n;
        *pending = 0;
        Ok(())
    };
    for (lineno, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(Error::io(path))?;
        let mut tokens = line.split_whitespace();
        let Some(user) = tokens.next() else { continue };
        let mut any = false;
        for (k, item) in tokens.enumerate() {
            users.append_value(user);
            items.append_value(item);
            pos.append_value(k as i64);
            pending += 1;
            any = true;
        }
        if !any {
            return Err(Error::BadRow {
                file: path.display().to_string(),
                row: lineno as u64 + 1,
                column: "item".into(),
                value: line.clone(),
                reason: "a sequence line needs a user id followed by at least one item id".into(),
            });
        }
        if pending >= BATCH_ROWS {
            emit(&mut users, &mut items, &mut pos, &mut row, &mut pending)?;
        }
    }
    if pending > 0 {
        emit(&mut users, &mut items, &mut pos, &mut row, &mut pending)?;
    }
    Ok(())
}

fn read_attribute_json(path: &Path, f: &mut dyn FnMut(RecordBatch, u64) -> Result<()>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| Error::data(path, format!("expected a JSON object of item -> attributes: {e}")))?;
    let (mut ids, mut cats, mut brands) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let text_of = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
    entries.sort_by(|a, b| natural_key(a.0).cmp(&natural_key(b.0)));
    for (id, v) in entries {
        ids.append_value(id);
        let attrs: Vec<String> = match v {
            serde_json::Value::Array(a) => a.iter().map(text_of).collect(),
            serde_json::Value::Null => Vec::new(),
            other => vec![text_of(other)],
        };
        cats.append_option(attrs.first());
        brands.append_option(if attrs.len() >= 2 { attrs.last() } else { None });
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("brand", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(cats.finish()),
        Arc::new(brands.finish()),
    ];
    f(RecordBatch::try_new(schema, cols)?, 1)
}

/// Sorts numeric ids numerically and the rest lexically after them (stable dictionary order).
fn natural_key(s: &str) -> (u8, u64, &str) {
    match s.parse::<u64>() {
        Ok(n) => (0, n, ""),
        Err(_) => (1, 0, s),
    }
}

/// The event CSV files `recsys-serve` writes (its `event_log`) under `path`: the file itself, or a
/// directory's `*.csv` files in name order (day order). Read by `ab-report` and `ope`.
pub fn serving_event_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::arg(
            "events",
            path.display(),
            "neither an event CSV file nor a directory of them",
        ));
    }
    files_with_extension(path, "csv")
}

/// The files of directory `dir` whose extension is `ext`, in name order.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let p = e.map_err(Error::io(dir))?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}
