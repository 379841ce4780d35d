//! Candidate stores: where pre-computed recommendations live between the batch job and serving.
//!
//! Two tables per model version, both keyed by the ids the data was imported with:
//!
//! - **candidates**: user id → the user's top-N items (N = 500 by default), best first;
//! - **similar**: item id → the item's top-M neighbours (M = 50), best first.
//!
//! Lists hold item *indices* into the version's item dictionary ([`VersionMeta::items`]), encoded
//! compactly by [`encode_list`] (2, 3 or 4 bytes per id depending on the catalogue, one byte per
//! score quantised between the list's first and last score).
//!
//! One trait, two implementations, chosen by URL with [`open_store`]:
//!
//! - `file:DIR` ([`FileStore`]): versioned, memory-mapped files; the default, embedded store.
//! - `redis://HOST:PORT[/DB]` and `redis+cluster://HOST:PORT,HOST:PORT,...` ([`RedisStore`]): the
//!   shared online store of several serving replicas.
//!
//! A version may also carry the online feature snapshot ([`FeatureSnapshot`]: the feature state,
//! catalogue and user attributes serving needs), so that a serving replica reads a model version
//! and the store, and no dataset.
//!
//! Writers fill one version shard by shard ([`WritePlan::shard`], so N batch workers can split the
//! users); the version becomes active only when every shard is complete, by one atomic switch. Readers
//! open a [`Snapshot`] of one version and never see a mix of two.
//!
//! ```
//! use recsys_core::store::{open_store, Scored, WritePlan};
//!
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let store = open_store(&format!("file:{}", dir.path().display()))?;
//! let items: Vec<String> = ["tv", "cable", "remote"].iter().map(|s| s.to_string()).collect();
//! let mut w = store.writer(&WritePlan::new("1.0.0", items))?;
//! w.put_candidates("alice", &[Scored { item: 1, score: 0.9 }, Scored { item: 2, score: 0.5 }])?;
//! w.put_similar("tv", &[Scored { item: 1, score: 0.8 }])?;
//! assert!(w.finish()?.activated);
//!
//! let snap = store.open_active()?.expect("a version is active");
//! let list = snap.candidates("alice")?.expect("alice has candidates");
//! assert_eq!(snap.meta().items[list[0].item as usize], "cable");
//! assert!(snap.candidates("bob")?.is_none());
//! # Ok::<(), recsys_core::Error>(())
//! ```

pub mod features;
mod file;
mod redis;
pub mod session;

pub use features::FeatureSnapshot;
pub use file::FileStore;
pub use redis::{RedisOptions, RedisSessions, RedisStore};
pub use session::{MemorySessions, SessionEvent, SessionStore};

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One recommended item: an index into the version's item dictionary and its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Index into [`VersionMeta::items`].
    pub item: u32,
    /// Retrieval score (inner product of normalised embeddings, higher is better).
    pub score: f32,
}

/// Which slice of the keys a writer handles: keys with `stable_hash(key) % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// The whole key space in one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (e.g. `0/4`), refusing `I >= N` and `N == 0`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("shard", s, why);
        let (i, n) = s.split_once('/').ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }

    /// Which shard of `count` owns `key`.
    pub fn of(key: &str, count: u32) -> u32 {
        (crate::schema::stable_hash(key.as_bytes()) % u64::from(count.max(1))) as u32
    }

    /// Whether this shard owns `key`.
    pub fn owns(&self, key: &str) -> bool {
        Shard::of(key, self.count) == self.index
    }
}

/// Everything a reader needs to know about a store version, written with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The version (the model version in the registry).
    pub version: String,
    /// The item dictionary: [`Scored::item`] indexes it.
    pub items: Vec<String>,
    /// Longest candidate list.
    pub top_candidates: u32,
    /// Longest similar-items list.
    pub top_similar: u32,
    /// How many shards make the version complete.
    pub shards: u32,
    /// When the writer started (UTC ms).
    pub created_at_ms: i64,
}

