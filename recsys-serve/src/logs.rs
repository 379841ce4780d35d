//! Append-only logs the service writes for the offline side: the posted events (daily CSV files
//! that `recsys-train import` reads for the next training run) and the exposures (format 2 of
//! `recsys_core::exposure`: one JSON line per served response, in daily files, from which
//! `recsys-train ab-report` computes CTR per variant and off-policy estimators re-weight).
//!
//! Each event batch is written with one `write` call on a file opened in append mode, so concurrent
//! writers (threads or processes) never interleave within a line. Exposures go through a bounded
//! queue to one writer thread ([`ExposureLog`]): the request path never waits for the disk.

use crate::config::FsyncPolicy;
use crate::online::EventIn;
use crate::{Error, Result};
use prometheus_client::metrics::counter::Counter;
use recsys_core::exposure::ExposureRecord;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `--map` with which `recsys-train import --ts-format unix_ms` reads the event CSV files
/// (the event type is read from the `event_type` column by default; `request_id` is not imported).
pub const EVENT_LOG_IMPORT_MAP: &str =
    "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity";

/// The header of the event CSV files (the columns `recsys-train import` maps).
pub const EVENT_CSV_HEADER: &str = "user_id,item_id,event_type,timestamp,session_id,price,quantity,request_id\n";

fn open_append(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Internal(format!("{}: {e}", dir.display())))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The day's file of the event log.
#[derive(Debug)]
struct OpenDay {
    day: String,
    path: PathBuf,
    file: Arc<File>,
}

/// Daily CSV files of posted events under one directory, forced to disk by its
/// [`FsyncPolicy`] (`event_log_fsync` in the serving config).
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    policy: FsyncPolicy,
    /// The open day and its file (shared with the syncer thread).
    open: Arc<Mutex<Option<OpenDay>>>,
    /// Written since the last sync (the interval policy).
    dirty: Arc<AtomicBool>,
    /// Syncs done, for tests and operators.
    syncs: Arc<AtomicU64>,
    /// The interval policy's thread; dropping the sender stops it (after a last sync).
    syncer: Option<(SyncSender<()>, std::thread::JoinHandle<()>)>,
}

