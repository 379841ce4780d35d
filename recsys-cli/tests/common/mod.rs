//! Helpers of the `recsys-train` command's integration tests: recsys-train's own test helpers
//! (one file, shared by path) and running the binary.
#![allow(dead_code)]

#[path = "../../../recsys-train/tests/common/mod.rs"]
mod shared;
#[allow(unused_imports)]
pub use shared::*;

/// Running the `recsys-train` binary from integration tests.
pub mod cli {
    use serde_json::Value;
    use std::path::Path;
    use std::process::{Command, Output};

    pub fn bin() -> Command {
        Command::new(env!("CARGO_BIN_EXE_recsys-train"))
    }

    pub fn run(args: &[&str]) -> Output {
        bin().args(args).output().expect("binary runs")
    }

    pub fn json(out: &Output) -> Value {
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {text}"))
    }

    /// A small synthetic TechShop imported into `dir/data`.
    pub fn dataset(dir: &Path) -> String {
        let raw = dir.join("raw");
        let data = dir.join("data");
        let out = run(&[
            "-q",
            "generate",
            "--out",
            raw.to_str().unwrap(),
            "--users",
            "1500",
            "--items",
            "300",
            "--events-per-day",
            "30000",
            "--days",
            "8",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(&[
            "-q",
            "import",
            "--events",
            raw.join("events").to_str().unwrap(),
            "--items",
            raw.join("items.parquet").to_str().unwrap(),
            "--users",
            raw.join("users.parquet").to_str().unwrap(),
            "--map",
            "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity",
            "--event-type",
            "event_type",
            "--out",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        data.to_str().unwrap().to_string()
    }

    pub fn small_config(dir: &Path) -> String {
        let p = dir.join("config.json");
        std::fs::write(
            &p,
            r#"{"embedding_dim": 64, "id_dim": 32, "side_dim": 8, "hidden_dim": 64, "epochs": 3, "batch_size": 512}"#,
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    }
}