/// What a writer is about to write.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    /// The version to write (the model version).
    pub version: String,
    /// The item dictionary of the version (identical for every shard).
    pub items: Vec<String>,
    /// Which shard this writer fills.
    pub shard: Shard,
    /// Longest candidate list that will be written (default 500).
    pub top_candidates: u32,
    /// Longest similar-items list that will be written (default 50).
    pub top_similar: u32,
    /// Redis: time to live of the version's keys in seconds (default 7 days); old versions expire
    /// sooner once replaced (see [`RedisStore`]). Ignored by the file store, which keeps the last
    /// versions on disk and deletes older ones.
    pub ttl_seconds: u64,
}

impl WritePlan {
    /// A plan for the whole key space with the defaults (top 500 candidates, 50 similar items).
    pub fn new(version: impl Into<String>, items: Vec<String>) -> Self {
        WritePlan {
            version: version.into(),
            items,
            shard: Shard::ALL,
            top_candidates: 500,
            top_similar: 50,
            ttl_seconds: 7 * 24 * 3600,
        }
    }

    /// Checks the plan: a usable version name, a non-empty dictionary, list lengths in range.
    pub fn validate(&self) -> Result<()> {
        validate_version(&self.version)?;
        if self.items.is_empty() {
            return Err(Error::invalid("items", 0, "the item dictionary is empty"));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(Error::invalid("items", self.items.len(), "more than 2^32 - 1 items"));
        }
        for (field, v) in [
            ("top_candidates", self.top_candidates),
            ("top_similar", self.top_similar),
        ] {
            if v == 0 || v > u32::from(u16::MAX) {
                return Err(Error::invalid(field, v, "must be in 1..=65535"));
            }
        }
        if self.shard.count == 0 || self.shard.index >= self.shard.count {
            return Err(Error::invalid(
                "shard",
                format!("{}/{}", self.shard.index, self.shard.count),
                "need 0 <= I < N",
            ));
        }
        Ok(())
    }

    /// The metadata this plan writes.
    pub fn meta(&self) -> VersionMeta {
        VersionMeta {
            version: self.version.clone(),
            items: self.items.clone(),
            top_candidates: self.top_candidates,
            top_similar: self.top_similar,
            shards: self.shard.count,
            created_at_ms: now_ms(),
        }
    }
}

const MAX_ITEMS: usize = u32::MAX as usize;

/// Refuses version names that could escape a directory or a key namespace.
pub fn validate_version(v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        && !v.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "version",
            v,
            "use 1-64 characters of [A-Za-z0-9._+-], not starting with '.'",
        ))
    }
}

/// What [`ShardWriter::finish`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinishReport {
    /// The version written.
    pub version: String,
    /// The shard completed.
    pub shard: Shard,
    /// Candidate lists written by this shard.
    pub users: u64,
    /// Similar-item lists written by this shard.
    pub items: u64,
    /// Bytes written by this shard (files, or Redis values and keys).
    pub bytes: u64,
    /// Whether this call made the version active (true for the shard that completed the set).
    pub activated: bool,
}

/// Writes one shard of one version. Nothing is visible to readers until the last shard finishes.
pub trait ShardWriter: Send {
    /// Adds the candidate list of `user_id` (best first; at most `top_candidates`; item indices
    /// below the dictionary size). Keys outside the writer's shard are refused.
    fn put_candidates(&mut self, user_id: &str, list: &[Scored]) -> Result<()>;
    /// Adds the similar-items list of `item_id`, like [`put_candidates`](Self::put_candidates).
    fn put_similar(&mut self, item_id: &str, list: &[Scored]) -> Result<()>;
    /// Publishes the version's online feature snapshot (one per version, whatever the shard:
    /// pre-computation writes it from shard 0, before [`finish`](Self::finish), so the version
    /// activates with it). Writing it again replaces it whole; readers never see part of one.
    fn put_features(&mut self, snapshot: &FeatureSnapshot) -> Result<u64>;
    /// Completes the shard (durably), and activates the version if every shard is now complete.
    fn finish(self: Box<Self>) -> Result<FinishReport>;
}

