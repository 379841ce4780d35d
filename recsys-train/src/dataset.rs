//! The dataset directory every later stage reads.
//!
//! ```text
//! DIR/_manifest.json                         the commit point: live partitions and their files
//! DIR/events/date=YYYY-MM-DD/part-*.parquet  events, one directory per UTC day, zstd, sorted by time
//! DIR/items.parquet                          the item table; `item_idx` (row order) is the dense id
//! DIR/users.parquet                          the user table; `user_idx` (row order) is the dense id
//! ```
//!
//! The `(item_idx, item_id)` and `(user_idx, user_id)` columns are the id dictionary: ids are
//! assigned densely in order of first appearance and never change, so appending a day keeps every
//! earlier index valid. Writers never touch a live file: new part files get fresh names, tables are
//! written to a temporary name and renamed, and the manifest is renamed last, so a reader (and an
//! interrupted import) sees either the old dataset or the new one.

use crate::arrow;
use crate::{Error, Result};
use ahash::AHashMap;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use recsys_core::atomic::{unique_token, write_atomic};
use recsys_core::schema::{DAY_MS, EventType, columns as col};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// File name of the manifest inside a dataset directory.
pub const MANIFEST: &str = "_manifest.json";
const FORMAT: &str = "techshop-recs-dataset";
const FORMAT_VERSION: u32 = 1;

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Arrow schema of the event partitions.
pub fn events_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::USER_IDX, DataType::UInt32, false),
            Field::new(col::ITEM_IDX, DataType::UInt32, false),
            Field::new(col::USER_ID, DataType::Utf8, false),
            Field::new(col::ITEM_ID, DataType::Utf8, false),
            Field::new(
                col::EVENT_TYPE,
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new(col::TIMESTAMP, utc_ms(), false),
            Field::new(col::SESSION_ID, DataType::Utf8, true),
            Field::new(col::PRICE, DataType::Float64, true),
            Field::new(col::QUANTITY, DataType::UInt32, true),
            Field::new(col::RATING, DataType::Float32, true),
            Field::new(col::DEVICE, DataType::Utf8, true),
            Field::new(col::PAGE, DataType::Utf8, true),
        ]))
    })
    .clone()
}

/// Arrow schema of `items.parquet`.
pub fn items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::ITEM_IDX, DataType::UInt32, false),
        Field::new(col::ITEM_ID, DataType::Utf8, false),
        Field::new(col::CATEGORY, DataType::Utf8, true),
        Field::new(col::PRICE, DataType::Float64, true),
        Field::new(col::BRAND, DataType::Utf8, true),
        Field::new(col::AVG_RATING, DataType::Float64, true),
        Field::new(col::INVENTORY, DataType::Int64, true),
        Field::new(col::CREATED_AT, utc_ms(), true),
        Field::new(col::TITLE, DataType::Utf8, true),
    ]))
}

/// Arrow schema of `users.parquet`.
pub fn users_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::USER_IDX, DataType::UInt32, false),
        Field::new(col::USER_ID, DataType::Utf8, false),
        Field::new(col::AGE_BUCKET, DataType::Utf8, true),
        Field::new(col::REGION, DataType::Utf8, true),
        Field::new(col::SIGNUP_TS, utc_ms(), true),
    ]))
}

/// The string array of the four event types, in code order (the event-type dictionary).
pub fn event_type_values() -> ArrayRef {
    Arc::new(StringArray::from_iter_values(EventType::ALL.iter().map(|t| t.as_str())))
}

/// Builds the dictionary-encoded `event_type` column from codes (`EventType as u8`).
pub fn event_type_array(codes: Vec<i8>) -> Result<ArrayRef> {
    let keys = arrow::array::Int8Array::from(codes);
    Ok(Arc::new(DictionaryArray::<Int8Type>::try_new(
        keys,
        event_type_values(),
    )?))
}

/// Writer settings shared by every Parquet file the project writes: zstd level 1, 1M-row groups.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Writes record batches as one Parquet file, atomically.
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    write_atomic(path, |f| {
        let mut w =
            ArrowWriter::try_new(f, schema, Some(writer_properties())).map_err(|e| parquet_write_error(path, e))?;
        for b in batches {
            w.write(b).map_err(|e| parquet_write_error(path, e))?;
        }
        w.close().map_err(|e| parquet_write_error(path, e))?;
        Ok(())
    })
}

