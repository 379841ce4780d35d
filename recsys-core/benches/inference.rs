//! User-tower inference latency: one user embedding from a 50-event history, on one core.
//! Target (issue "Two-tower model"): <= 100 µs. Run: `cargo bench -p recsys-core --bench inference`.

use burn::backend::NdArray;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::model::net::TwoTowerNet;
use recsys_core::model::sparse::SparseTable;
use recsys_core::model::trainer::export;
use recsys_core::model::{
    HistoryEvent, ItemSide, TrainingData, TwoTowerConfig, UserContext, UserInputs, UserProfile, Vocab,
};
use recsys_core::schema::EventType;
use std::time::Instant;

fn main() {
    let cfg = TwoTowerConfig::new();
    let items = 100_000;
    let vocab = Vocab {
        items,
        categories: 25,
        brands: 17,
        price_buckets: 12,
        ages: 6,
        regions: 9,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let side = ItemSide {
        category: (0..items).map(|_| rng.random_range(0..25)).collect(),
        brand: (0..items).map(|_| rng.random_range(0..17)).collect(),
        price_bucket: (0..items).map(|_| rng.random_range(0..12)).collect(),
        numeric: (0..items).map(|_| [rng.random(), rng.random()]).collect(),
    };
    let data = TrainingData {
        vocab,
        items: side,
        users: vec![UserProfile::default()],
        histories: vec![Vec::new()],
    };
    let net = TwoTowerNet::<NdArray>::init(&cfg, &vocab, &Default::default());
    let model = export(&net, SparseTable::new(items, cfg.id_dim, 0.05, &mut rng), &cfg, &data).expect("export");
    let histories: Vec<Vec<HistoryEvent>> = (0..1000)
        .map(|_| {
            (0..50)
                .map(|k| HistoryEvent {
                    item: rng.random_range(0..items as u32),
                    event_type: EventType::ALL[rng.random_range(0..4)],
                    ts: 1_000_000 + 60_000 * k,
                })
                .collect()
        })
        .collect();
    let mut out = vec![0.0f32; cfg.embedding_dim];
    let mut times = Vec::with_capacity(20_000);
    for round in 0..20_000 {
        let h = &histories[round % histories.len()];
        let t = Instant::now();
        let ctx = UserContext {
            history: h,
            as_of: 10_000_000,
            age: 2,
            region: 3,
        };
        let inputs = UserInputs::build(&ctx, &cfg);
        model.user_embedding(&inputs, &mut out).expect("embedding");
        times.push(t.elapsed().as_nanos() as f64 / 1000.0);
        std::hint::black_box(&out);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "user embedding (history 50, 256-d, one thread): median {:.1} µs, p99 {:.1} µs (target <= 100 µs)",
        q(0.5),
        q(0.99)
    );
    let t = Instant::now();
    let emb = model.item_embeddings();
    println!(
        "item embeddings, {} items, all threads: {:.2} s",
        emb.len() / cfg.embedding_dim,
        t.elapsed().as_secs_f64()
    );
}
