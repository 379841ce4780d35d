//! # recsys-serve
//!
//! The online half of techshop-recs. Today it serves the ADR's real-time features: the server
//! warms [`online::OnlineFeatures`] from a dataset with the very engine `recsys-train features`
//! uses, then keeps it current from `POST /api/v1/events`, so a user's features reflect the click
//! they made a moment ago (ADR "Freshness") with no training/serving skew. Recommendations,
//! candidate stores and the rest of the serving layer build on this.

pub mod error;
pub mod http;
pub mod online;

pub use error::{Error, Result};
