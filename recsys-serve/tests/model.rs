//! A served model version with an HNSW graph (`recsys-train train --item-index hnsw`) answers
//! retrieval from the graph, memory-mapped, and agrees with the exact scan.

mod common;

use recsys_core::retrieval::{ExactIndex, Filter, ItemIndex};
use recsys_serve::model::LoadedModel;
use recsys_train::dataset::Dataset;
use recsys_train::train::ItemIndexKind;

#[test]
fn a_version_with_a_graph_is_searched_through_it() {
    let f = common::fixture();
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry");
    let version = common::train_with(&f.data, &registry, 11, ItemIndexKind::Hnsw);
    assert!(registry.join(&version).join(recsys_serve::model::HNSW_FILE).is_file());
    let ids = Dataset::open(&f.data).unwrap().items.ids.ids().to_vec();
    let model = LoadedModel::load(&registry, "current", None, &ids).unwrap();
    assert!(format!("{model:?}").contains("hnsw: true"), "{model:?}");

    let exact = ExactIndex::new(model.item_vectors().to_vec(), model.dim()).unwrap();
    let exclude: Vec<u32> = (0..model.num_items() as u32).step_by(3).collect();
    let filter = Filter {
        exclude: &exclude,
        ..Default::default()
    };
    let (mut hits, mut total) = (0, 0);
    for item in (0..model.num_items() as u32).step_by(29) {
        let q = model.item_vector(item).unwrap().to_vec();
        let want: Vec<u32> = exact.search(&q, 20, &filter).unwrap().iter().map(|s| s.item).collect();
        let got = model.search(&q, 20, &filter).unwrap();
        assert!(got.iter().all(|s| s.item % 3 != 0), "the filter holds");
        hits += got.iter().filter(|s| want.contains(&s.item)).count();
        total += want.len();
    }
    assert!(
        total > 0 && hits as f64 / total as f64 > 0.95,
        "recall@20 {hits}/{total}"
    );

    // The default for a small catalogue: no graph, exact scans.
    let registry2 = tmp.path().join("registry2");
    common::train_with(&f.data, &registry2, 11, ItemIndexKind::Auto);
    let model = LoadedModel::load(&registry2, "current", None, &ids).unwrap();
    assert!(format!("{model:?}").contains("hnsw: false"), "{model:?}");
}