impl EventLog {
    /// Logs into `dir` (created when missing), without syncing (the `"never"` policy).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EventLog {
            dir: dir.into(),
            policy: FsyncPolicy::Never,
            open: Arc::new(Mutex::new(None)),
            dirty: Arc::new(AtomicBool::new(false)),
            syncs: Arc::new(AtomicU64::new(0)),
            syncer: None,
        }
    }

    /// Logs into `dir` (created when missing) under `policy`; with [`FsyncPolicy::Interval`] a
    /// thread syncs the day's file every `every` when something was written, and once more when
    /// the log is dropped.
    pub fn open(dir: impl Into<PathBuf>, policy: FsyncPolicy, every: Duration) -> Result<Self> {
        let mut log = Self::new(dir);
        log.policy = policy;
        if policy == FsyncPolicy::Interval {
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            let (open, dirty, syncs) = (Arc::clone(&log.open), Arc::clone(&log.dirty), Arc::clone(&log.syncs));
            let handle = std::thread::Builder::new()
                .name("event-log-sync".into())
                .spawn(move || {
                    use std::sync::mpsc::RecvTimeoutError;
                    loop {
                        let last = !matches!(rx.recv_timeout(every), Err(RecvTimeoutError::Timeout));
                        if dirty.swap(false, Ordering::AcqRel) {
                            let file = open.lock().ok().and_then(|o| o.as_ref().map(|d| Arc::clone(&d.file)));
                            if let Some(Err(e)) = file.map(|f| sync_counted(&f, &syncs)) {
                                tracing::error!("event log: fsync failed: {e}");
                                dirty.store(true, Ordering::Release);
                            }
                        }
                        if last {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start the event-log sync thread: {e}")))?;
            log.syncer = Some((tx, handle));
        }
        Ok(log)
    }

    /// How many times the log was forced to disk.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The file of a day (`YYYY-MM-DD`).
    pub fn file_of(&self, day: &str) -> PathBuf {
        self.dir.join(format!("events-{day}.csv"))
    }

    /// The file a day's events go to: [`Self::file_of`], unless that file was started with
    /// another header (a log written before a column was added): then `events-DAY.N.csv`, the
    /// first N whose file is new or has the current header, so one file never mixes layouts.
    fn writable_file(&self, day: &str) -> Result<PathBuf> {
        let header_ok = |p: &Path| -> Result<bool> {
            use std::io::BufRead;
            match File::open(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(Error::Internal(format!("{}: {e}", p.display()))),
                // Not a regular file (a device, say): nothing to check, and writing to it decides.
                Ok(f) if !f.metadata().map(|m| m.is_file()).unwrap_or(true) => Ok(true),
                Ok(f) => {
                    // At most a header's length: the file may hold anything (a first line of
                    // gigabytes).
                    use std::io::Read;
                    let mut first = String::new();
                    std::io::BufReader::new(f.take(EVENT_CSV_HEADER.len() as u64))
                        .read_line(&mut first)
                        .map_err(|e| Error::Internal(format!("{}: {e}", p.display())))?;
                    Ok(first.is_empty() || first == EVENT_CSV_HEADER)
                }
            }
        };
        let path = self.file_of(day);
        if header_ok(&path)? {
            return Ok(path);
        }
        for n in 1.. {
            let p = self.dir.join(format!("events-{day}.{n}.csv"));
            if header_ok(&p)? {
                return Ok(p);
            }
        }
        unreachable!("the loop above returns")
    }

    /// Appends validated events with their resolved timestamps.
    pub fn append(&self, events: &[(EventIn, i64)], now_ms: i64) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let day = chrono::DateTime::from_timestamp_millis(now_ms)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "unknown".into());
        let mut text = String::new();
        for (e, ts) in events {
            let opt = |v: Option<String>| v.unwrap_or_default();
            text.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&e.user_id),
                csv_field(&e.item_id),
                csv_field(&e.event_type),
                ts,
                csv_field(&opt(e.session_id.clone())),
                opt(e.price.map(|p| p.to_string())),
                opt(e.quantity.map(|q| q.to_string())),
                csv_field(&opt(e.request_id.clone())),
            ));
        }
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal("event log lock poisoned".into()))?;
        if open.as_ref().is_none_or(|d| d.day != day) {
            // The previous day's file is complete: on disk before it is closed.
            if let Some(old) = open.take()
                && self.policy != FsyncPolicy::Never
                && self.dirty.swap(false, Ordering::AcqRel)
            {
                self.sync(&old.file, &old.path)?;
            }
            std::fs::create_dir_all(&self.dir).map_err(|e| unwritable(&self.dir, e))?;
            let path = self.writable_file(&day)?;
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| unwritable(&path, e))?;
            let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if empty {
                if let Err(e) = f.write_all(EVENT_CSV_HEADER.as_bytes()) {
                    // Empty again, so that the next try writes the whole header.
                    let _ = f.set_len(0);
                    return Err(unwritable(&path, e));
                }
                // A new file's directory entry must reach the disk too.
                if self.policy != FsyncPolicy::Never {
                    let dir =
                        File::open(&self.dir).map_err(|e| Error::Internal(format!("{}: {e}", self.dir.display())))?;
                    self.sync(&dir, &self.dir)?;
                }
            }
            *open = Some(OpenDay {
                day: day.clone(),
                path,
                file: Arc::new(f),
            });
        }
        let OpenDay { path, file: f, .. } = open.as_ref().expect("opened above");
        let before = f.metadata().map(|m| m.len());
        if let Err(e) = (&**f).write_all(text.as_bytes()) {
            // A partial batch (a full disk) would leave half a line for the next one to run into:
            // cut the file back to where this batch began.
            if let Ok(len) = before {
                let _ = f.set_len(len);
            }
            return Err(unwritable(path, e));
        }
        match self.policy {
            FsyncPolicy::Always => self.sync(f, path),
            FsyncPolicy::Interval => {
                self.dirty.store(true, Ordering::Release);
                Ok(())
            }
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// Forces `f` (a file of the log, or its directory) to disk.
    fn sync(&self, f: &File, what: &Path) -> Result<()> {
        sync_counted(f, &self.syncs).map_err(|e| unwritable(what, e))
    }
}