/// A Parquet writer's failure: an I/O error inside it (a full disk) becomes [`Error::Io`] naming
/// the file; anything else stays a Parquet error.
fn parquet_write_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    if let parquet::errors::ParquetError::External(inner) = &e
        && let Some(io) = inner.downcast_ref::<std::io::Error>()
    {
        return Error::io(path)(std::io::Error::new(io.kind(), io.to_string()));
    }
    Error::Parquet(e)
}

/// Reads a whole Parquet file (optionally only some columns) into record batches.
pub fn read_parquet(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(Error::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::data(path, e.to_string()))?;
    let builder = match columns {
        Some(names) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(1 << 16).build()?;
    reader
        .map(|b| b.map_err(|e| Error::data(path, e.to_string())))
        .collect()
}

/// The UTC date (`YYYY-MM-DD`) of a day number (days since the epoch).
pub fn day_to_date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

/// A bidirectional, append-only map between string ids and dense `u32` indices.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    ids: Vec<String>,
    index: AHashMap<String, u32>,
}

impl IdMap {
    /// Builds a map from ids in index order; duplicates are refused.
    pub fn from_ids(ids: Vec<String>, what: &str) -> Result<Self> {
        let mut index = AHashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i as u32).is_some() {
                return Err(Error::arg(what, id, "duplicate id in the id dictionary"));
            }
        }
        Ok(IdMap { ids, index })
    }

    /// The index of an id, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The index of an id, assigning the next free one when it is new.
    pub fn get_or_insert(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        i
    }

    /// The id of an index.
    pub fn id(&self, idx: u32) -> Option<&str> {
        self.ids.get(idx as usize).map(String::as_str)
    }

    /// All ids in index order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The item table, one row per dense item index.
#[derive(Debug, Clone, Default)]
pub struct ItemTable {
    /// Id dictionary (row order).
    pub ids: IdMap,
    /// Category name.
    pub category: Vec<Option<String>>,
    /// Unit price.
    pub price: Vec<Option<f64>>,
    /// Brand.
    pub brand: Vec<Option<String>>,
    /// Catalogue average rating.
    pub avg_rating: Vec<Option<f64>>,
    /// Stock level.
    pub inventory: Vec<Option<i64>>,
    /// Creation time, UTC ms.
    pub created_at: Vec<Option<i64>>,
    /// Title.
    pub title: Vec<Option<String>>,
}

impl ItemTable {
    /// The index of `id`, adding an empty row for a new id.
    pub fn intern(&mut self, id: &str) -> u32 {
        let i = self.ids.get_or_insert(id);
        let n = self.ids.len();
        if self.category.len() < n {
            self.category.resize(n, None);
            self.price.resize(n, None);
            self.brand.resize(n, None);
            self.avg_rating.resize(n, None);
            self.inventory.resize(n, None);
            self.created_at.resize(n, None);
            self.title.resize(n, None);
        }
        i
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The table as one record batch in [`items_schema`].
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let n = self.len() as u32;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter_values(self.ids.ids())),
            Arc::new(StringArray::from(self.category.clone())),
            Arc::new(Float64Array::from(self.price.clone())),
            Arc::new(StringArray::from(self.brand.clone())),
            Arc::new(Float64Array::from(self.avg_rating.clone())),
            Arc::new(Int64Array::from(self.inventory.clone())),
            Arc::new(TimestampMillisecondArray::from(self.created_at.clone()).with_timezone("UTC")),
            Arc::new(StringArray::from(self.title.clone())),
        ];
        Ok(RecordBatch::try_new(items_schema(), cols)?)
    }

    /// Reads `items.parquet`.
    pub fn read(path: &Path) -> Result<Self> {
        let batches = read_parquet(path, None)?;
        let mut t = ItemTable::default();
        let mut ids = Vec::new();
        for b in &batches {
            check_dense(path, b, col::ITEM_IDX, ids.len())?;
            ids.extend(
                strings(path, b, col::ITEM_ID)?
                    .into_iter()
                    .map(|s| s.unwrap_or_default()),
            );
            t.category.extend(strings(path, b, col::CATEGORY)?);
            t.price.extend(f64s(path, b, col::PRICE)?);
            t.brand.extend(strings(path, b, col::BRAND)?);
            t.avg_rating.extend(f64s(path, b, col::AVG_RATING)?);
            t.inventory.extend(i64s(path, b, col::INVENTORY)?);
            t.created_at.extend(i64s(path, b, col::CREATED_AT)?);
            t.title.extend(strings(path, b, col::TITLE)?);
        }
        t.ids = IdMap::from_ids(ids, col::ITEM_ID)?;
        Ok(t)
    }
}

