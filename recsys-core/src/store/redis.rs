//! The Redis candidate store (`redis://` and `redis+cluster://`).

use super::{CandidateStore, ShardWriter, Snapshot, WritePlan};
use crate::{Error, Result};
use std::sync::Arc;

/// Candidate store in Redis or Redis Cluster.
#[derive(Debug)]
pub struct RedisStore {
    url: String,
}

impl RedisStore {
    /// Connects to the server(s) named by `url`.
    pub fn open(url: &str) -> Result<Self> {
        Err(Error::Unavailable {
            service: "redis",
            message: format!("{url}: not implemented yet"),
        })
    }
}

impl CandidateStore for RedisStore {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn active_version(&self) -> Result<Option<String>> {
        Ok(None)
    }
    fn versions(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn open_version(&self, version: &str) -> Result<Arc<dyn Snapshot>> {
        Err(Error::NotFound {
            kind: "version",
            id: version.to_string(),
        })
    }
    fn writer(&self, _plan: &WritePlan) -> Result<Box<dyn ShardWriter>> {
        Err(Error::Internal("not implemented".into()))
    }
    fn activate(&self, version: &str) -> Result<()> {
        Err(Error::NotFound {
            kind: "version",
            id: version.to_string(),
        })
    }
}