/// A read-only view of one version. Cheap to share (`Arc`), safe across threads.
pub trait Snapshot: Send + Sync {
    /// The version's metadata.
    fn meta(&self) -> &VersionMeta;
    /// The candidates of `user_id`, best first; `None` when the version has none for that user.
    fn candidates(&self, user_id: &str) -> Result<Option<Vec<Scored>>>;
    /// The neighbours of `item_id`, best first; `None` when unknown.
    fn similar(&self, item_id: &str) -> Result<Option<Vec<Scored>>>;
    /// The online feature snapshot published with the version, `None` when it has none (written
    /// without one, or by a release before snapshots existed).
    fn features(&self) -> Result<Option<FeatureSnapshot>>;
    /// The candidates of `user_id` and the user's session events in `sessions`, read together: in
    /// one round trip when both live on the same Redis server or cluster (a store and the
    /// [`RedisStore::sessions`] made from it), else one call after the other. The two results are
    /// independent, each as [`Snapshot::candidates`] and [`SessionStore::recent`] give it.
    fn candidates_with_session(
        &self,
        user_id: &str,
        sessions: &dyn SessionStore,
    ) -> (Result<Option<Vec<Scored>>>, Result<Vec<SessionEvent>>) {
        (self.candidates(user_id), sessions.recent(user_id))
    }
}

/// A candidate store: versions written by batch jobs, one of them active.
pub trait CandidateStore: Send + Sync {
    /// The URL the store was opened with.
    fn url(&self) -> String;
    /// The active version, if any.
    fn active_version(&self) -> Result<Option<String>>;
    /// Complete versions present in the store, oldest first.
    fn versions(&self) -> Result<Vec<String>>;
    /// Opens a complete version for reading; an incomplete or unknown version is `NotFound`.
    fn open_version(&self, version: &str) -> Result<Arc<dyn Snapshot>>;
    /// Starts writing one shard of a version (rewriting that shard if it exists).
    fn writer(&self, plan: &WritePlan) -> Result<Box<dyn ShardWriter>>;
    /// Makes a complete version active (atomic switch). An incomplete version is refused.
    fn activate(&self, version: &str) -> Result<()>;

    /// Opens the active version, `None` when nothing was activated yet.
    fn open_active(&self) -> Result<Option<Arc<dyn Snapshot>>> {
        match self.active_version()? {
            Some(v) => self.open_version(&v).map(Some),
            None => Ok(None),
        }
    }
}

/// Opens a store by URL: `file:DIR` (created if missing), `redis://HOST:PORT[/DB]` or
/// `redis+cluster://HOST:PORT,HOST:PORT,...`. Optionally a namespace for Redis keys after `#`
/// (`redis://127.0.0.1:6379/0#shop-a`; default `tsr`).
pub fn open_store(url: &str) -> Result<Arc<dyn CandidateStore>> {
    if let Some(dir) = url.strip_prefix("file:") {
        let dir = dir.strip_prefix("//").unwrap_or(dir);
        if dir.is_empty() {
            return Err(Error::invalid(
                "store",
                url,
                "file: needs a directory, e.g. file:out/store",
            ));
        }
        return Ok(Arc::new(FileStore::open(dir)?));
    }
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") {
        return Ok(Arc::new(RedisStore::open(url)?));
    }
    Err(Error::invalid(
        "store",
        url,
        "expected file:DIR, redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,...",
    ))
}

/// Bytes per item index for a dictionary of `items` entries: 2, 3 or 4.
pub fn id_width(items: usize) -> usize {
    if items <= 1 << 16 {
        2
    } else if items <= 1 << 24 {
        3
    } else {
        4
    }
}

/// Size of an encoded list of `len` entries with ids of `width` bytes.
pub fn encoded_len(len: usize, width: usize) -> usize {
    LIST_HEADER + len * (width + 1)
}

/// `count u16`, `first score f32`, `last score f32`.
const LIST_HEADER: usize = 2 + 4 + 4;

