//! The file store's reader: a copy of a published store version with one of its files (chosen by
//! `data[0]`) replaced, overwritten, truncated or extended (`techshop_recs_fuzz::mutate`), then
//! opened and every list read. Contract: `Ok` or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_core::store::{CandidateStore, FileStore};
use techshop_recs_fuzz::{copy_tree, files_under, fixture, mutate};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&f.store_dir, dir.path());
    let files = files_under(dir.path());
    let target = &files[usize::from(pick) % files.len()];
    let original = std::fs::read(target).expect("read");
    std::fs::write(target, mutate(&original, rest)).expect("write");
    let Ok(store) = FileStore::open(dir.path()) else {
        return;
    };
    let _ = store.versions();
    if let Ok(Some(snap)) = store.open_active() {
        for u in 0..320 {
            let _ = snap.candidates(&format!("U{u:07}"));
        }
        for i in 0..130 {
            let _ = snap.similar(&format!("P{i:06}"));
        }
        let _ = snap.features();
    }
});
