//! Append-only logs the service writes for the offline side: the posted events (daily CSV files
//! that `recsys-train import` reads for the next training run) and the exposures (one JSON line per
//! served recommendation, from which `recsys-train ab-report` computes CTR per variant).
//!
//! Each batch is written with one `write` call on a file opened in append mode, so concurrent
//! writers (threads or processes) never interleave within a line.

use crate::online::EventIn;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// One served recommendation, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// UTC ms.
    pub ts: i64,
    /// User id.
    pub user_id: String,
    /// `control` or `candidate`.
    pub variant: String,
    /// Model version.
    pub model_version: String,
    /// The request's context, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Item ids shown, in order.
    pub items: Vec<String>,
}

/// The exposure log (JSONL).
#[derive(Debug)]
pub struct ExposureLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl ExposureLog {
    /// Appends to `path` (created when missing).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        Ok(ExposureLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one line.
    pub fn append(&self, e: &Exposure) -> Result<()> {
        let mut line = serde_json::to_string(e).map_err(|e| Error::Internal(e.to_string()))?;
        line.push('\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| Error::Internal("exposure log lock poisoned".into()))?;
        f.write_all(line.as_bytes())
            .map_err(|err| Error::Internal(format!("{}: {err}", self.path.display())))
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