/// Forces `f` to disk and counts it in `syncs`.
fn sync_counted(f: &File, syncs: &AtomicU64) -> std::io::Result<()> {
    f.sync_data()?;
    syncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

impl Drop for EventLog {
    /// Stops the interval policy's thread after its last sync.
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// The event log could not be written (a full disk, an I/O error): logged with the path for the
/// operator; to the client a 503, the events neither accepted nor applied, so that it retries.
fn unwritable(path: &Path, e: std::io::Error) -> Error {
    tracing::error!("event log {}: {e}", path.display());
    Error::Core(recsys_core::Error::Unavailable {
        service: "event log",
        message: format!(
            "cannot be written ({}); the events were not accepted, retry later",
            e.kind()
        ),
    })
}

/// What the request path sends the exposure-log writer.
enum ExposureMsg {
    Record(Box<ExposureRecord>),
    /// Write and flush everything queued before, then answer.
    Flush(SyncSender<()>),
}

/// The exposure log, format 2 (`recsys_core::exposure`): a bounded queue in front of a writer
/// thread appending one JSON line per record to the day's file `exposures-YYYY-MM-DD.jsonl` (UTC
/// day of the record's `ts`) in its directory.
///
/// [`ExposureLog::send`] never blocks: when the queue is full the record is counted in `dropped`
/// and not written. The writer counts in `written` the records it has flushed to the file (a
/// failed write counts them as dropped, and is logged). Dropping the log (with the last
/// `Recommender` clone) or [`ExposureLog::flush`] writes and flushes everything queued.
pub struct ExposureLog {
    dir: PathBuf,
    tx: Option<SyncSender<ExposureMsg>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dropped: Counter,
}

impl std::fmt::Debug for ExposureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExposureLog").field("dir", &self.dir).finish()
    }
}

/// How often the writer flushes its buffer while records keep coming.
const EXPOSURE_FLUSH_EVERY: Duration = Duration::from_millis(200);

impl ExposureLog {
    /// Starts the writer thread for the directory `dir` (created when missing) with a queue of
    /// `capacity` records; `written` and `dropped` are the counters it maintains. A `dir` that is
    /// an existing file (the first format's single file) is refused, naming `exposure_log`.
    pub fn open(dir: impl Into<PathBuf>, capacity: usize, written: Counter, dropped: Counter) -> Result<Self> {
        let (mut log, writer, rx) = Self::unstarted(dir.into(), capacity, written, dropped)?;
        log.start(writer, rx)?;
        Ok(log)
    }

    /// The log with its queue but no writer thread yet ([`Self::start`]).
    fn unstarted(
        dir: PathBuf,
        capacity: usize,
        written: Counter,
        dropped: Counter,
    ) -> Result<(Self, ExposureWriter, Receiver<ExposureMsg>)> {
        if dir.is_file() {
            return Err(Error::bad(
                "exposure_log",
                dir.display(),
                "is a file: the exposure log is a directory of daily files (exposures-YYYY-MM-DD.jsonl)",
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::bad(
                "exposure_log",
                dir.display(),
                format!("cannot create the directory: {e}"),
            )
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let writer = ExposureWriter {
            dir: dir.clone(),
            file: None,
            pending: 0,
            written,
            dropped: dropped.clone(),
        };
        let log = ExposureLog {
            dir,
            tx: Some(tx),
            writer: None,
            dropped,
        };
        Ok((log, writer, rx))
    }

    /// Starts the writer thread.
    fn start(&mut self, mut writer: ExposureWriter, rx: Receiver<ExposureMsg>) -> Result<()> {
        let handle = std::thread::Builder::new()
            .name("exposure-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the exposure-log writer: {e}")))?;
        self.writer = Some(handle);
        Ok(())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues one record without blocking; false (and counted as dropped) when the queue is full.
    pub fn send(&self, record: ExposureRecord) -> bool {
        let ok = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(ExposureMsg::Record(Box::new(record))).is_ok());
        if !ok {
            self.dropped.inc();
        }
        ok
    }

    /// Blocks until every record queued before the call is written and flushed.
    pub fn flush(&self) -> Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        tx.send(ExposureMsg::Flush(ack_tx))
            .map_err(|_| Error::Internal("the exposure-log writer stopped".into()))?;
        ack_rx
            .recv()
            .map_err(|_| Error::Internal("the exposure-log writer stopped".into()))
    }
}

