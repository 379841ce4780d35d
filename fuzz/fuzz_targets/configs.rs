//! The configuration parsers and the small text formats of the command line: the serve config
//! (JSON value and file), rules, diversity, the re-ranker file, the model config (JSON and file),
//! the gates (JSON and file), and the column map, time format, event type, tuning budget, model
//! version, as-of time and A/B expectation texts. `data[0]` picks the parser. Contract: a value or
//! an error naming the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_core::model::TwoTowerConfig;
use recsys_core::rerank::Reranker;
use recsys_core::rules::RulesConfig;
use recsys_core::diversify::DiversityConfig;
use recsys_core::schema::EventType;
use recsys_serve::ServeConfig;
use recsys_train::gates::Gates;
use recsys_train::import::{ColumnMap, TsFormat};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let file = |name: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        (dir, path)
    };
    let text = std::str::from_utf8(body).ok();
    let json = || serde_json::from_slice::<serde_json::Value>(body).ok();
    match pick % 16 {
        0 => {
            if let Some(v) = json() {
                let _ = ServeConfig::from_json(v);
            }
        }
        1 => {
            let (_dir, path) = file("serve.json");
            let _ = ServeConfig::load(&path);
        }
        2 => {
            if let Some(t) = text {
                let _ = RulesConfig::from_json(t);
            }
        }
        3 => {
            if let Some(t) = text {
                let _ = DiversityConfig::from_json(t);
            }
        }
        4 => {
            if let Some(t) = text {
                let _ = Reranker::from_json(t);
            }
        }
        5 => {
            if let Some(v) = json() {
                let _ = TwoTowerConfig::from_json(&v);
            }
        }
        6 => {
            let (_dir, path) = file("model.json");
            let _ = recsys_train::train::load_model_config(&path);
        }
        7 => {
            if let Some(v) = json() {
                let _ = Gates::from_json(v);
            }
        }
        8 => {
            let (_dir, path) = file("gates.json");
            let _ = Gates::load(&path);
        }
        9 => {
            if let Some(t) = text {
                let _ = t.parse::<ColumnMap>();
            }
        }
        10 => {
            if let Some(t) = text {
                if let Ok(fmt) = t.parse::<TsFormat>() {
                    let _ = recsys_train::import::parse_time_text("2026-12-07 10:11:12", &fmt);
                    let _ = recsys_train::import::parse_time_text(t, &fmt);
                }
            }
        }
        11 => {
            if let Some(t) = text {
                let _ = EventType::parse(t);
            }
        }
        12 => {
            if let Some(t) = text {
                let _ = recsys_train::tune::parse_duration(t);
            }
        }
        13 => {
            if let Some(t) = text {
                let _ = recsys_core::registry::parse_version(t);
            }
        }
        14 => {
            if let Some(t) = text {
                let _ = recsys_train::features::parse_as_of(t, None);
            }
        }
        _ => {
            if let Some(t) = text {
                let _ = recsys_train::abtest::parse_expected(t);
                let _ = recsys_serve::simulate::SimPolicy::parse(t);
            }
        }
    }
});
