//! Append-only logs the service writes for the offline side: the posted events (daily CSV files
//! that `recsys-train import` reads for the next training run) and the exposures (format 2 of
//! `recsys_core::exposure`: one JSON line per served response, in daily files, from which
//! `recsys-train ab-report` computes CTR per variant and off-policy estimators re-weight).
//!
//! Each event batch is written with one `write` call on a file opened in append mode, so concurrent
//! writers (threads or processes) never interleave within a line. Exposures go through a bounded
//! queue to one writer thread ([`ExposureLog`]): the request path never waits for the disk.

use crate::online::EventIn;
use crate::{Error, Result};
use prometheus_client::metrics::counter::Counter;
use recsys_core::exposure::ExposureRecord;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender};
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

/// Daily CSV files of posted events under one directory.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    open: Mutex<Option<(String, File)>>,
}

impl EventLog {
    /// Logs into `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EventLog {
            dir: dir.into(),
            open: Mutex::new(None),
        }
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
                Ok(f) => {
                    let mut first = String::new();
                    std::io::BufReader::new(f)
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
        if open.as_ref().is_none_or(|(d, _)| d != &day) {
            let path = self.writable_file(&day)?;
            let mut f = open_append(&path)?;
            let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if empty {
                f.write_all(EVENT_CSV_HEADER.as_bytes())
                    .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
            }
            *open = Some((day.clone(), f));
        }
        let (_, f) = open.as_mut().expect("opened above");
        f.write_all(text.as_bytes())
            .map_err(|e| Error::Internal(format!("event log {}: {e}", self.dir.display())))
    }
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
    /// The open day and its buffered file.
    file: Option<(String, std::io::BufWriter<File>)>,
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
        if self.file.as_ref().is_none_or(|(d, _)| d != &day) {
            self.flush();
            let path = self.dir.join(recsys_core::exposure::file_name(&day));
            match open_append(&path) {
                Ok(f) => self.file = Some((day, std::io::BufWriter::with_capacity(1 << 16, f))),
                Err(e) => {
                    tracing::error!("exposure log: {e}");
                    self.file = None;
                    self.dropped.inc();
                    return;
                }
            }
        }
        let Some((_, f)) = self.file.as_mut() else { return };
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
            }
        }
    }

    fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        let n = std::mem::take(&mut self.pending);
        match self.file.as_mut().map(|(_, f)| f.flush()) {
            Some(Ok(())) => {
                self.written.inc_by(n);
            }
            Some(Err(e)) => {
                tracing::error!("exposure log {}: {e}", self.dir.display());
                self.dropped.inc_by(n);
                // Counted as dropped: discard the buffer (no flush on drop) and reopen the file
                // at the next record.
                if let Some((_, f)) = self.file.take() {
                    let _ = f.into_parts();
                }
            }
            None => {
                self.dropped.inc_by(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            user_id: "u".into(),
            item_id: "P2".into(),
            event_type: "click".into(),
            timestamp: None,
            session_id: None,
            price: None,
            quantity: None,
            rating: None,
            request_id: Some("r".into()),
        };
        let now = 1_700_000_000_000;
        log.append(&[(ev, now)], now).unwrap();
        assert_eq!(std::fs::read_to_string(log.file_of("2023-11-14")).unwrap(), old);
        let next = std::fs::read_to_string(tmp.path().join("events-2023-11-14.1.csv")).unwrap();
        assert_eq!(next, format!("{EVENT_CSV_HEADER}u,P2,click,{now},,,,r\n"));
    }
}
