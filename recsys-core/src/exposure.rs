//! The exposure log, format version 2: one JSON line per served response (response-cache hits
//! included), written by `recsys-serve` and read by the offline analysis (`recsys-train ab-report`,
//! `ope`, `import`).
//!
//! ```json
//! {"v":2,"request_id":"6f1c…","ts":1733443200000,"user_id":"u1","variant":"control",
//!  "model_version":"1.2.0","policy":"two-tower","context":{"page":"home","device":"mobile","hour":14},
//!  "items":[{"item_id":"i9","position":1,"score":0.91,"propensity":1.0}],"cached":false,"source":"store"}
//! ```
//!
//! - `position` is 1-based (1 = first slot shown).
//! - `propensity` is the probability with which the serving policy put that item at that position,
//!   given the request: 1.0 for a deterministic policy.
//! - `context.hour` is the hour of day (0–23, UTC) of `ts`; `page` and `device` are what the request
//!   said, absent when it said nothing.
//!
//! Files rotate daily: a log directory holds `exposures-YYYY-MM-DD.jsonl` (UTC day of `ts` at write
//! time). [`for_each_exposure`] reads one file or every such file of a directory, in name order. Lines
//! of the first format (`items` as a list of ids, no request id) are read as deterministic
//! exposures: position from their order, propensity 1.0, score 0.0, and `request_id` made from the
//! file and line, so old logs stay usable.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The format version this module writes (`"v"` in each record).
pub const FORMAT_VERSION: u32 = 2;

/// The request context recorded with an exposure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExposureContext {
    /// Page context the request gave (`home`, `cart`, `product:ID`, `category:NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Device the request gave (`mobile`, `desktop`, `tablet`, `app`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Hour of day, 0–23 (UTC), of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u8>,
}

/// One item of a served response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposedItem {
    /// Item id as imported.
    pub item_id: String,
    /// 1-based slot.
    pub position: u32,
    /// The serving policy's final score.
    pub score: f32,
    /// Probability that the policy shows this item at this position for this request (1.0 when
    /// deterministic).
    pub propensity: f64,
}

/// One served response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureRecord {
    /// Format version ([`FORMAT_VERSION`]).
    #[serde(default = "format_version")]
    pub v: u32,
    /// Unique per response; returned in the API answer and accepted back on events.
    pub request_id: String,
    /// UTC milliseconds.
    pub ts: i64,
    /// The user served.
    pub user_id: String,
    /// A/B variant (`control`, `candidate`).
    pub variant: String,
    /// Model version that answered.
    pub model_version: String,
    /// Name of the serving policy (what ranked the items).
    pub policy: String,
    /// Page, device, hour.
    #[serde(default)]
    pub context: ExposureContext,
    /// What was shown, in slot order.
    pub items: Vec<ExposedItem>,
    /// Served from the response cache.
    #[serde(default)]
    pub cached: bool,
    /// Where the candidates came from (`store`, `model`, `popular`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn format_version() -> u32 {
    FORMAT_VERSION
}

/// The name of a day's file in a log directory (`day` as `YYYY-MM-DD`).
pub fn file_name(day: &str) -> String {
    format!("exposures-{day}.jsonl")
}

/// The files [`for_each_exposure`] reads under `path`: the file itself, or a directory's
/// `exposures-*.jsonl` (and `*.jsonl`) files in name order.
pub fn log_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::invalid(
            "exposures",
            path.display(),
            "neither an exposure log file nor a directory of them",
        ));
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).map_err(Error::io(path))? {
        let p = e.map_err(Error::io(path))?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The first format's record (`items` as ids).
#[derive(Deserialize)]
struct RecordV1 {
    ts: i64,
    user_id: String,
    variant: String,
    model_version: String,
    #[serde(default)]
    context: Option<String>,
    items: Vec<String>,
}

/// Parses one line of either format (`origin` names the file and line for errors and for the
/// request id of a first-format line).
pub fn parse_line(line: &str, origin: &str) -> Result<ExposureRecord> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| Error::corrupt(origin, format!("not JSON: {e}")))?;
    let legacy = value
        .get("items")
        .and_then(|i| i.as_array())
        .and_then(|a| a.first())
        .is_some_and(|first| first.is_string())
        || value.get("request_id").is_none();
    if legacy {
        let r: RecordV1 = serde_json::from_value(value)
            .map_err(|e| Error::corrupt(origin, format!("not an exposure record: {e}")))?;
        return Ok(ExposureRecord {
            v: 1,
            request_id: origin.to_string(),
            ts: r.ts,
            user_id: r.user_id,
            variant: r.variant,
            model_version: r.model_version,
            policy: "unknown".into(),
            context: ExposureContext {
                page: r.context,
                device: None,
                hour: hour_of(r.ts),
            },
            items: r
                .items
                .into_iter()
                .enumerate()
                .map(|(n, item_id)| ExposedItem {
                    item_id,
                    position: n as u32 + 1,
                    score: 0.0,
                    propensity: 1.0,
                })
                .collect(),
            cached: false,
            source: None,
        });
    }
    let r: ExposureRecord = serde_json::from_value(value)
        .map_err(|e| Error::corrupt(origin, format!("not an exposure record: {e}")))?;
    for it in &r.items {
        if !(it.propensity > 0.0 && it.propensity <= 1.0) {
            return Err(Error::corrupt(
                origin,
                format!("item {:?}: propensity {} is not in (0, 1]", it.item_id, it.propensity),
            ));
        }
        if it.position == 0 {
            return Err(Error::corrupt(origin, format!("item {:?}: position 0 (1-based)", it.item_id)));
        }
    }
    Ok(r)
}

