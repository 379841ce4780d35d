//! The HNSW graph file reader (usearch's format behind `HnswIndex::load` and the memory-mapped
//! `HnswIndex::open`): with `data[0]` even the rest is the whole file, odd it changes the fixture's
//! `items.hnsw` (`techshop_recs_fuzz::mutate`) and keeps the fixture's checksum file beside it;
//! what loads is searched once. Contract: `Ok` or an error naming the file (`Error::Corrupt`),
//! never a panic or a crash in the C++ reader. (usearch's reader trusts the graph: the first run
//! of this target crashed it with 8 bytes overwritten, hence the checksum file `save` writes and
//! `open`/`load` verify; `open_verified_elsewhere` skips it and is not fuzzed.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_core::retrieval::{Filter, HnswConfig, HnswIndex, ItemIndex, checksum_path};
use techshop_recs_fuzz::{fixture, mutate};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("items.hnsw");
    let bytes = if pick % 2 == 0 {
        rest.to_vec()
    } else {
        let f = fixture();
        let graph = f.registry.join(&f.version).join("items.hnsw");
        std::fs::copy(checksum_path(&graph), checksum_path(&path)).expect("copy the checksum file");
        mutate(&std::fs::read(&graph).expect("read the graph"), rest)
    };
    std::fs::write(&path, &bytes).expect("write");
    let config = HnswConfig::default();
    for index in [HnswIndex::load(&path, &config), HnswIndex::open(&path, &config)]
        .into_iter()
        .flatten()
    {
        let dim = index.dim();
        if (1..=4096).contains(&dim) {
            let query = vec![0.5f32; dim];
            let _ = index.search(&query, 10, &Filter::default());
        }
    }
});
