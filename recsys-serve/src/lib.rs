//! # recsys-serve
//!
//! The online half of techshop-recs: [`Recommender`] runs the ADR's request pipeline (candidates
//! from the store or the model → real-time session → re-rank → rules and diversity → top-k with
//! reasons) as one embeddable object, and [`http`] serves it (`recsys-serve`). The Python and Node
//! bindings wrap the same [`Recommender`].
//!
//! Serving reads two things: a model version (`recsys_core::registry`) and the candidate store
//! (`recsys_core::store`), which also carries the online feature snapshot pre-computation
//! published. It does not link the offline pipeline; the `dataset` cargo feature adds it back for
//! warming from a dataset directory (`--data`) and for the click simulator.
//!
//! ```
//! # // The offline half, in miniature: a small synthetic shop, a model, its candidates and
//! # // features in a file store (recsys-train; the pipeline section of the README has the CLI).
//! # use recsys_train::{generate, import, precompute, progress::Progress, train};
//! # let dir = tempfile::tempdir()?;
//! # let (raw, data, registry) = (dir.path().join("raw"), dir.path().join("data"), dir.path().join("registry"));
//! # let shop = generate::GenerateConfig { users: 300, items: 60, events_per_day: 3_000, days: 3, ..Default::default() };
//! # generate::generate(&raw, &shop, Progress::quiet())?;
//! # let map = "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity".parse()?;
//! # let mut imp = import::ImportOptions::new(vec![raw.join("events")], map);
//! # imp.items = Some(raw.join("items.parquet"));
//! # imp.users = Some(raw.join("users.parquet"));
//! # imp.event_type = Some("event_type".parse()?);
//! # import::import(&data, &imp)?;
//! # let config = recsys_core::model::TwoTowerConfig::new().with_embedding_dim(32).with_id_dim(16)
//! #     .with_side_dim(4).with_hidden_dim(32).with_epochs(1).with_batch_size(256);
//! # train::train_and_register(&train::TrainOptions {
//! #     data: data.clone(), registry: registry.clone(), config, backend: train::BackendKind::Cpu,
//! #     gates: None, split: Default::default(), item_index: Default::default(), tune: None,
//! #     progress: Progress::quiet(),
//! # })?;
//! let store = format!("file:{}", dir.path().join("store").display());
//! # precompute::precompute(&precompute::PrecomputeOptions::new(&data, &registry, &store))?;
//! use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
//!
//! // A serving replica: the registry's current model and the store (candidates and features).
//! let mut options = RecommenderOptions::new(&registry);
//! options.store = Some(store);
//! let rec = Recommender::open(options)?;
//!
//! let query = RecQuery { k: Some(5), context: Some("home".into()), ..Default::default() };
//! let answer = rec.recommend("U0000007", &query)?;
//! assert_eq!(answer.items.len(), 5);
//! assert!(answer.items.iter().all(|i| !i.reason.is_empty()));
//! // An unknown visitor is a cold start (trending and popular), not an error.
//! assert!(!rec.recommend("someone-new", &query)?.items.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | stage | file |
//! |---|---|
//! | serving configuration | [`config`] |
//! | a registry version loaded for serving | [`model`] |
//! | real-time features and the catalogue | [`online`] |
//! | the request pipeline, cache, A/B split, reload | [`recommender`] |
//! | the item-feature snapshot requests read, kept fresh in the background | `snapshot.rs` |
//! | the canary on evidence: decisions, shared state | [`canary`] |
//! | event and exposure logs | [`logs`] |
//! | who may post events, per-client limits | [`event_limits`] |
//! | Prometheus metrics | [`metrics`] |
//! | HTTP routes (the default `http` feature) | `http.rs` |
//! | the click and purchase simulator driving a [`Recommender`] (the `dataset` feature) | `simulate.rs` |

pub mod canary;
pub mod config;
pub mod error;
pub mod event_limits;
#[cfg(feature = "http")]
pub mod http;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod online;
pub mod recommender;
#[cfg(feature = "dataset")]
pub mod simulate;
mod snapshot;

pub use config::ServeConfig;
pub use error::{Error, Result};
pub use recommender::{
    RecItem, RecQuery, Recommendations, Recommender, RecommenderOptions, SimilarItems, Source, Status, Variant,
};