/// The hour of day (UTC) of a millisecond timestamp.
pub fn hour_of(ts_ms: i64) -> Option<u8> {
    Some((ts_ms.div_euclid(3_600_000).rem_euclid(24)) as u8)
}

/// Calls `f` with every record under `path` (a file or a log directory, see [`log_files`]), in file
/// then line order, without holding the whole log in memory. Blank lines are skipped; a line that
/// does not parse is an [`Error::Corrupt`] naming the file and line.
pub fn for_each_exposure(path: &Path, mut f: impl FnMut(ExposureRecord) -> Result<()>) -> Result<u64> {
    let mut n = 0u64;
    for file in log_files(path)? {
        let reader = std::io::BufReader::new(std::fs::File::open(&file).map_err(Error::io(&file))?);
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(Error::io(&file))?;
            if line.trim().is_empty() {
                continue;
            }
            let origin = format!("{}:{}", file.display(), i + 1);
            f(parse_line(&line, &origin)?)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Every record under `path` (see [`for_each_exposure`]).
pub fn read_exposures(path: &Path) -> Result<Vec<ExposureRecord>> {
    let mut out = Vec::new();
    for_each_exposure(path, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ExposureRecord {
        ExposureRecord {
            v: FORMAT_VERSION,
            request_id: "r1".into(),
            ts: 1_733_443_200_000 + 14 * 3_600_000,
            user_id: "u1".into(),
            variant: "control".into(),
            model_version: "1.0.0".into(),
            policy: "two-tower".into(),
            context: ExposureContext {
                page: Some("home".into()),
                device: Some("mobile".into()),
                hour: Some(14),
            },
            items: vec![ExposedItem {
                item_id: "i9".into(),
                position: 1,
                score: 0.5,
                propensity: 1.0,
            }],
            cached: true,
            source: Some("store".into()),
        }
    }

    #[test]
    fn round_trips_and_keeps_the_contract_field_names() {
        let r = record();
        let line = serde_json::to_string(&r).unwrap();
        for key in [
            "\"request_id\"",
            "\"ts\"",
            "\"user_id\"",
            "\"variant\"",
            "\"model_version\"",
            "\"policy\"",
            "\"context\"",
            "\"items\"",
            "\"item_id\"",
            "\"position\"",
            "\"score\"",
            "\"propensity\"",
        ] {
            assert!(line.contains(key), "{key} missing from {line}");
        }
        assert_eq!(parse_line(&line, "t:1").unwrap(), r);
        assert_eq!(hour_of(r.ts), Some(14));
    }

    #[test]
    fn reads_first_format_lines_as_deterministic_exposures() {
        let line = r#"{"ts":3600000,"user_id":"u","variant":"candidate","model_version":"2.0.0","context":"cart","items":["a","b"]}"#;
        let r = parse_line(line, "old.jsonl:7").unwrap();
        assert_eq!(r.v, 1);
        assert_eq!(r.request_id, "old.jsonl:7");
        assert_eq!(r.context.page.as_deref(), Some("cart"));
        assert_eq!(r.context.hour, Some(1));
        assert_eq!(r.items[1].item_id, "b");
        assert_eq!(r.items[1].position, 2);
        assert_eq!(r.items[1].propensity, 1.0);
    }

    #[test]
    fn refuses_bad_propensities_and_names_the_line() {
        let mut r = record();
        r.items[0].propensity = 0.0;
        let line = serde_json::to_string(&r).unwrap();
        let e = parse_line(&line, "x.jsonl:3").unwrap_err().to_string();
        assert!(e.contains("x.jsonl:3") && e.contains("propensity"), "{e}");
        let e = parse_line("{nope", "x.jsonl:4").unwrap_err().to_string();
        assert!(e.contains("x.jsonl:4"), "{e}");
    }

    #[test]
    fn reads_a_directory_in_day_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = record();
        a.request_id = "day2".into();
        let mut b = record();
        b.request_id = "day1".into();
        let w = |day: &str, r: &ExposureRecord| {
            std::fs::write(
                tmp.path().join(file_name(day)),
                format!("{}\n\n", serde_json::to_string(r).unwrap()),
            )
            .unwrap()
        };
        w("2025-10-02", &a);
        w("2025-10-01", &b);
        std::fs::write(tmp.path().join("notes.txt"), "not a log").unwrap();
        let ids: Vec<String> = read_exposures(tmp.path())
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, ["day1", "day2"]);
        assert!(read_exposures(&tmp.path().join("missing")).is_err());
    }
}