/// The user table, one row per dense user index.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    /// Id dictionary (row order).
    pub ids: IdMap,
    /// Age bucket.
    pub age_bucket: Vec<Option<String>>,
    /// Region.
    pub region: Vec<Option<String>>,
    /// Signup time, UTC ms.
    pub signup_ts: Vec<Option<i64>>,
}

impl UserTable {
    /// The index of `id`, adding an empty row for a new id.
    pub fn intern(&mut self, id: &str) -> u32 {
        let i = self.ids.get_or_insert(id);
        let n = self.ids.len();
        if self.age_bucket.len() < n {
            self.age_bucket.resize(n, None);
            self.region.resize(n, None);
            self.signup_ts.resize(n, None);
        }
        i
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no users.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The table as one record batch in [`users_schema`].
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let n = self.len() as u32;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter_values(self.ids.ids())),
            Arc::new(StringArray::from(self.age_bucket.clone())),
            Arc::new(StringArray::from(self.region.clone())),
            Arc::new(TimestampMillisecondArray::from(self.signup_ts.clone()).with_timezone("UTC")),
        ];
        Ok(RecordBatch::try_new(users_schema(), cols)?)
    }

    /// Reads `users.parquet`.
    pub fn read(path: &Path) -> Result<Self> {
        let batches = read_parquet(path, None)?;
        let mut t = UserTable::default();
        let mut ids = Vec::new();
        for b in &batches {
            check_dense(path, b, col::USER_IDX, ids.len())?;
            ids.extend(
                strings(path, b, col::USER_ID)?
                    .into_iter()
                    .map(|s| s.unwrap_or_default()),
            );
            t.age_bucket.extend(strings(path, b, col::AGE_BUCKET)?);
            t.region.extend(strings(path, b, col::REGION)?);
            t.signup_ts.extend(i64s(path, b, col::SIGNUP_TS)?);
        }
        t.ids = IdMap::from_ids(ids, col::USER_ID)?;
        Ok(t)
    }
}

fn column<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| Error::data(path, format!("missing column `{name}`")))
}

fn check_dense(path: &Path, b: &RecordBatch, name: &str, start: usize) -> Result<()> {
    let a = column(path, b, name)?;
    let a = a
        .as_primitive_opt::<arrow::datatypes::UInt32Type>()
        .ok_or_else(|| Error::data(path, format!("column `{name}` must be uint32")))?;
    for (k, v) in a.iter().enumerate() {
        if v != Some((start + k) as u32) {
            return Err(Error::data(
                path,
                format!("column `{name}` is not dense at row {}: {v:?}", start + k),
            ));
        }
    }
    Ok(())
}

fn strings(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = arrow::compute::cast(column(path, b, name)?, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect())
}

fn f64s(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = arrow::compute::cast(column(path, b, name)?, &DataType::Float64)?;
    Ok(a.as_primitive::<arrow::datatypes::Float64Type>().iter().collect())
}

fn i64s(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = column(path, b, name)?;
    let a = match a.data_type() {
        DataType::Timestamp(_, _) => arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
        _ => a.clone(),
    };
    let a = arrow::compute::cast(&a, &DataType::Int64)?;
    Ok(a.as_primitive::<arrow::datatypes::Int64Type>().iter().collect())
}

/// One live day of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Part files relative to the dataset root.
    pub files: Vec<String>,
    /// Rows in all parts.
    pub rows: u64,
    /// Earliest timestamp (UTC ms).
    pub min_ts: i64,
    /// Latest timestamp (UTC ms).
    pub max_ts: i64,
}

