//! `recsys-train ab-report`: click-through rate per A/B variant from the serving logs: the
//! exposure log `recsys-serve` writes (a file or a directory of daily files, either format, read
//! through `recsys_core::exposure::for_each_exposure`) and the event
//! CSV files of its events API. A click is a `click`, `add_to_cart` or `purchase` of an item the
//! same user was shown at most `window` earlier; each (exposure, item) counts at most once.

use crate::{Error, Result};
use ahash::AHashMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One user's exposure: time, variant, items shown and which of them were clicked.
struct Shown {
    ts: i64,
    variant: String,
    items: Vec<String>,
    clicked: Vec<bool>,
}

/// The figures of one variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VariantStats {
    /// Recommendations served.
    pub exposures: u64,
    /// Item impressions (exposures × items shown).
    pub impressions: u64,
    /// Distinct users.
    pub users: u64,
    /// Impressions followed by a click within the window.
    pub clicks: u64,
    /// `clicks / impressions`.
    pub ctr: f64,
}

/// What `recsys-train ab-report` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbReport {
    /// Attribution window in minutes.
    pub window_minutes: u64,
    /// Per variant.
    pub variants: BTreeMap<String, VariantStats>,
}

/// The event CSV files under `path` (a file, or a directory of `*.csv`).
fn csv_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).map_err(Error::io(path))? {
        let p = e.map_err(Error::io(path))?.path();
        if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Computes the report (see the module docs).
pub fn ab_report(exposures: &Path, events: &Path, window_minutes: u64) -> Result<AbReport> {
    let window = window_minutes as i64 * 60_000;
    // user -> (ts, variant index, items) in time order.
    let mut by_user: AHashMap<String, Vec<Shown>> = AHashMap::new();
    let mut variants: BTreeMap<String, VariantStats> = BTreeMap::new();
    let mut users: BTreeMap<String, ahash::AHashSet<String>> = BTreeMap::new();
    // A file or a directory of daily files, either exposure-log format.
    recsys_core::exposure::for_each_exposure(exposures, |e| {
        let s = variants.entry(e.variant.clone()).or_default();
        s.exposures += 1;
        s.impressions += e.items.len() as u64;
        users.entry(e.variant.clone()).or_default().insert(e.user_id.clone());
        let clicked = vec![false; e.items.len()];
        by_user.entry(e.user_id).or_default().push(Shown {
            ts: e.ts,
            variant: e.variant,
            items: e.items.into_iter().map(|i| i.item_id).collect(),
            clicked,
        });
        Ok(())
    })?;
    for list in by_user.values_mut() {
        list.sort_by_key(|x| x.ts);
    }
    for file in csv_files(events)? {
        let mut rdr = csv::Reader::from_path(&file).map_err(|e| Error::data(&file, e.to_string()))?;
        let headers = rdr.headers().map_err(|e| Error::data(&file, e.to_string()))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::data(&file, format!("no column {name:?}")))
        };
        let (cu, ci, ct, cts) = (col("user_id")?, col("item_id")?, col("event_type")?, col("timestamp")?);
        for rec in rdr.records() {
            let rec = rec.map_err(|e| Error::data(&file, e.to_string()))?;
            let kind = rec.get(ct).unwrap_or("");
            if !matches!(kind, "click" | "add_to_cart" | "purchase") {
                continue;
            }
            let Some(list) = by_user.get_mut(rec.get(cu).unwrap_or("")) else {
                continue;
            };
            let item = rec.get(ci).unwrap_or("");
            let ts: i64 = rec
                .get(cts)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Error::data(&file, format!("bad timestamp {:?}", rec.get(cts))))?;
            // The latest exposure of the item at or before the event, within the window.
            if let Some(x) = list
                .iter_mut()
                .rev()
                .filter(|x| x.ts <= ts && ts - x.ts <= window)
                .find(|x| x.items.iter().any(|i| i == item))
                && let Some(pos) = x.items.iter().position(|i| i == item)
                && !x.clicked[pos]
            {
                x.clicked[pos] = true;
                if let Some(s) = variants.get_mut(&x.variant) {
                    s.clicks += 1;
                }
            }
        }
    }
    for (v, s) in variants.iter_mut() {
        s.users = users.get(v).map_or(0, |u| u.len() as u64);
        s.ctr = if s.impressions > 0 {
            s.clicks as f64 / s.impressions as f64
        } else {
            0.0
        };
    }
    Ok(AbReport {
        window_minutes,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_are_attributed_to_the_variant_that_showed_the_item() {
        let tmp = tempfile::tempdir().unwrap();
        let exp = tmp.path().join("exp.jsonl");
        std::fs::write(
            &exp,
            [
                r#"{"ts": 1000, "user_id": "a", "variant": "control", "model_version": "v1", "items": ["P1", "P2"]}"#,
                r#"{"ts": 1000, "user_id": "b", "variant": "candidate", "model_version": "v2", "items": ["P1", "P3"]}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let ev = tmp.path().join("events");
        std::fs::create_dir(&ev).unwrap();
        std::fs::write(
            ev.join("events-1970-01-01.csv"),
            "user_id,item_id,event_type,timestamp,session_id,price,quantity\n\
             a,P1,click,2000,,,\n\
             a,P1,purchase,3000,,,\n\
             a,P2,view,2000,,,\n\
             b,P3,click,500,,,\n\
             b,P3,click,999999999,,,\n\
             b,P1,add_to_cart,1500,,,\n",
        )
        .unwrap();
        let r = ab_report(&exp, &ev, 30).unwrap();
        let c = &r.variants["control"];
        assert_eq!((c.exposures, c.impressions, c.users, c.clicks), (1, 2, 1, 1));
        assert_eq!(c.ctr, 0.5);
        let k = &r.variants["candidate"];
        // P3 clicked before the exposure and far after the window: not counted; P1 counted.
        assert_eq!(k.clicks, 1);
        std::fs::write(&exp, "{oops").unwrap();
        let e = ab_report(&exp, &ev, 30).unwrap_err().to_string();
        assert!(e.contains("exp.jsonl:1"), "{e}");
    }
}
