//! User-tower inference latency: one user embedding from a 50- and a 100-event history, on one
//! core, for the pooled and the self-attention user encoders side by side. Targets: <= 100 µs
//! (issue "Two-tower model"), <= 60 µs P99 for the attention encoder (issue 25).
//! Run: `cargo bench -p recsys-core --bench inference`.

use burn::backend::NdArray;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::model::inference::TwoTowerModel;
use recsys_core::model::net::TwoTowerNet;
use recsys_core::model::sparse::SparseTable;
use recsys_core::model::trainer::export;
use recsys_core::model::{
    HistoryEvent, ItemSide, TrainingData, TwoTowerConfig, UserContext, UserEncoder, UserInputs, UserProfile, Vocab,
};
use recsys_core::schema::EventType;
use std::time::Instant;

/// Latency quantiles (µs) of one user embedding (inputs built and tower run) over `rounds`
/// requests cycling through `histories`.
fn user_latency(model: &TwoTowerModel, histories: &[Vec<HistoryEvent>], rounds: usize) -> (f64, f64) {
    let cfg = &model.config;
    let mut out = vec![0.0f32; cfg.embedding_dim];
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let h = &histories[round % histories.len()];
        let t = Instant::now();
        let ctx = UserContext {
            history: h,
            as_of: 10_000_000_000,
            age: 2,
            region: 3,
        };
        let inputs = UserInputs::build(&ctx, cfg);
        model.user_embedding(&inputs, &mut out).expect("embedding");
        times.push(t.elapsed().as_nanos() as f64 / 1000.0);
        std::hint::black_box(&out);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    (q(0.5), q(0.99))
}

fn main() {
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
    // The ADR's settings: 256-d output, histories of 50 and 100 events, one thread. The pooled
    // encoder (the default) and the self-attention encoder with 1 and 2 blocks, side by side.
    let encoders = [
        ("pooled", UserEncoder::Pooled, 1),
        ("attention, 1 block", UserEncoder::Attention, 1),
        ("attention, 2 blocks", UserEncoder::Attention, 2),
    ];
    let mut first = None;
    for len in [50, 100] {
        let histories: Vec<Vec<HistoryEvent>> = (0..1000)
            .map(|_| {
                (0..len)
                    .map(|k| HistoryEvent {
                        item: rng.random_range(0..items as u32),
                        event_type: EventType::ALL[rng.random_range(0..4)],
                        ts: 1_000_000 + 60_000_000 * k as i64,
                    })
                    .collect()
            })
            .collect();
        let mut pooled_p99 = 0.0;
        for (name, encoder, layers) in encoders {
            let cfg = TwoTowerConfig::new()
                .with_user_encoder(encoder)
                .with_attention_layers(layers);
            let net = TwoTowerNet::<NdArray>::init(&cfg, &vocab, &Default::default());
            let table = SparseTable::new(items, cfg.id_dim, 0.05, &mut rng);
            let model = export(&net, table, &cfg, &data).expect("export");
            let (p50, p99) = user_latency(&model, &histories, 20_000);
            if encoder == UserEncoder::Pooled {
                pooled_p99 = p99;
            }
            println!(
                "user embedding, {name:<20} history {len:>3}, 256-d, one thread: median {p50:>6.1} µs, \
                 p99 {p99:>6.1} µs ({:.2}x pooled's p99; target <= 60 µs)",
                p99 / pooled_p99
            );
            first.get_or_insert(model);
        }
    }
    let model = first.expect("a model");
    let t = Instant::now();
    let emb = model.item_embeddings();
    println!(
        "item embeddings, {} items, all threads: {:.2} s",
        emb.len() / model.dim(),
        t.elapsed().as_secs_f64()
    );
}