/// The dataset's commit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `techshop-recs-dataset`.
    pub format: String,
    /// Layout version.
    pub version: u32,
    /// Live partitions by date (`YYYY-MM-DD`).
    pub partitions: BTreeMap<String, PartitionInfo>,
    /// Users in the id dictionary.
    pub num_users: u64,
    /// Items in the id dictionary.
    pub num_items: u64,
    /// Events in all live partitions.
    pub num_events: u64,
    /// Wall-clock time of the last commit (UTC ms).
    pub updated_at_ms: i64,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            partitions: BTreeMap::new(),
            num_users: 0,
            num_items: 0,
            num_events: 0,
            updated_at_ms: 0,
        }
    }
}

/// An open dataset directory: its manifest and its item and user tables.
#[derive(Debug)]
pub struct Dataset {
    root: PathBuf,
    /// The committed manifest.
    pub manifest: Manifest,
    /// Items and the item id dictionary.
    pub items: ItemTable,
    /// Users and the user id dictionary.
    pub users: UserTable,
}

impl Dataset {
    /// Opens an existing dataset.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mpath = root.join(MANIFEST);
        if !mpath.exists() {
            return Err(Error::data(
                &root,
                "not a dataset directory (no _manifest.json); create one with `recsys-train import` or `generate`",
            ));
        }
        let text = fs::read_to_string(&mpath).map_err(Error::io(&mpath))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::data(&mpath, e.to_string()))?;
        if manifest.format != FORMAT || manifest.version != FORMAT_VERSION {
            return Err(Error::data(
                &mpath,
                format!("unsupported format {} v{}", manifest.format, manifest.version),
            ));
        }
        let items = if root.join("items.parquet").exists() {
            ItemTable::read(&root.join("items.parquet"))?
        } else {
            ItemTable::default()
        };
        let users = if root.join("users.parquet").exists() {
            UserTable::read(&root.join("users.parquet"))?
        } else {
            UserTable::default()
        };
        if (items.len() as u64) < manifest.num_items || (users.len() as u64) < manifest.num_users {
            return Err(Error::data(
                &root,
                "items.parquet/users.parquet hold fewer ids than the manifest records",
            ));
        }
        Ok(Dataset {
            root,
            manifest,
            items,
            users,
        })
    }

    /// Opens a dataset, or starts an empty one when the directory has none.
    pub fn open_or_create(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if root.join(MANIFEST).exists() {
            return Self::open(root);
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            manifest: Manifest::default(),
            items: ItemTable::default(),
            users: UserTable::default(),
        })
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the dataset's writer lock (an OS file lock, released if the process dies).
    pub fn lock(&self) -> Result<File> {
        Self::lock_dir(&self.root)
    }

    /// Takes the writer lock of the dataset at `root` (created when missing). Writers take it
    /// *before* opening the dataset, so they never commit a stale view of it.
    pub fn lock_dir(root: &Path) -> Result<File> {
        fs::create_dir_all(root).map_err(Error::io(root))?;
        let path = root.join("_lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(fs::TryLockError::WouldBlock) => Err(Error::data(
                &path,
                "another writer holds this dataset; try again when it has finished",
            )),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path)(e)),
        }
    }

    /// Absolute path of a file named in the manifest.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Commits a new state: writes the tables, then replaces the named partitions and renames
    /// the manifest into place; finally deletes part files no manifest refers to any more.
    /// Partitions not in `replaced` are untouched.
    pub fn commit(&mut self, replaced: BTreeMap<String, PartitionInfo>) -> Result<()> {
        write_parquet(
            &self.root.join("items.parquet"),
            items_schema(),
            &[self.items.to_batch()?],
        )?;
        write_parquet(
            &self.root.join("users.parquet"),
            users_schema(),
            &[self.users.to_batch()?],
        )?;
        let mut m = self.manifest.clone();
        for (date, p) in replaced {
            m.partitions.insert(date, p);
        }
        m.num_users = self.users.len() as u64;
        m.num_items = self.items.len() as u64;
        m.num_events = m.partitions.values().map(|p| p.rows).sum();
        m.updated_at_ms = chrono::Utc::now().timestamp_millis();
        let text = serde_json::to_string_pretty(&m).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.root.join(MANIFEST), |f| {
            f.write_all(text.as_bytes()).map_err(Error::io(MANIFEST))
        })?;
        self.manifest = m;
        self.collect_garbage()
    }

    /// Deletes files under `events/` that the manifest does not list (left by replaced
    /// partitions or interrupted writers) and the temporary files of killed writers in the dataset
    /// directory. Call it holding the writer lock ([`Dataset::lock`]).
    pub fn collect_garbage(&self) -> Result<()> {
        recsys_core::atomic::sweep_stale(&self.root, std::time::Duration::ZERO)?;
        let live: std::collections::HashSet<&str> = self
            .manifest
            .partitions
            .values()
            .flat_map(|p| p.files.iter().map(String::as_str))
            .collect();
        let events = self.root.join("events");
        let Ok(dirs) = fs::read_dir(&events) else { return Ok(()) };
        for d in dirs.flatten() {
            let dpath = d.path();
            if !dpath.is_dir() {
                continue;
            }
            let dname = d.file_name().to_string_lossy().to_string();
            let mut remaining = 0;
            for f in fs::read_dir(&dpath).map_err(Error::io(&dpath))?.flatten() {
                let rel = format!("events/{dname}/{}", f.file_name().to_string_lossy());
                if live.contains(rel.as_str()) {
                    remaining += 1;
                } else {
                    let _ = fs::remove_file(f.path());
                }
            }
            if remaining == 0 {
                let _ = fs::remove_dir(&dpath);
            }
        }
        Ok(())
    }

    /// Reads the live events with `timestamp < before` (all when `None`), one day at a time in
    /// date order, each day's rows in time order, restricted to `columns` (all when `None`).
    pub fn scan_events(
        &self,
        before: Option<i64>,
        columns: Option<&[&str]>,
        mut f: impl FnMut(&str, RecordBatch) -> Result<()>,
    ) -> Result<()> {
        for (date, p) in &self.manifest.partitions {
            if before.is_some_and(|b| p.min_ts >= b) {
                continue;
            }
            let batch = self.read_partition(p, columns)?;
            let batch = match before {
                Some(b) if p.max_ts >= b => {
                    let ts = batch
                        .column_by_name(col::TIMESTAMP)
                        .ok_or_else(|| Error::Internal("scan_events needs the timestamp column".into()))?
                        .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                    let keep: arrow::array::BooleanArray = ts.iter().map(|t| Some(t.is_some_and(|t| t < b))).collect();
                    arrow::compute::filter_record_batch(&batch, &keep)?
                }
                _ => batch,
            };
            f(date, batch)?;
        }
        Ok(())
    }

    /// Reads one partition into a single batch sorted by timestamp (stable).
    pub fn read_partition(&self, p: &PartitionInfo, columns: Option<&[&str]>) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        for rel in &p.files {
            batches.extend(read_parquet(&self.path_of(rel), columns)?);
        }
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => match columns {
                Some(c) => Arc::new(
                    events_schema().project(
                        &c.iter()
                            .filter_map(|n| events_schema().index_of(n).ok())
                            .collect::<Vec<_>>(),
                    )?,
                ),
                None => events_schema(),
            },
        };
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        sort_by_timestamp(batch)
    }
}