impl Drop for ExposureLog {
    /// Closes the queue and waits for the writer to write and flush what it holds.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread's state.
struct ExposureWriter {
    dir: PathBuf,
    /// The open day, its buffered file, and the file's length after the last successful flush.
    file: Option<(String, std::io::BufWriter<File>, u64)>,
    /// Records buffered since the last flush.
    pending: u64,
    written: Counter,
    dropped: Counter,
}

impl ExposureWriter {
    fn run(&mut self, rx: Receiver<ExposureMsg>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut last_flush = Instant::now();
        loop {
            match rx.recv_timeout(EXPOSURE_FLUSH_EVERY) {
                Ok(ExposureMsg::Record(r)) => {
                    self.write(&r);
                    if last_flush.elapsed() >= EXPOSURE_FLUSH_EVERY {
                        self.flush();
                        last_flush = Instant::now();
                    }
                }
                Ok(ExposureMsg::Flush(ack)) => {
                    self.flush();
                    last_flush = Instant::now();
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    last_flush = Instant::now();
                }
                // Every sender is gone and the queue is drained.
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn write(&mut self, r: &ExposureRecord) {
        let day = chrono::DateTime::from_timestamp_millis(r.ts)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "unknown".into());
        if self.file.as_ref().is_none_or(|(d, _, _)| d != &day) {
            self.flush();
            let path = self.dir.join(recsys_core::exposure::file_name(&day));
            match open_append(&path).and_then(|f| {
                let len = f
                    .metadata()
                    .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?
                    .len();
                Ok((f, len))
            }) {
                Ok((f, len)) => self.file = Some((day, std::io::BufWriter::with_capacity(1 << 16, f), len)),
                Err(e) => {
                    tracing::error!("exposure log: {e}");
                    self.file = None;
                    self.dropped.inc();
                    return;
                }
            }
        }
        let Some((_, f, _)) = self.file.as_mut() else { return };
        let mut line = match serde_json::to_vec(r) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("exposure log: cannot serialise a record: {e}");
                self.dropped.inc();
                return;
            }
        };
        line.push(b'\n');
        match f.write_all(&line) {
            Ok(()) => self.pending += 1,
            Err(e) => {
                tracing::error!("exposure log {}: {e}", self.dir.display());
                self.dropped.inc();
                self.discard();
            }
        }
    }

    /// After a failed write: the records buffered since the last flush are dropped (counted),
    /// and the file is cut back to its length after that flush, so that no partial line (a full
    /// disk) is left for the next record to run into. The file is reopened at the next record.
    fn discard(&mut self) {
        self.dropped.inc_by(std::mem::take(&mut self.pending));
        if let Some((_, f, good)) = self.file.take() {
            let (f, _) = f.into_parts();
            let _ = f.set_len(good);
        }
    }

    fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        let flushed = self.file.as_mut().map(|(_, f, good)| {
            f.flush()?;
            if let Ok(m) = f.get_ref().metadata() {
                *good = m.len();
            }
            Ok::<(), std::io::Error>(())
        });
        match flushed {
            Some(Ok(())) => {
                self.written.inc_by(std::mem::take(&mut self.pending));
            }
            Some(Err(e)) => {
                tracing::error!("exposure log {}: {e}", self.dir.display());
                self.discard();
            }
            None => {
                self.dropped.inc_by(std::mem::take(&mut self.pending));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(u: &str) -> EventIn {
        EventIn::new(u, "P1", "click")
    }

    #[test]
    fn the_fsync_policy_decides_when_the_event_log_is_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let now = 1_700_000_000_000;
        let day = Duration::from_secs(86_400);
        // never: written, not synced.
        let log = EventLog::open(tmp.path().join("never"), FsyncPolicy::Never, day).unwrap();
        log.append(&[(event("a"), now)], now).unwrap();
        log.append(&[(event("b"), now)], now).unwrap();
        assert_eq!(log.syncs(), 0);
        // always: the new file's directory once, then every batch before append returns.
        let log = EventLog::open(tmp.path().join("always"), FsyncPolicy::Always, day).unwrap();
        log.append(&[(event("a"), now)], now).unwrap();
        assert_eq!(log.syncs(), 2);
        log.append(&[(event("b"), now), (event("c"), now)], now).unwrap();
        assert_eq!(log.syncs(), 3);
        // A new day: the finished file needs no second sync (already synced), the new one's
        // directory entry does.
        log.append(&[(event("d"), now + 86_400_000)], now + 86_400_000).unwrap();
        assert_eq!(log.syncs(), 5);
        // interval: synced by the thread after a write, not while idle, and once more on drop.
        let log = EventLog::open(
            tmp.path().join("interval"),
            FsyncPolicy::Interval,
            Duration::from_millis(20),
        )
        .unwrap();
        log.append(&[(event("a"), now)], now).unwrap();
        assert_eq!(log.syncs(), 1, "the directory, at once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.syncs() < 2 {
            assert!(Instant::now() < deadline, "the interval thread never synced");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(log.syncs(), 2, "nothing written, nothing synced");
        let log = EventLog::open(tmp.path().join("interval"), FsyncPolicy::Interval, day).unwrap();
        log.append(&[(event("b"), now)], now).unwrap();
        assert_eq!(
            log.syncs(),
            0,
            "an existing file: no directory sync, and the hour is not up"
        );
        let syncs = Arc::clone(&log.syncs);
        drop(log);
        assert_eq!(syncs.load(Ordering::Relaxed), 1, "synced when dropped");
        let text = std::fs::read_to_string(tmp.path().join("interval/events-2023-11-14.csv")).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn event_csv_has_one_header_and_quotes_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let log = EventLog::new(tmp.path().join("ev"));
        let ev = |u: &str| EventIn {
            user_id: u.into(),
            item_id: "P1".into(),
            event_type: "click".into(),
            timestamp: None,
            session_id: None,
            price: Some(2.5),
            quantity: None,
            rating: None,
            request_id: None,
        };
        let now = 1_700_000_000_000;
        log.append(&[(ev("a,b"), now)], now).unwrap();
        log.append(&[(ev("c"), now + 1)], now).unwrap();
        let text = std::fs::read_to_string(log.file_of("2023-11-14")).unwrap();
        assert_eq!(
            text,
            format!(
                "{EVENT_CSV_HEADER}\"a,b\",P1,click,{now},,2.5,,\nc,P1,click,{},,2.5,,\n",
                now + 1
            )
        );
        let mut attributed = ev("d");
        attributed.request_id = Some("00ff".into());
        log.append(&[(attributed, now)], now).unwrap();
        let text = std::fs::read_to_string(log.file_of("2023-11-14")).unwrap();
        assert!(text.ends_with(&format!("d,P1,click,{now},,2.5,,00ff\n")), "{text}");
    }

    #[test]
    fn recsys_train_import_reads_the_event_log_with_the_documented_map() {
        use recsys_train::import::{ColumnMap, ImportOptions, TsFormat, import};
        let tmp = tempfile::tempdir().unwrap();
        let log = EventLog::new(tmp.path().join("ev"));
        let now = 1_700_000_000_000;
        let ev = |u: &str, rid: Option<&str>| EventIn {
            user_id: u.into(),
            item_id: "P1".into(),
            event_type: "purchase".into(),
            timestamp: None,
            session_id: Some("s,1".into()),
            price: Some(2.5),
            quantity: Some(2),
            rating: None,
            request_id: rid.map(str::to_string),
        };
        log.append(&[(ev("a", Some("0123abcd")), now), (ev("b", None), now + 1)], now)
            .unwrap();
        let map: ColumnMap = EVENT_LOG_IMPORT_MAP.parse().unwrap();
        let mut opts = ImportOptions::new(vec![tmp.path().join("ev")], map);
        opts.ts_format = TsFormat::UnixMs;
        opts.progress = recsys_train::progress::Progress::quiet();
        let report = import(&tmp.path().join("data"), &opts).unwrap();
        assert_eq!(
            (report.rows_read, report.rows_imported, report.users),
            (2, 2, 2),
            "{report:?}"
        );
    }

    fn exposure(n: usize, ts: i64) -> ExposureRecord {
        ExposureRecord {
            v: recsys_core::exposure::FORMAT_VERSION,
            request_id: format!("r{n}"),
            ts,
            user_id: "u".into(),
            variant: "control".into(),
            model_version: "1.0.0".into(),
            policy: "two-tower".into(),
            context: Default::default(),
            items: vec![recsys_core::exposure::ExposedItem {
                item_id: "P1".into(),
                position: 1,
                score: 0.5,
                propensity: 1.0,
            }],
            cached: false,
            source: Some("store".into()),
        }
    }

    #[test]
    fn a_full_exposure_queue_drops_and_counts_never_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let (written, dropped) = (Counter::default(), Counter::default());
        let (mut log, writer, rx) =
            ExposureLog::unstarted(tmp.path().join("x"), 2, written.clone(), dropped.clone()).unwrap();
        // No writer yet: the queue holds 2, the other 3 are dropped and counted.
        let sent: Vec<bool> = (0..5).map(|n| log.send(exposure(n, 1_700_000_000_000))).collect();
        assert_eq!(sent, [true, true, false, false, false]);
        assert_eq!(dropped.get(), 3);
        log.start(writer, rx).unwrap();
        log.flush().unwrap();
        assert_eq!((written.get(), dropped.get()), (2, 3));
        let ids: Vec<String> = recsys_core::exposure::read_exposures(log.dir())
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, ["r0", "r1"]);
    }