/// Encodes a list (best first) into `out`: `count: u16`, the first and last scores as `f32`, then
/// `count` item indices of `width` bytes (little-endian), then `count` scores as `u8` quantised
/// linearly between the first and last score. Errors on lists longer than 65,535, indices that do
/// not fit `width`, non-finite scores or scores not in descending order.
pub fn encode_list(list: &[Scored], width: usize, out: &mut Vec<u8>) -> Result<()> {
    if list.len() > usize::from(u16::MAX) {
        return Err(Error::invalid("list", list.len(), "longer than 65535 entries"));
    }
    let max_id = if width >= 4 {
        u64::from(u32::MAX)
    } else {
        (1u64 << (8 * width)) - 1
    };
    let (hi, lo) = match (list.first(), list.last()) {
        (Some(f), Some(l)) => (f.score, l.score),
        _ => (0.0, 0.0),
    };
    let mut prev = f32::INFINITY;
    for s in list {
        if !s.score.is_finite() {
            return Err(Error::invalid("score", s.score, "scores must be finite"));
        }
        if s.score > prev {
            return Err(Error::invalid("score", s.score, "lists must be sorted best first"));
        }
        if u64::from(s.item) > max_id {
            return Err(Error::invalid("item", s.item, format!("does not fit {width} bytes")));
        }
        prev = s.score;
    }
    out.reserve(encoded_len(list.len(), width));
    out.extend_from_slice(&(list.len() as u16).to_le_bytes());
    out.extend_from_slice(&hi.to_le_bytes());
    out.extend_from_slice(&lo.to_le_bytes());
    for s in list {
        out.extend_from_slice(&s.item.to_le_bytes()[..width]);
    }
    let span = hi - lo;
    for s in list {
        let q = if span > 0.0 {
            ((s.score - lo) / span * 255.0).round()
        } else {
            255.0
        };
        out.push(q.clamp(0.0, 255.0) as u8);
    }
    Ok(())
}

/// Decodes a list written by [`encode_list`]; `what` names the source in errors. Scores come back
/// within (first − last) / 510 of the written ones; the first and last exactly.
pub fn decode_list(bytes: &[u8], width: usize, what: &str) -> Result<Vec<Scored>> {
    if bytes.len() < LIST_HEADER {
        return Err(Error::corrupt(
            what,
            format!("list of {} bytes is shorter than its header", bytes.len()),
        ));
    }
    let n = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
    let need = encoded_len(n, width);
    if bytes.len() < need {
        return Err(Error::corrupt(
            what,
            format!("list of {n} entries needs {need} bytes, has {}", bytes.len()),
        ));
    }
    let f32_at = |o: usize| f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let (hi, lo) = (f32_at(2), f32_at(6));
    let ids = &bytes[LIST_HEADER..LIST_HEADER + n * width];
    let qs = &bytes[LIST_HEADER + n * width..need];
    let span = hi - lo;
    let mut out = Vec::with_capacity(n);
    // One loop per index width, so the copy of each index is a fixed-size load; the first and
    // last scores are stored exactly and patched in afterwards.
    let (base, span) = if span > 0.0 { (lo, span) } else { (hi, 0.0) };
    match width {
        1 => decode_entries::<1>(ids, qs, (base, span, hi), &mut out),
        2 => decode_entries::<2>(ids, qs, (base, span, hi), &mut out),
        3 => decode_entries::<3>(ids, qs, (base, span, hi), &mut out),
        4 => decode_entries::<4>(ids, qs, (base, span, hi), &mut out),
        _ => return Err(Error::corrupt(what, format!("index width {width} is not 1 to 4 bytes"))),
    }
    if let Some(first) = out.first_mut() {
        first.score = hi;
    }
    if n > 1 {
        out[n - 1].score = lo;
    }
    Ok(out)
}

/// The entries of a list: `W`-byte little-endian indices and their `u8` scores between `base`
/// and `base + span`, capped at `hi` (the list's first score): `lo + (hi − lo)` can round one
/// step above `hi`, which would put the second entry above the first.
fn decode_entries<const W: usize>(ids: &[u8], qs: &[u8], (base, span, hi): (f32, f32, f32), out: &mut Vec<Scored>) {
    out.extend(ids.chunks_exact(W).zip(qs).map(|(id, &q)| {
        let mut b = [0u8; 4];
        b[..W].copy_from_slice(id);
        Scored {
            item: u32::from_le_bytes(b),
            score: (base + f32::from(q) / 255.0 * span).min(hi),
        }
    }));
}