/// Sorts a batch by its `timestamp` column, keeping the input order among equal timestamps.
pub fn sort_by_timestamp(batch: RecordBatch) -> Result<RecordBatch> {
    let Some(ts) = batch.column_by_name(col::TIMESTAMP) else {
        return Ok(batch);
    };
    let ts = ts.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    let v = ts.values();
    if v.windows(2).all(|w| w[0] <= w[1]) {
        return Ok(batch);
    }
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by_key(|&i| v[i as usize]);
    let idx = UInt32Array::from(idx);
    Ok(arrow::compute::take_record_batch(&batch, &idx)?)
}

/// Buffers canonical event batches by UTC day and writes each day as sorted part files with
/// fresh names (never overwriting a live file).
pub struct PartitionWriter {
    root: PathBuf,
    token: String,
    buffers: BTreeMap<i64, Vec<RecordBatch>>,
    buffered_rows: usize,
    done: BTreeMap<i64, PartitionInfo>,
    flush_rows: usize,
}

impl PartitionWriter {
    /// A writer into `root/events/`; a day is flushed to a part file once `flush_rows` rows of
    /// all days are buffered (its largest day first).
    pub fn new(root: &Path, flush_rows: usize) -> Self {
        PartitionWriter {
            root: root.to_path_buf(),
            token: unique_token(),
            buffers: BTreeMap::new(),
            buffered_rows: 0,
            done: BTreeMap::new(),
            flush_rows: flush_rows.max(1),
        }
    }

