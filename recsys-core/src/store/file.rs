//! The embedded candidate store (`file:DIR`): versioned, memory-mapped files.
//!
//! ```text
//! DIR/CURRENT                               {"version": "1.0.3", "activated_at_ms": ...} (replaced by rename)
//! DIR/<version>/meta.json                   VersionMeta: item dictionary, list lengths, shard count
//! DIR/<version>/meta.json.sha256            its SHA-256 (written first, checked on every read)
//! DIR/<version>/users-<i>-of-<n>.tsc        candidate lists of the users of shard i
//! DIR/<version>/items-<i>-of-<n>.tsc        similar-item lists of the items of shard i
//! ```
//!
//! A shard file is written to a temporary name, synced and renamed into place; `CURRENT` switches
//! only when every shard file of the version exists, so readers see one complete version or the
//! previous one. Layout of a `.tsc` file (little-endian):
//!
//! ```text
//! "TSRCAND1" | header length u64 | JSON header | padding to 8
//! records: rows × stride bytes, each = crc32 of the list u32 | encoded list | zero padding
//! hash table: rows × (stable_hash(key) u64, row u32, 0 u32), sorted by hash
//! key offsets: (rows + 1) × u64 into the key blob | key blob (UTF-8, concatenated)
//! footer: hash table offset u64 | key offsets offset u64 | key blob offset u64 | rows u64 |
//!         crc32 of header..key blob except the records u32 | 0 u32 | "TSRCEND1"
//! ```
//!
//! Opening checks the magic numbers, the sizes and the index checksum (a few MB for 500k users) and
//! maps the file: no parsing of the records, so a 500k-user store opens in milliseconds. Each list's
//! own checksum is verified when it is read.

use super::{
    CandidateStore, FeatureSnapshot, FinishReport, Scored, Shard, ShardWriter, Snapshot, VersionMeta, WritePlan,
    check_list, decode_list, encode_list, encoded_len, id_width, now_ms, validate_version,
};
use crate::atomic::{unique_token, write_bytes_atomic};
use crate::schema::stable_hash;
use crate::{Error, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"TSRCAND1";
const MAGIC_END: &[u8; 8] = b"TSRCEND1";
const FOOTER: usize = 48;
const CURRENT: &str = "CURRENT";
const META: &str = "meta.json";
/// The lower-case hex SHA-256 of `meta.json` (its item dictionary maps every list entry to an item
/// id: a changed byte there would silently recommend another item). Versions written before it
/// existed have none and are read unchecked.
const META_SUM: &str = "meta.json.sha256";
/// The version's online feature snapshot ([`FeatureSnapshot::encode`]), when published.
const FEATURES: &str = "features.bin";
/// Complete versions kept on disk besides the active one.
const KEEP_VERSIONS: usize = 3;
/// An unfinished version (not every shard written) with some shards is removed after a day: a
/// sharded job's last shard may come hours after its first (a retried task).
const INCOMPLETE_AFTER_MS: i64 = 24 * 3_600_000;

/// The embedded, file-based candidate store.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct CurrentFile {
    version: String,
    activated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Table {
    Users,
    Items,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Items => "items",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    table: Table,
    version: String,
    shard: Shard,
    width: usize,
    stride: usize,
    top: u32,
}

fn file_name(table: Table, shard: Shard) -> String {
    format!("{}-{}-of-{}.tsc", table.name(), shard.index, shard.count)
}

impl FileStore {
    /// Opens (creating if missing) the store directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(Error::io(&root))?;
        Ok(FileStore { root })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn version_dir(&self, version: &str) -> Result<PathBuf> {
        validate_version(version)?;
        Ok(self.root.join(version))
    }

    fn read_meta(&self, version: &str) -> Result<Option<VersionMeta>> {
        let dir = self.version_dir(version)?;
        let path = dir.join(META);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        crate::atomic::check_sha256_file(&path, &bytes, &dir.join(META_SUM))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(path.display(), e.to_string()))
    }

    /// Missing shard files of `version` (empty when complete); `None` when the version is unknown.
    fn missing(&self, version: &str) -> Result<Option<(VersionMeta, Vec<String>)>> {
        let Some(meta) = self.read_meta(version)? else {
            return Ok(None);
        };
        let dir = self.version_dir(version)?;
        let mut missing = Vec::new();
        for index in 0..meta.shards {
            let shard = Shard {
                index,
                count: meta.shards,
            };
            for table in [Table::Users, Table::Items] {
                let name = file_name(table, shard);
                if !dir.join(&name).is_file() {
                    missing.push(name);
                }
            }
        }
        Ok(Some((meta, missing)))
    }

    /// Removes what killed or failed writers left: temporary files and directories an hour old or
    /// more ([`crate::atomic::sweep_stale`]) in the store and in each version, and versions that
    /// never completed (not `active`) and whose files have not changed for a while: with no shard
    /// written, an hour; with some, a day. Best effort, at the start of every write and after every
    /// activation.
    fn sweep(&self, active: Option<&str>) {
        use crate::atomic::{STALE_AFTER, sweep_stale};
        let _ = sweep_stale(&self.root, STALE_AFTER);
        let Ok(entries) = fs::read_dir(&self.root) else { return };
        let now = now_ms();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || validate_version(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let dir = entry.path();
            let _ = sweep_stale(&dir, STALE_AFTER);
            if Some(name.as_str()) == active {
                continue;
            }
            let (started_ms, written) = match self.missing(&name) {
                Ok(Some((_, missing))) if missing.is_empty() => continue,
                Ok(Some((meta, missing))) => {
                    let total = 2 * meta.shards as usize;
                    (meta.created_at_ms, total - missing.len())
                }
                // A version directory without (readable) meta: its own modification time.
                _ => (entry.metadata().ok().and_then(|m| modified_ms(&m)).unwrap_or(now), 0),
            };
            // A writer at work keeps its temporary file fresh: a version is idle since its
            // youngest file's last write.
            let youngest = fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.metadata().ok().and_then(|m| modified_ms(&m)))
                .max()
                .unwrap_or(i64::MIN);
            let age = now.saturating_sub(started_ms.max(youngest));
            let limit = if written == 0 {
                STALE_AFTER.as_millis() as i64
            } else {
                INCOMPLETE_AFTER_MS
            };
            if age >= limit {
                self.discard(&dir);
            }
        }
    }

    /// Deletes a version directory: renamed away first (one atomic step, so no reader or writer
    /// finds it half deleted), then removed. Best effort.
    fn discard(&self, dir: &Path) {
        let trash = self.root.join(format!(".del-{}", unique_token()));
        if fs::rename(dir, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
        }
    }

    /// Deletes complete versions beyond the newest [`KEEP_VERSIONS`] (never the active one) and
    /// what killed writers left ([`FileStore::sweep`]). Readers that mapped a deleted file keep
    /// reading it.
    fn prune(&self, active: &str) -> Result<()> {
        self.sweep(Some(active));
        let mut versions = Vec::new();
        for v in self.versions()? {
            if v != active
                && let Some(meta) = self.read_meta(&v)?
            {
                versions.push((meta.created_at_ms, v));
            }
        }
        versions.sort();
        let excess = versions.len().saturating_sub(KEEP_VERSIONS);
        for (_, v) in versions.into_iter().take(excess) {
            self.discard(&self.root.join(&v));
        }
        Ok(())
    }
}

