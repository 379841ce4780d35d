//! Serving reads a model version and the store only: the online feature snapshot that
//! pre-computation publishes with a version gives the same state and the same answers as warming
//! from the dataset directory, and a store without a snapshot is handled as documented.

mod common;

use common::fixture;
use recsys_core::features::FeatureConfig;
use recsys_core::store::open_store;
use recsys_serve::config::ServeConfig;
use recsys_serve::online::OnlineFeatures;
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
use recsys_train::dataset::Dataset;
use recsys_train::precompute::{PrecomputeOptions, precompute};

fn open(data: Option<&std::path::Path>, store: &str) -> Recommender {
    let f = fixture();
    let mut config = ServeConfig::default();
    config.cache.capacity = 0;
    Recommender::open(RecommenderOptions {
        registry: f.registry.clone(),
        data: data.map(|d| d.to_path_buf()),
        store: Some(store.to_string()),
        config,
        model: None,
        popular_only: false,
    })
    .unwrap()
}

#[test]
fn the_published_snapshot_is_the_state_warmed_from_the_dataset() {
    let f = fixture();
    let store = open_store(&f.store).unwrap();
    let snapshot = store.open_active().unwrap().unwrap().features().unwrap();
    let snapshot = snapshot.expect("precompute publishes the feature snapshot");
    let ds = Dataset::open(&f.data).unwrap();
    assert_eq!(snapshot.user_ids, ds.users.ids.ids());
    assert_eq!(snapshot.item_ids, ds.items.ids.ids());

    let from_store = OnlineFeatures::from_snapshot(snapshot).unwrap();
    let from_data = OnlineFeatures::from_dataset(&f.data, FeatureConfig::default()).unwrap();
    assert_eq!(from_store.engine(), from_data.engine());
    assert_eq!(from_store.item_ids(), from_data.item_ids());
    assert_eq!(from_store.categories(), from_data.categories());
    assert_eq!(from_store.brands(), from_data.brands());
    assert_eq!(from_store.item_brands(), from_data.item_brands());
    assert_eq!(from_store.in_stock(), from_data.in_stock());
    assert_eq!(from_store.num_users(), from_data.num_users());
    let now = chrono::Utc::now().timestamp_millis();
    for user in ds.users.ids.ids().iter().step_by(97) {
        assert_eq!(
            from_store.user_features(user, now).unwrap(),
            from_data.user_features(user, now).unwrap(),
            "{user}"
        );
    }
    for (i, item) in ds.items.ids.ids().iter().enumerate().step_by(13) {
        assert_eq!(
            from_store.item_features(item, now).unwrap(),
            from_data.item_features(item, now).unwrap(),
            "{item}"
        );
        assert_eq!(from_store.item_label(i as u32), from_data.item_label(i as u32));
        assert_eq!(from_store.demographics(0), from_data.demographics(0));
    }
}

#[test]
fn serving_from_the_store_alone_answers_as_serving_warmed_from_the_dataset() {
    let f = fixture();
    let store_only = open(None, &f.store);
    let warmed = open(Some(&f.data), &f.store);
    assert!(format!("{store_only:?}").contains("store file:"), "{store_only:?}");
    assert!(format!("{warmed:?}").contains("dataset "), "{warmed:?}");
    let ids = |r: &recsys_serve::Recommendations| r.items.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>();
    let q = RecQuery::default();
    for i in 0..80 {
        let user = format!("U{:07}", i * 17);
        let (a, b) = (
            store_only.recommend(&user, &q).unwrap(),
            warmed.recommend(&user, &q).unwrap(),
        );
        assert_eq!(ids(&a), ids(&b), "{user}");
        assert_eq!(a.source, b.source, "{user}");
    }
    // Anonymous visitors get the same trending and popular lists from both.
    let anon = |r: &Recommender| ids(&r.recommend("a-new-visitor", &q).unwrap());
    assert_eq!(anon(&store_only), anon(&warmed));
}

#[test]
fn a_store_version_without_a_snapshot_falls_back_to_the_trained_on_dataset_with_the_dataset_feature() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("file:{}", tmp.path().display());
    let mut opts = PrecomputeOptions::new(&f.data, &f.registry, &store);
    opts.top = 50;
    opts.similar = 10;
    opts.features = false;
    let report = precompute(&opts).unwrap();
    assert_eq!(report.features_bytes, 0);
    let snap = open_store(&store).unwrap().open_active().unwrap().unwrap();
    assert!(snap.features().unwrap().is_none());
    // This test binary has the `dataset` feature: the model's data.json names the dataset.
    let rec = open(None, &store);
    assert!(format!("{rec:?}").contains("dataset "), "{rec:?}");
    assert!(
        !rec.recommend("U0000003", &RecQuery::default())
            .unwrap()
            .items
            .is_empty()
    );
}