/// Checks a list against a version: indices inside the dictionary, length within `top`.
pub(crate) fn check_list(list: &[Scored], items: usize, top: u32, key: &str) -> Result<()> {
    if list.len() > top as usize {
        return Err(Error::invalid(
            "list",
            format!("{key}: {} entries", list.len()),
            format!("longer than the plan's top {top}"),
        ));
    }
    if let Some(bad) = list.iter().find(|s| s.item as usize >= items) {
        return Err(Error::invalid(
            "item",
            format!("{key}: {}", bad.item),
            format!("index outside the dictionary of {items} items"),
        ));
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(scores: &[f32]) -> Vec<Scored> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &s)| Scored {
                item: 70_000 + i as u32,
                score: s,
            })
            .collect()
    }

    #[test]
    fn codec_round_trips_ids_exactly_and_scores_within_a_quantum() {
        let l = list(&[0.9, 0.7, 0.55, 0.2, -0.1]);
        let mut buf = Vec::new();
        encode_list(&l, 3, &mut buf).unwrap();
        assert_eq!(buf.len(), encoded_len(5, 3));
        let back = decode_list(&buf, 3, "t").unwrap();
        assert_eq!(
            back.iter().map(|s| s.item).collect::<Vec<_>>(),
            l.iter().map(|s| s.item).collect::<Vec<_>>()
        );
        assert_eq!(back[0].score, 0.9);
        assert_eq!(back[4].score, -0.1);
        for (a, b) in back.iter().zip(&l) {
            assert!((a.score - b.score).abs() <= 1.0 / 510.0 + 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn decoded_scores_stay_in_order_where_lo_plus_span_rounds_above_the_first() {
        // Found by a pre-computed list: 0.18423252 + (0.43556187 − 0.18423252) rounds to
        // 0.4355619, one step above the first score, so the second entry (quantised to 255)
        // came back above the first.
        let (hi, lo) = (0.435_561_87_f32, 0.184_232_52_f32);
        assert!(lo + (hi - lo) > hi, "the case this test is about");
        let l = list(&[hi, hi, 0.3, lo]);
        let mut buf = Vec::new();
        encode_list(&l, 4, &mut buf).unwrap();
        let back = decode_list(&buf, 4, "t").unwrap();
        assert!(back.windows(2).all(|w| w[0].score >= w[1].score), "{back:?}");
        assert_eq!((back[0].score, back[1].score, back[3].score), (hi, hi, lo));
    }

    #[test]
    fn codec_handles_empty_and_constant_lists() {
        let mut buf = Vec::new();
        encode_list(&[], 2, &mut buf).unwrap();
        assert!(decode_list(&buf, 2, "t").unwrap().is_empty());
        buf.clear();
        encode_list(&list(&[0.5, 0.5]), 4, &mut buf).unwrap();
        assert_eq!(decode_list(&buf, 4, "t").unwrap()[1].score, 0.5);
    }

    #[test]
    fn codec_refuses_bad_lists_and_truncated_bytes() {
        let mut buf = Vec::new();
        assert!(encode_list(&list(&[0.1, 0.2]), 3, &mut buf).is_err(), "ascending");
        assert!(encode_list(&list(&[f32::NAN]), 3, &mut buf).is_err(), "NaN");
        assert!(
            encode_list(&list(&[0.1]), 2, &mut buf).is_err(),
            "id 70000 needs 3 bytes"
        );
        buf.clear();
        encode_list(&list(&[0.9, 0.1]), 3, &mut buf).unwrap();
        let err = decode_list(&buf[..buf.len() - 1], 3, "user u1").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("user u1"));
    }

    #[test]
    fn id_width_grows_with_the_catalogue() {
        assert_eq!(id_width(1), 2);
        assert_eq!(id_width(65_536), 2);
        assert_eq!(id_width(100_000), 3);
        assert_eq!(id_width(20_000_000), 4);
    }

    #[test]
    fn shards_parse_and_partition_keys() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        let mut counts = [0; 4];
        for k in &keys {
            let owners: Vec<u32> = (0..4).filter(|&i| Shard { index: i, count: 4 }.owns(k)).collect();
            assert_eq!(owners.len(), 1);
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
    }

    #[test]
    fn versions_are_checked() {
        for ok in ["1.0.0", "2.3.4-rc1", "v_1"] {
            validate_version(ok).unwrap();
        }
        for bad in ["", "../x", ".hidden", "a b", "x:y"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
    }
}
