//! A small synthetic TechShop with two trained model versions and pre-computed candidates, built
//! once per test binary.
#![allow(dead_code)]

use recsys_core::model::TwoTowerConfig;
use recsys_train::evaluate::SplitOptions;
use recsys_train::generate::{GenerateConfig, generate};
use recsys_train::import::{ImportOptions, import};
use recsys_train::precompute::{PrecomputeOptions, precompute};
use recsys_train::progress::Progress;
use recsys_train::registry::Registry;
use recsys_train::train::{BackendKind, ItemIndexKind, TrainOptions, train_and_register};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths of the shared fixture.
pub struct Fixture {
    /// Root (kept for the whole test run).
    pub root: PathBuf,
    /// Dataset.
    pub data: PathBuf,
    /// Registry: v0001 and v0002, v0002 current.
    pub registry: PathBuf,
    /// `file:` store with the candidates of v0002, active.
    pub store: String,
    /// The first and second version.
    pub versions: (String, String),
}

pub fn model_config(seed: u64) -> TwoTowerConfig {
    let mut c = TwoTowerConfig::new();
    c.embedding_dim = 64;
    c.id_dim = 32;
    c.side_dim = 8;
    c.hidden_dim = 64;
    c.epochs = 3;
    c.batch_size = 512;
    c.seed = seed;
    c
}

pub fn train(data: &Path, registry: &Path, seed: u64) -> String {
    train_with(data, registry, seed, ItemIndexKind::Auto)
}

/// [`train`] choosing whether the version gets an HNSW graph.
pub fn train_with(data: &Path, registry: &Path, seed: u64, item_index: ItemIndexKind) -> String {
    let out = train_and_register(&TrainOptions {
        data: data.to_path_buf(),
        registry: registry.to_path_buf(),
        config: model_config(seed),
        backend: BackendKind::Cpu,
        gates: None,
        split: SplitOptions::default(),
        item_index,
        tune: None,
        progress: Progress::quiet(),
    })
    .unwrap();
    assert!(out.promoted);
    out.version
}

pub fn precompute_into(data: &Path, registry: &Path, store: &str) {
    let mut opts = PrecomputeOptions::new(data, registry, store);
    opts.top = 200;
    opts.similar = 30;
    precompute(&opts).unwrap();
}

fn build() -> Fixture {
    let root = std::env::temp_dir().join(format!("recsys-serve-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let raw = root.join("raw");
    let cfg = GenerateConfig {
        users: 1_500,
        items: 300,
        events_per_day: 30_000,
        days: 8,
        ..Default::default()
    };
    generate(&raw, &cfg, Progress::quiet()).unwrap();
    let map = "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity"
        .parse()
        .unwrap();
    let mut opts = ImportOptions::new(vec![raw.join("events")], map);
    opts.items = Some(raw.join("items.parquet"));
    opts.users = Some(raw.join("users.parquet"));
    opts.event_type = Some("event_type".parse().unwrap());
    opts.progress = Progress::quiet();
    let data = root.join("data");
    import(&data, &opts).unwrap();
    let registry = root.join("registry");
    let v1 = train(&data, &registry, 1);
    let v2 = train(&data, &registry, 2);
    assert_eq!(
        Registry::open(&registry).unwrap().current().unwrap().as_deref(),
        Some(v2.as_str())
    );
    let store = format!("file:{}", root.join("store").display());
    precompute_into(&data, &registry, &store);
    Fixture {
        root,
        data,
        registry,
        store,
        versions: (v1, v2),
    }
}

/// The shared fixture (built on first use).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

/// A copy of the fixture's registry (for tests that promote or break versions).
pub fn copy_registry(to: &Path) -> PathBuf {
    let dest = to.join("registry");
    copy_dir(&fixture().registry, &dest);
    dest
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}
