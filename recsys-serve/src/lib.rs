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
//! | stage | file |
//! |---|---|
//! | serving configuration | [`config`] |
//! | a registry version loaded for serving | [`model`] |
//! | real-time features and the catalogue | [`online`] |
//! | the request pipeline, cache, A/B split, reload | [`recommender`] |
//! | the item-feature snapshot requests read, kept fresh in the background | `snapshot.rs` |
//! | the canary on evidence: decisions, shared state | [`canary`] |
//! | event and exposure logs | [`logs`] |
//! | Prometheus metrics | [`metrics`] |
//! | HTTP routes (the default `http` feature) | `http.rs` |
//! | the click and purchase simulator driving a [`Recommender`] (the `dataset` feature) | `simulate.rs` |

pub mod canary;
pub mod config;
pub mod error;
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
