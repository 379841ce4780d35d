//! Shared pieces of the fuzz targets in `fuzz_targets/`: a small synthetic TechShop (dataset,
//! registry with one trained version, file store with its candidates), built once per fuzzing
//! process, and helpers to write an input to a file.
//!
//! Every target asserts the same contract (issue 28): whatever the bytes, the code under test
//! returns `Ok` or an error, never panics, and the HTTP API never answers 500.

use recsys_core::model::TwoTowerConfig;
use recsys_train::evaluate::SplitOptions;
use recsys_train::generate::{GenerateConfig, generate};
use recsys_train::import::{ImportOptions, import};
use recsys_train::precompute::{PrecomputeOptions, precompute};
use recsys_train::progress::Progress;
use recsys_train::train::{BackendKind, ItemIndexKind, TrainOptions, train_and_register};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths of the shared fixture.
pub struct Fixture {
    /// Dataset directory.
    pub data: PathBuf,
    /// Registry with one version, current.
    pub registry: PathBuf,
    /// The file store's directory (candidates of the current version, active).
    pub store_dir: PathBuf,
    /// The version's name.
    pub version: String,
}

fn build() -> Fixture {
    let root = std::env::temp_dir().join(format!("techshop-recs-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let raw = root.join("raw");
    let cfg = GenerateConfig {
        users: 300,
        items: 120,
        events_per_day: 4_000,
        days: 4,
        ..Default::default()
    };
    generate(&raw, &cfg, Progress::quiet()).expect("generate");
    let map = "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity"
        .parse()
        .expect("column map");
    let mut opts = ImportOptions::new(vec![raw.join("events")], map);
    opts.items = Some(raw.join("items.parquet"));
    opts.users = Some(raw.join("users.parquet"));
    opts.event_type = Some("event_type".parse().expect("event type column"));
    opts.progress = Progress::quiet();
    let data = root.join("data");
    import(&data, &opts).expect("import");
    let registry = root.join("registry");
    let mut config = TwoTowerConfig::new();
    config.embedding_dim = 16;
    config.id_dim = 8;
    config.side_dim = 4;
    config.hidden_dim = 16;
    config.epochs = 1;
    config.batch_size = 256;
    let out = train_and_register(&TrainOptions {
        data: data.clone(),
        registry: registry.clone(),
        config,
        backend: BackendKind::Cpu,
        gates: None,
        split: SplitOptions::default(),
        item_index: ItemIndexKind::Hnsw,
        tune: None,
        progress: Progress::quiet(),
    })
    .expect("train");
    let store_dir = root.join("store");
    let mut p = PrecomputeOptions::new(&data, &registry, &format!("file:{}", store_dir.display()));
    p.top = 50;
    p.similar = 10;
    precompute(&p).expect("precompute");
    Fixture {
        data,
        registry,
        store_dir,
        version: out.version,
    }
}

/// The shared fixture (built on first use, a few seconds).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

/// Copies the directory tree `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy");
        }
    }
}

/// Regular files under `dir`, recursively, sorted (a stable order for a selector byte).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("dir entry");
            if e.file_type().expect("file type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// How a fuzz input changes an existing file: `data[0]` picks replace (whole file), overwrite at an
/// offset, truncate, or append; the rest of `data` is the new bytes (or the offset's seed).
pub fn mutate(original: &[u8], data: &[u8]) -> Vec<u8> {
    let Some((&op, rest)) = data.split_first() else {
        return original.to_vec();
    };
    let at = |seed: &[u8]| -> usize {
        let mut x = 0usize;
        for &b in seed.iter().take(4) {
            x = x.wrapping_mul(256).wrapping_add(b as usize);
        }
        if original.is_empty() { 0 } else { x % original.len() }
    };
    match op % 4 {
        0 => rest.to_vec(),
        1 => {
            let mut out = original.to_vec();
            let o = at(rest);
            for (k, &b) in rest.iter().skip(4).enumerate() {
                if let Some(slot) = out.get_mut(o + k) {
                    *slot = b;
                }
            }
            out
        }
        2 => original[..at(rest)].to_vec(),
        _ => {
            let mut out = original.to_vec();
            out.extend_from_slice(rest);
            out
        }
    }
}

/// libfuzzer-sys makes every panic abort the process, also one the code under test catches on
/// purpose (the import's readers turn a panic inside a third-party decoder into an error naming
/// the file). Called at the start of each input: puts the standard panic hook back once, so only a
/// panic that escapes the code under test (libfuzzer-sys still aborts on those) is a crash.
pub fn only_uncaught_panics_crash() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::panic::take_hook();
    });
}
