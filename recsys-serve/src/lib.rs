//! # recsys-serve
//!
//! The online half of techshop-recs: [`Recommender`] runs the ADR's request pipeline (candidates
//! from the store or the model → real-time session → re-rank → rules and diversity → top-k with
//! reasons) as one embeddable object, and [`http`] serves it (`recsys-serve`). The Python and Node
//! bindings wrap the same [`Recommender`].
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
//! | HTTP routes | [`http`] |
//! | the click and purchase simulator driving a [`Recommender`] | [`simulate`] |

pub mod canary;
pub mod config;
pub mod error;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod online;
pub mod recommender;
pub mod simulate;
mod snapshot;

pub use config::ServeConfig;
pub use error::{Error, Result};
pub use recommender::{
    RecItem, RecQuery, Recommendations, Recommender, RecommenderOptions, SimilarItems, Source, Status, Variant,
};