    /// Adds a batch in [`events_schema`].
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = batch
            .column_by_name(col::TIMESTAMP)
            .ok_or_else(|| Error::Internal("event batch without timestamp".into()))?
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .values()
            .clone();
        let first = ts[0].div_euclid(DAY_MS);
        if ts.iter().all(|t| t.div_euclid(DAY_MS) == first) {
            self.add(first, batch);
        } else {
            let mut by_day: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (i, t) in ts.iter().enumerate() {
                by_day.entry(t.div_euclid(DAY_MS)).or_default().push(i as u32);
            }
            for (day, rows) in by_day {
                let part = arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))?;
                self.add(day, part);
            }
        }
        while self.buffered_rows >= self.flush_rows {
            let largest = self
                .buffers
                .iter()
                .max_by_key(|(_, v)| v.iter().map(|b| b.num_rows()).sum::<usize>())
                .map(|(d, _)| *d);
            match largest {
                Some(day) => self.flush(day)?,
                None => break,
            }
        }
        Ok(())
    }

    fn add(&mut self, day: i64, batch: RecordBatch) {
        self.buffered_rows += batch.num_rows();
        self.buffers.entry(day).or_default().push(batch);
    }

    fn flush(&mut self, day: i64) -> Result<()> {
        let Some(batches) = self.buffers.remove(&day) else {
            return Ok(());
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        self.buffered_rows -= rows;
        let batch = sort_by_timestamp(arrow::compute::concat_batches(&events_schema(), &batches)?)?;
        drop(batches);
        let ts = batch
            .column_by_name(col::TIMESTAMP)
            .map(|c| {
                c.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .values()
                    .clone()
            })
            .ok_or_else(|| Error::Internal("event batch without timestamp".into()))?;
        let date = day_to_date(day);
        let info = self.done.entry(day).or_insert_with(|| PartitionInfo {
            files: Vec::new(),
            rows: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        });
        let rel = format!("events/date={date}/part-{}-{:05}.parquet", self.token, info.files.len());
        write_parquet(&self.root.join(&rel), events_schema(), &[batch])?;
        info.files.push(rel);
        info.rows += rows as u64;
        info.min_ts = info.min_ts.min(ts[0]);
        info.max_ts = info.max_ts.max(ts[ts.len() - 1]);
        Ok(())
    }

    /// Flushes everything and returns the written days by date.
    pub fn finish(mut self) -> Result<BTreeMap<String, PartitionInfo>> {
        let days: Vec<i64> = self.buffers.keys().copied().collect();
        for d in days {
            self.flush(d)?;
        }
        Ok(self.done.into_iter().map(|(d, p)| (day_to_date(d), p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk (Linux's `/dev/full` answers every write with ENOSPC) is an I/O error naming
    /// the file, not an anonymous Parquet error.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_while_writing_parquet_names_the_file() {
        let mut items = ItemTable::default();
        for i in 0..1_000 {
            items.intern(&format!("P{i:06}"));
        }
        let batch = items.to_batch().unwrap();
        let path = Path::new("/data/items.parquet");
        let result = (|| -> Result<()> {
            let f = File::options()
                .write(true)
                .open("/dev/full")
                .map_err(Error::io("/dev/full"))?;
            let mut w = ArrowWriter::try_new(f, items_schema(), Some(writer_properties()))
                .map_err(|e| parquet_write_error(path, e))?;
            w.write(&batch).map_err(|e| parquet_write_error(path, e))?;
            w.close().map_err(|e| parquet_write_error(path, e))?;
            Ok(())
        })();
        match result {
            Err(Error::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}");
            }
            other => panic!("expected an I/O error naming the file, got {other:?}"),
        }
    }
}
