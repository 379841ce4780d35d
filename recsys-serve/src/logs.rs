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

/// The header of the event CSV files (the columns `recsys-train import` maps).
pub const EVENT_CSV_HEADER: &str = "user_id,item_id,event_type,timestamp,session_id,price,quantity\n";

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
                "{},{},{},{},{},{},{}\n",
                csv_field(&e.user_id),
                csv_field(&e.item_id),
                csv_field(&e.event_type),
                ts,
                csv_field(&opt(e.session_id.clone())),
                opt(e.price.map(|p| p.to_string())),
                opt(e.quantity.map(|q| q.to_string())),
            ));
        }
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal("event log lock poisoned".into()))?;
        if open.as_ref().is_none_or(|(d, _)| d != &day) {
            let path = self.file_of(&day);
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
        };
        let now = 1_700_000_000_000;
        log.append(&[(ev("a,b"), now)], now).unwrap();
        log.append(&[(ev("c"), now + 1)], now).unwrap();
        let text = std::fs::read_to_string(log.file_of("2023-11-14")).unwrap();
        assert_eq!(
            text,
            format!(
                "{EVENT_CSV_HEADER}\"a,b\",P1,click,{now},,2.5,\nc,P1,click,{},,2.5,\n",
                now + 1
            )
        );
    }
}
