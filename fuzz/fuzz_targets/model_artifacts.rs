//! The model artifact and registry loaders: a copy of the fixture's registry with one of its
//! files (chosen by `data[0]`: the `current` pointer, a version's manifest, `model.bin`, the
//! vocabularies, the re-ranker, the HNSW graph, ...) replaced, overwritten, truncated or extended
//! (`techshop_recs_fuzz::mutate`), then listed, loaded and served from; with `data[0]` ≥ 0xF0 the
//! rest is read directly as a `model.bin` (no checksum in the way). Contract: `Ok` or an error
//! naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::registry::{Registry, load_model};
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
use techshop_recs_fuzz::{copy_tree, files_under, fixture, mutate};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick >= 0xF0 {
        let _ = TwoTowerModel::load(&mut &rest[..]);
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = dir.path().join("registry");
    copy_tree(&f.registry, &registry);
    let files = files_under(&registry);
    let target = &files[usize::from(pick) % files.len()];
    let original = std::fs::read(target).expect("read");
    std::fs::write(target, mutate(&original, rest)).expect("write");
    if let Ok(r) = Registry::open(&registry) {
        let _ = r.current();
        let _ = r.list();
    }
    let _ = load_model("current", Some(&registry));
    let mut opts = RecommenderOptions::new(&registry);
    opts.store = Some(format!("file:{}", f.store_dir.display()));
    if let Ok(rec) = Recommender::open(opts) {
        let _ = rec.recommend("U0000001", &RecQuery::default());
    }
});