impl CandidateStore for FileStore {
    fn url(&self) -> String {
        format!("file:{}", self.root.display())
    }

    fn active_version(&self) -> Result<Option<String>> {
        let path = self.root.join(CURRENT);
        match fs::read(&path) {
            Ok(bytes) => {
                let cur: CurrentFile =
                    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path.display(), e.to_string()))?;
                Ok(Some(cur.version))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    fn versions(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(Error::io(&self.root))? {
            let entry = entry.map_err(Error::io(&self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || validate_version(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            if let Some((meta, missing)) = self.missing(&name)?
                && missing.is_empty()
            {
                out.push((meta.created_at_ms, name));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    fn open_version(&self, version: &str) -> Result<Arc<dyn Snapshot>> {
        let not_found = || Error::NotFound {
            kind: "store version",
            id: version.to_string(),
        };
        let (meta, missing) = self.missing(version)?.ok_or_else(not_found)?;
        if !missing.is_empty() {
            return Err(Error::NotFound {
                kind: "store version (incomplete)",
                id: format!("{version}: missing {}", missing.join(", ")),
            });
        }
        let dir = self.version_dir(version)?;
        let width = id_width(meta.items.len());
        let open = |table: Table, top: u32| -> Result<Vec<ShardFile>> {
            (0..meta.shards)
                .map(|index| {
                    let shard = Shard {
                        index,
                        count: meta.shards,
                    };
                    let expect = Header {
                        table,
                        version: version.to_string(),
                        shard,
                        width,
                        stride: 4 + encoded_len(top as usize, width),
                        top,
                    };
                    ShardFile::open(&dir.join(file_name(table, shard)), &expect)
                })
                .collect()
        };
        let users = open(Table::Users, meta.top_candidates)?;
        let items = open(Table::Items, meta.top_similar)?;
        Ok(Arc::new(FileSnapshot {
            meta,
            users,
            items,
            dir,
        }))
    }

    fn open_active(&self) -> Result<Option<Arc<dyn Snapshot>>> {
        // A writer may activate a newer version and prune this one between reading CURRENT and
        // opening its files: read CURRENT again and retry.
        let mut last = None;
        for _ in 0..5 {
            let Some(v) = self.active_version()? else {
                return Ok(None);
            };
            match self.open_version(&v) {
                Ok(s) => return Ok(Some(s)),
                Err(e @ (Error::NotFound { .. } | Error::Io { .. }))
                    if self.active_version()?.as_deref() != Some(v.as_str()) =>
                {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Internal("open_active: no attempt made".into())))
    }

    fn writer(&self, plan: &WritePlan) -> Result<Box<dyn ShardWriter>> {
        plan.validate()?;
        let active = self.active_version().ok().flatten();
        self.sweep(active.as_deref());
        let dir = self.version_dir(&plan.version)?;
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        // From here on, a failure of a single-shard version removes its directory.
        let abandon = AbandonOnFailure {
            store: self.clone(),
            version: plan.version.clone(),
            armed: plan.shard.count == 1,
        };
        let meta = plan.meta();
        match self.read_meta(&plan.version)? {
            Some(old)
                if old.items != meta.items
                    || old.shards != meta.shards
                    || old.top_candidates != meta.top_candidates
                    || old.top_similar != meta.top_similar =>
            {
                return Err(Error::invalid(
                    "version",
                    &plan.version,
                    "already holds shards written with a different item dictionary, shard count or list length",
                ));
            }
            Some(_) => {}
            None => {
                let bytes = serde_json::to_vec(&meta).map_err(|e| Error::Internal(e.to_string()))?;
                write_bytes_atomic(&dir.join(META_SUM), crate::atomic::sha256_line(&bytes).as_bytes())?;
                write_bytes_atomic(&dir.join(META), &bytes)?;
            }
        }
        let width = id_width(plan.items.len());
        let users = TableWriter::create(&dir, Table::Users, plan, width, plan.top_candidates)?;
        let items = TableWriter::create(&dir, Table::Items, plan, width, plan.top_similar)?;
        Ok(Box::new(FileShardWriter {
            store: self.clone(),
            plan: plan.clone(),
            users,
            items,
            abandon,
        }))
    }

    fn activate(&self, version: &str) -> Result<()> {
        // Opening checks completeness and every file's integrity before the switch.
        self.open_version(version)?;
        let cur = CurrentFile {
            version: version.to_string(),
            activated_at_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&cur).map_err(|e| Error::Internal(e.to_string()))?;
        write_bytes_atomic(&self.root.join(CURRENT), &bytes)?;
        self.prune(version)
    }
}

/// A file's last modification in UTC milliseconds, where the file system records it.
fn modified_ms(meta: &fs::Metadata) -> Option<i64> {
    let since = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_millis() as i64)
}

/// One table of one shard being written: records stream into a temporary file, keys stay in memory.
struct TableWriter {
    table: Table,
    header: Header,
    tmp: PathBuf,
    target: PathBuf,
    out: BufWriter<File>,
    keys: Vec<String>,
    seen: ahash::AHashSet<String>,
    buf: Vec<u8>,
    written: u64,
}

impl TableWriter {
    fn create(dir: &Path, table: Table, plan: &WritePlan, width: usize, top: u32) -> Result<Self> {
        let header = Header {
            table,
            version: plan.version.clone(),
            shard: plan.shard,
            width,
            stride: 4 + encoded_len(top as usize, width),
            top,
        };
        let target = dir.join(file_name(table, plan.shard));
        let tmp = dir.join(format!(".tmp-{}-{}", table.name(), unique_token()));
        let f = File::create(&tmp).map_err(Error::io(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let json = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        let mut head = Vec::with_capacity(16 + json.len() + 8);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(json.len() as u64).to_le_bytes());
        head.extend_from_slice(&json);
        head.resize(head.len().div_ceil(8) * 8, 0);
        out.write_all(&head).map_err(Error::io(&tmp))?;
        Ok(TableWriter {
            table,
            header,
            tmp,
            target,
            out,
            keys: Vec::new(),
            seen: ahash::AHashSet::new(),
            buf: Vec::new(),
            written: head.len() as u64,
        })
    }

    fn put(&mut self, key: &str, list: &[Scored], plan: &WritePlan) -> Result<()> {
        if !plan.shard.owns(key) {
            return Err(Error::invalid(
                "key",
                key,
                format!(
                    "belongs to shard {} of {}, this writer fills shard {}",
                    Shard::of(key, plan.shard.count),
                    plan.shard.count,
                    plan.shard.index
                ),
            ));
        }
        check_list(list, plan.items.len(), self.header.top, key)?;
        if !self.seen.insert(key.to_string()) {
            return Err(Error::invalid(
                "key",
                key,
                format!("written twice to the {} table", self.table.name()),
            ));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        encode_list(list, self.header.width, &mut self.buf)?;
        let crc = crc32fast::hash(&self.buf[4..]);
        self.buf[..4].copy_from_slice(&crc.to_le_bytes());
        self.buf.resize(self.header.stride, 0);
        self.out.write_all(&self.buf).map_err(Error::io(&self.tmp))?;
        self.written += self.buf.len() as u64;
        self.keys.push(key.to_string());
        Ok(())
    }

    /// Appends the index and footer, syncs and renames into place. Returns bytes written.
    fn finish(mut self) -> Result<u64> {
        let mut table: Vec<(u64, u32)> = self
            .keys
            .iter()
            .enumerate()
            .map(|(row, k)| (stable_hash(k.as_bytes()), row as u32))
            .collect();
        table.sort_unstable();
        let hash_off = self.written;
        let mut index = Vec::with_capacity(table.len() * 16 + (self.keys.len() + 1) * 8);
        for (h, row) in &table {
            index.extend_from_slice(&h.to_le_bytes());
            index.extend_from_slice(&row.to_le_bytes());
            index.extend_from_slice(&0u32.to_le_bytes());
        }
        let keys_off = hash_off + index.len() as u64;
        let mut pos = 0u64;
        index.extend_from_slice(&pos.to_le_bytes());
        for k in &self.keys {
            pos += k.len() as u64;
            index.extend_from_slice(&pos.to_le_bytes());
        }
        let blob_off = hash_off + index.len() as u64;
        for k in &self.keys {
            index.extend_from_slice(k.as_bytes());
        }
        let header_crc = header_crc(&self.header)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header_crc.to_le_bytes());
        hasher.update(&index);
        let index_crc = hasher.finalize();
        let mut footer = Vec::with_capacity(FOOTER);
        for v in [hash_off, keys_off, blob_off, self.keys.len() as u64] {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        footer.extend_from_slice(&index_crc.to_le_bytes());
        footer.extend_from_slice(&0u32.to_le_bytes());
        footer.extend_from_slice(MAGIC_END);
        let io = Error::io(&self.tmp);
        let done = (|| {
            self.out.write_all(&index)?;
            self.out.write_all(&footer)?;
            self.out.flush()?;
            self.out.get_ref().sync_all()
        })();
        if let Err(e) = done {
            let _ = fs::remove_file(&self.tmp);
            return Err(io(e));
        }
        fs::rename(&self.tmp, &self.target).map_err(Error::io(&self.target))?;
        Ok(self.written + index.len() as u64 + FOOTER as u64)
    }
}

fn header_crc(h: &Header) -> Result<u32> {
    let json = serde_json::to_vec(h).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(crc32fast::hash(&json))
}

/// Removes the directory of a single-shard version whose writer failed (an error, a full disk, a
/// panic, a cancelled job) unless it is the active one: nothing in it can serve, and a full disk
/// needs its space back at once rather than after the sweep's hour. A version of several shards
/// is left to the sweep ([`FileStore::sweep`]): another shard's writer may be at work in it.
struct AbandonOnFailure {
    store: FileStore,
    version: String,
    /// Cleared when the writer finished.
    armed: bool,
}

impl Drop for AbandonOnFailure {
    fn drop(&mut self) {
        if !self.armed || self.store.active_version().ok().flatten().as_deref() == Some(self.version.as_str()) {
            return;
        }
        if let Ok(dir) = self.store.version_dir(&self.version) {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

struct FileShardWriter {
    store: FileStore,
    plan: WritePlan,
    abandon: AbandonOnFailure,
    users: TableWriter,
    items: TableWriter,
}

impl ShardWriter for FileShardWriter {
    fn put_candidates(&mut self, user_id: &str, list: &[Scored]) -> Result<()> {
        self.users.put(user_id, list, &self.plan)
    }

    fn put_similar(&mut self, item_id: &str, list: &[Scored]) -> Result<()> {
        self.items.put(item_id, list, &self.plan)
    }

    fn put_features(&mut self, snapshot: &FeatureSnapshot) -> Result<u64> {
        let bytes = snapshot.encode()?;
        let path = self.store.version_dir(&self.plan.version)?.join(FEATURES);
        write_bytes_atomic(&path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    fn finish(self: Box<Self>) -> Result<FinishReport> {
        let FileShardWriter {
            store,
            plan,
            users,
            items,
            mut abandon,
        } = *self;
        let (n_users, n_items) = (users.keys.len() as u64, items.keys.len() as u64);
        let bytes = users.finish()? + items.finish()?;
        let dir = store.version_dir(&plan.version)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        let complete = matches!(store.missing(&plan.version)?, Some((_, m)) if m.is_empty());
        if complete {
            store.activate(&plan.version)?;
        }
        abandon.armed = false;
        Ok(FinishReport {
            version: plan.version,
            shard: plan.shard,
            users: n_users,
            items: n_items,
            bytes,
            activated: complete,
        })
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        // An unfinished writer (error, panic, cancelled job) leaves no temporary file behind;
        // after `finish` the temporary name no longer exists and this is a no-op.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// One mapped `.tsc` file.
struct ShardFile {
    path: PathBuf,
    map: Mmap,
    header: Header,
    records_off: usize,
    hash_off: usize,
    keys_off: usize,
    blob_off: usize,
    rows: usize,
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

/// Maps a file read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: shard files are immutable once renamed into place: writers only ever create new
    // files under temporary names and rename them, and deletion (pruning) unlinks without
    // truncating, so the mapped bytes cannot change under the reader. A file truncated by
    // someone outside the library is the remaining risk (as with every mmap-based store).
    unsafe { Mmap::map(file) }
}

impl ShardFile {
    fn open(path: &Path, expect: &Header) -> Result<Self> {
        let file = File::open(path).map_err(Error::io(path))?;
        let map = map_file(&file).map_err(Error::io(path))?;
        let what = path.display().to_string();
        let bad = |why: String| Error::corrupt(&what, why);
        let len = map.len();
        if len < 16 + FOOTER || &map[..8] != MAGIC || &map[len - 8..] != MAGIC_END {
            return Err(bad("not a candidate file (magic number or size)".into()));
        }
        let hl = u64_at(&map, 8) as usize;
        if 16 + hl > len - FOOTER {
            return Err(bad(format!("header length {hl} exceeds the file")));
        }
        let header: Header = serde_json::from_slice(&map[16..16 + hl]).map_err(|e| bad(format!("header: {e}")))?;
        if &header != expect {
            return Err(bad(format!(
                "header {header:?} does not match the version's meta (expected {expect:?})"
            )));
        }
        let records_off = (16 + hl).div_ceil(8) * 8;
        let f = len - FOOTER;
        let (hash_off, keys_off, blob_off, rows) = (
            u64_at(&map, f) as usize,
            u64_at(&map, f + 8) as usize,
            u64_at(&map, f + 16) as usize,
            u64_at(&map, f + 24) as usize,
        );
        let sizes_ok = rows
            .checked_mul(header.stride)
            .and_then(|r| r.checked_add(records_off))
            .is_some_and(|end| end == hash_off)
            && rows.checked_mul(16).and_then(|t| t.checked_add(hash_off)) == Some(keys_off)
            && rows
                .checked_add(1)
                .and_then(|r| r.checked_mul(8))
                .and_then(|o| o.checked_add(keys_off))
                == Some(blob_off)
            && blob_off <= f;
        if !sizes_ok {
            return Err(bad(
                "section offsets do not match the row count (truncated or overwritten)".into(),
            ));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header_crc(&header)?.to_le_bytes());
        hasher.update(&map[hash_off..f]);
        if hasher.finalize() != u32_at(&map, f + 32) {
            return Err(bad("index checksum mismatch".into()));
        }
        let sf = ShardFile {
            path: path.to_path_buf(),
            map,
            header,
            records_off,
            hash_off,
            keys_off,
            blob_off,
            rows,
        };
        let blob_len = f - blob_off;
        if rows > 0 && sf.key_range(rows - 1).1 != blob_len {
            return Err(bad("key blob length does not match the key offsets".into()));
        }
        Ok(sf)
    }

    fn key_range(&self, row: usize) -> (usize, usize) {
        let o = self.keys_off + row * 8;
        (u64_at(&self.map, o) as usize, u64_at(&self.map, o + 8) as usize)
    }

    fn key(&self, row: usize) -> &[u8] {
        let (a, b) = self.key_range(row);
        let end = self.map.len() - FOOTER;
        self.map
            .get(self.blob_off + a..self.blob_off + b)
            .filter(|_| self.blob_off + b <= end)
            .unwrap_or(&[])
    }

    fn get(&self, key: &str) -> Result<Option<Vec<Scored>>> {
        let h = stable_hash(key.as_bytes());
        let hash_at = |i: usize| u64_at(&self.map, self.hash_off + i * 16);
        // Hashes are uniform: start at the interpolated position and gallop outwards to a small
        // bracket (two or three cache lines touched instead of ~19 for a plain binary search).
        let guess = ((u128::from(h) * self.rows as u128) >> 64) as usize;
        let (mut lo, mut hi) = (guess.min(self.rows), guess.min(self.rows));
        let mut step = 8usize;
        while lo > 0 && hash_at(lo - 1) >= h {
            lo = lo.saturating_sub(step);
            step *= 2;
        }
        step = 8;
        while hi < self.rows && hash_at(hi) < h {
            hi = (hi + step).min(self.rows);
            step *= 2;
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            if hash_at(mid) < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < self.rows && hash_at(i) == h {
            let row = u32_at(&self.map, self.hash_off + i * 16 + 8) as usize;
            if row >= self.rows {
                return Err(Error::corrupt(self.path.display(), format!("row {row} out of range")));
            }
            if self.key(row) == key.as_bytes() {
                return self.record(row, key).map(Some);
            }
            i += 1;
        }
        Ok(None)
    }

    fn record(&self, row: usize, key: &str) -> Result<Vec<Scored>> {
        let start = self.records_off + row * self.header.stride;
        let rec = &self.map[start..start + self.header.stride];
        let body = &rec[4..];
        let n = usize::from(u16::from_le_bytes([body[0], body[1]]));
        let used = encoded_len(n, self.header.width);
        let what = || format!("{} ({} {key:?})", self.path.display(), self.header.table.name());
        if used > body.len() {
            return Err(Error::corrupt(what(), format!("list length {n} exceeds the record")));
        }
        if crc32fast::hash(&body[..used]) != u32_at(rec, 0) {
            return Err(Error::corrupt(what(), "list checksum mismatch"));
        }
        decode_list(&body[..used], self.header.width, &what())
    }
}

struct FileSnapshot {
    meta: VersionMeta,
    users: Vec<ShardFile>,
    items: Vec<ShardFile>,
    dir: PathBuf,
}

impl Snapshot for FileSnapshot {
    fn meta(&self) -> &VersionMeta {
        &self.meta
    }

    fn candidates(&self, user_id: &str) -> Result<Option<Vec<Scored>>> {
        self.users[Shard::of(user_id, self.meta.shards) as usize].get(user_id)
    }

    fn similar(&self, item_id: &str) -> Result<Option<Vec<Scored>>> {
        self.items[Shard::of(item_id, self.meta.shards) as usize].get(item_id)
    }

    fn features(&self) -> Result<Option<FeatureSnapshot>> {
        let path = self.dir.join(FEATURES);
        match fs::read(&path) {
            Ok(bytes) => FeatureSnapshot::decode(&bytes, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_store;

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item-{i}")).collect()
    }

    fn list(user: usize, len: usize) -> Vec<Scored> {
        (0..len)
            .map(|k| Scored {
                item: ((user * 7 + k * 13) % 100) as u32,
                score: 1.0 - k as f32 / len as f32,
            })
            .collect()
    }

    fn write_version(store: &dyn CandidateStore, version: &str, shards: u32, users: usize) -> Vec<FinishReport> {
        (0..shards)
            .map(|index| {
                let mut plan = WritePlan::new(version, items(100));
                plan.shard = Shard { index, count: shards };
                plan.top_candidates = 20;
                plan.top_similar = 5;
                let mut w = store.writer(&plan).unwrap();
                for u in 0..users {
                    let key = format!("user-{u}");
                    if plan.shard.owns(&key) {
                        w.put_candidates(&key, &list(u, 1 + u % 20)).unwrap();
                    }
                }
                for i in 0..100 {
                    let key = format!("item-{i}");
                    if plan.shard.owns(&key) {
                        w.put_similar(&key, &list(i, 5)).unwrap();
                    }
                }
                w.finish().unwrap()
            })
            .collect()
    }

    /// Sets the modification time of every file in `dir` (and of `dir`) to `hours` ago.
    fn age_dir(dir: &Path, hours: u64) {
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3_600);
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(then)
                    .unwrap();
            }
        }
        File::open(dir).unwrap().set_modified(then).unwrap();
    }

    /// Rewrites a version's `created_at_ms` to `hours` ago.
    fn age_meta(dir: &Path, hours: i64) {
        let path = dir.join(META);
        let mut meta: VersionMeta = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        meta.created_at_ms = now_ms() - hours * 3_600_000;
        let bytes = serde_json::to_vec(&meta).unwrap();
        fs::write(dir.join(META_SUM), crate::atomic::sha256_line(&bytes)).unwrap();
        fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn what_killed_writers_left_is_swept_and_work_in_progress_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        write_version(&store, "1.0.0", 1, 50);
        store.activate("1.0.0").unwrap();
        let root = dir.path();
        // A killed precompute: a version with only its meta (and a temporary shard file), an old
        // one of each kind; a sharded version with one of two shards written, 2 and 30 hours old;
        // a temporary file in the store directory; and a version being written right now.
        let mut plan = WritePlan::new("2.0.0", items(100));
        plan.shard = Shard { index: 0, count: 2 };
        drop(store.writer(&plan).unwrap());
        fs::write(root.join("2.0.0").join(".users-0-of-2.tsc.tmp-dead"), b"half").unwrap();
        age_meta(&root.join("2.0.0"), 3);
        age_dir(&root.join("2.0.0"), 3);
        for (version, hours) in [("3.0.0", 2), ("4.0.0", 30)] {
            let mut plan = WritePlan::new(version, items(100));
            plan.shard = Shard { index: 0, count: 2 };
            plan.top_candidates = 20;
            plan.top_similar = 5;
            store.writer(&plan).unwrap().finish().unwrap();
            age_meta(&root.join(version), hours);
            age_dir(&root.join(version), hours as u64);
        }
        fs::write(root.join(".CURRENT.tmp-dead"), b"x").unwrap();
        age_dir(root, 2);
        let mut fresh = WritePlan::new("5.0.0", items(100));
        fresh.shard = Shard { index: 0, count: 2 };
        let in_progress = store.writer(&fresh).unwrap();
        // The next write sweeps.
        write_version(&store, "6.0.0", 1, 50);
        let mut left: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["1.0.0", "3.0.0", "5.0.0", "6.0.0", CURRENT],
            "swept: 2.0.0, 4.0.0, the temporary file"
        );
        drop(in_progress);
        // Complete versions are never swept, however old (pruning keeps the newest three).
        age_dir(&root.join("1.0.0"), 48);
        store.activate("6.0.0").unwrap();
        assert!(root.join("1.0.0").join(META).is_file());
        assert_eq!(store.active_version().unwrap().as_deref(), Some("6.0.0"));
    }

    /// A failed single-shard writer (a full disk, an error, a cancelled job) takes its version's
    /// directory with it; a shard of several leaves the directory to the other shards and the
    /// sweep; the active version is never removed.
    #[test]
    fn a_failed_single_shard_writer_removes_its_version_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        write_version(&store, "1.0.0", 1, 50);
        let plan = |version: &str, count: u32| {
            let mut plan = WritePlan::new(version, items(100));
            plan.shard = Shard { index: 0, count };
            plan.top_candidates = 20;
            plan.top_similar = 5;
            plan
        };
        let mut w = store.writer(&plan("1.0.1", 1)).unwrap();
        w.put_candidates("user-1", &list(1, 3)).unwrap();
        drop(w);
        assert!(!dir.path().join("1.0.1").exists(), "removed with its failed writer");
        drop(store.writer(&plan("1.0.2", 2)).unwrap());
        assert!(
            dir.path().join("1.0.2").join(META).is_file(),
            "left to the other shards"
        );
        // A rewrite of the active version that fails does not remove it.
        drop(store.writer(&plan("1.0.0", 1)).unwrap());
        assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
        assert!(store.open_version("1.0.0").is_ok());
    }

    #[test]
    fn a_version_carries_its_feature_snapshot_and_a_rewrite_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        write_version(&store, "1.0.0", 1, 10);
        assert_eq!(store.open_version("1.0.0").unwrap().features().unwrap(), None);

        let first = crate::store::features::tests::sample();
        let mut second = first.clone();
        second.as_of_ms += 1_000;
        second.titles[1] = Some("replaced".into());
        let mut w = store.writer(&WritePlan::new("2.0.0", items(100))).unwrap();
        assert!(w.put_features(&first).unwrap() > 0);
        w.put_features(&second).unwrap();
        w.put_candidates("user-1", &list(1, 3)).unwrap();
        assert!(w.finish().unwrap().activated);
        let snap = store.open_active().unwrap().unwrap();
        assert_eq!(snap.meta().version, "2.0.0");
        assert_eq!(snap.features().unwrap(), Some(second));
        // The older version keeps reading as it was.
        assert_eq!(store.open_version("1.0.0").unwrap().features().unwrap(), None);

        // A damaged snapshot is refused, naming its file.
        let path = dir.path().join("2.0.0").join(FEATURES);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, bytes).unwrap();
        match snap.features() {
            Err(Error::Corrupt { what, .. }) => assert!(what.ends_with("features.bin"), "{what}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sharded_version_activates_when_the_last_shard_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let reports = write_version(&store, "1.0.0", 3, 500);
        assert_eq!(
            reports.iter().map(|r| r.activated).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(reports.iter().map(|r| r.users).sum::<u64>(), 500);
        let snap = store.open_active().unwrap().unwrap();
        for u in 0..500 {
            let got = snap.candidates(&format!("user-{u}")).unwrap().unwrap();
            let want = list(u, 1 + u % 20);
            assert_eq!(
                got.iter().map(|s| s.item).collect::<Vec<_>>(),
                want.iter().map(|s| s.item).collect::<Vec<_>>()
            );
        }
        assert_eq!(snap.similar("item-42").unwrap().unwrap().len(), 5);
        assert!(snap.candidates("user-500").unwrap().is_none());
        assert!(snap.similar("nope").unwrap().is_none());
    }

    #[test]
    fn bad_writes_are_refused_with_the_key_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let mut plan = WritePlan::new("1.0.0", items(10));
        plan.top_candidates = 3;
        let mut w = store.writer(&plan).unwrap();
        let e = w.put_candidates("u", &list(0, 4)).unwrap_err();
        assert!(e.to_string().contains("u:"), "{e}");
        let e = w.put_candidates("u", &[Scored { item: 10, score: 1.0 }]).unwrap_err();
        assert!(e.to_string().contains("outside the dictionary"), "{e}");
        w.put_candidates("u", &[Scored { item: 9, score: 1.0 }]).unwrap();
        let e = w.put_candidates("u", &[Scored { item: 9, score: 1.0 }]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        drop(w);
        // Nothing was finished: no version, and its directory went with the failed writer.
        assert!(store.versions().unwrap().is_empty());
        assert!(!dir.path().join("1.0.0").exists());
        assert!(store.open_active().unwrap().is_none());
    }

    #[test]
    fn corrupt_files_are_refused_on_open_and_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        write_version(&store, "1.0.0", 1, 50);
        let path = dir.path().join("1.0.0").join("users-0-of-1.tsc");
        let good = fs::read(&path).unwrap();

        // A flipped byte in the index: refused on open.
        let mut bytes = good.clone();
        let n = bytes.len();
        bytes[n - FOOTER - 3] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let e = store.open_version("1.0.0").err().unwrap();
        assert!(
            matches!(e, Error::Corrupt { .. }) && e.to_string().contains("checksum"),
            "{e}"
        );

        // Truncated: refused on open.
        fs::write(&path, &good[..good.len() - 100]).unwrap();
        let e = store.open_version("1.0.0").err().unwrap();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");

        // A flipped byte inside a record: the open succeeds, reading that list fails.
        let mut bytes = good.clone();
        let hl = u64_at(&bytes, 8) as usize;
        let rec0 = (16 + hl).div_ceil(8) * 8;
        bytes[rec0 + 4 + 11] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let snap = store.open_version("1.0.0").unwrap();
        let errors = (0..50)
            .filter(|u| snap.candidates(&format!("user-{u}")).is_err())
            .count();
        assert_eq!(errors, 1);
    }

    #[test]
    fn readers_keep_their_version_while_a_new_one_is_activated_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&format!("file:{}", dir.path().display())).unwrap();
        write_version(store.as_ref(), "1.0.0", 1, 10);
        let old = store.open_active().unwrap().unwrap();
        for v in ["1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"] {
            std::thread::sleep(std::time::Duration::from_millis(2));
            write_version(store.as_ref(), v, 2, 10);
        }
        assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.5"));
        assert_eq!(store.versions().unwrap(), ["1.0.2", "1.0.3", "1.0.4", "1.0.5"]);
        // The pruned version's mapping stays readable.
        assert_eq!(old.meta().version, "1.0.0");
        assert!(old.candidates("user-3").unwrap().is_some());
        assert!(store.open_version("1.0.0").is_err());
        let e = store.activate("9.9.9").unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
    }

    #[test]
    fn a_reader_never_sees_a_mixed_version_while_a_writer_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CandidateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        // Version k gives every user the same first item k, in every shard.
        let publish = |store: &dyn CandidateStore, k: u32| {
            for index in 0..2 {
                let mut plan = WritePlan::new(format!("1.0.{k}"), items(100));
                plan.shard = Shard { index, count: 2 };
                plan.top_candidates = 2;
                plan.top_similar = 1;
                let mut w = store.writer(&plan).unwrap();
                for u in 0..200 {
                    let key = format!("user-{u}");
                    if plan.shard.owns(&key) {
                        w.put_candidates(&key, &[Scored { item: k, score: 1.0 }, Scored { item: 99, score: 0.0 }])
                            .unwrap();
                    }
                }
                w.finish().unwrap();
            }
        };
        publish(store.as_ref(), 0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checks = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = store.open_active().unwrap().unwrap();
                    let want: u32 = snap.meta().version.rsplit('.').next().unwrap().parse().unwrap();
                    for u in 0..200 {
                        let got = snap.candidates(&format!("user-{u}")).unwrap().unwrap();
                        assert_eq!(got[0].item, want, "user-{u} in version {}", snap.meta().version);
                    }
                    checks += 1;
                }
                checks
            })
        };
        for k in 1..12 {
            publish(store.as_ref(), k);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