    #[test]
    fn dropping_the_exposure_log_flushes_it_into_daily_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("exposures");
        let written = Counter::default();
        let log = ExposureLog::open(&dir, 100, written.clone(), Counter::default()).unwrap();
        let day = 86_400_000;
        for n in 0..3 {
            assert!(log.send(exposure(n, 1_700_000_000_000 + n as i64 * day)));
        }
        drop(log);
        assert_eq!(written.get(), 3);
        for day in ["2023-11-14", "2023-11-15", "2023-11-16"] {
            let file = dir.join(recsys_core::exposure::file_name(day));
            assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1, "{day}");
        }
        assert_eq!(recsys_core::exposure::read_exposures(&dir).unwrap().len(), 3);
        // A file where the directory should be: refused, naming the field.
        let file = tmp.path().join("old.log");
        std::fs::write(&file, "").unwrap();
        let e = ExposureLog::open(&file, 1, Counter::default(), Counter::default()).unwrap_err();
        assert!(e.to_string().contains("exposure_log"), "{e}");
    }

    #[test]
    fn an_old_layout_file_of_the_day_is_not_appended_to() {
        let tmp = tempfile::tempdir().unwrap();
        let log = EventLog::new(tmp.path());
        let old = "user_id,item_id,event_type,timestamp,session_id,price,quantity\nu,P1,view,1,,,\n";
        std::fs::write(log.file_of("2023-11-14"), old).unwrap();
        let ev = EventIn {
            request_id: Some("r".into()),
            ..EventIn::new("u", "P2", "click")
        };
        let now = 1_700_000_000_000;
        log.append(&[(ev, now)], now).unwrap();
        assert_eq!(std::fs::read_to_string(log.file_of("2023-11-14")).unwrap(), old);
        let next = std::fs::read_to_string(tmp.path().join("events-2023-11-14.1.csv")).unwrap();
        assert_eq!(next, format!("{EVENT_CSV_HEADER}u,P2,click,{now},,,,r\n"));
    }
}
