//! The online feature snapshot: what serving needs from the offline data, published into the store
//! with a version's candidates (the ADR's online feature store).
//!
//! Pre-computation folds every event of the dataset into a [`FeatureEngine`] (exactly as
//! `recsys-train features` does) and writes it, with the catalogue and user attributes serving
//! reads, as one checksummed blob ([`ShardWriter::put_features`](super::ShardWriter::put_features)).
//! A serving replica reads it back ([`Snapshot::features`](super::Snapshot::features)) and keeps it
//! current with the events it receives: it needs no dataset directory and no Parquet reader.
//!
//! Encoding: `TSRFEAT1` (8 bytes), the payload's length (u64 LE) and CRC-32 (u32 LE), then the
//! payload in postcard (a compact serde format). A blob that fails any check is
//! [`Error::Corrupt`].

use crate::features::FeatureEngine;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"TSRFEAT1";
const HEADER: usize = 8 + 8 + 4;

/// Everything the serving side takes from the dataset, as of the end of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSnapshot {
    /// The cut-off the state covers: one millisecond after the newest event folded in.
    pub as_of_ms: i64,
    /// User ids by dense index (the engine's user index).
    pub user_ids: Vec<String>,
    /// Item ids by dense index (the engine's item index and the catalogue's).
    pub item_ids: Vec<String>,
    /// Category names by code (the engine's category codes).
    pub categories: Vec<String>,
    /// Brand code per item.
    pub brand_codes: Vec<Option<u32>>,
    /// Brand names by code.
    pub brands: Vec<String>,
    /// Title per item.
    pub titles: Vec<Option<String>>,
    /// In-stock flag per item (`None`: the catalogue has no stock figures).
    pub in_stock: Option<Vec<bool>>,
    /// Age bucket per user.
    pub user_age: Vec<Option<String>>,
    /// Region per user.
    pub user_region: Vec<Option<String>>,
    /// The feature state of every user and item.
    pub engine: FeatureEngine,
}

impl FeatureSnapshot {
    /// Checks that the per-user and per-item columns agree in length with the id lists.
    pub fn validate(&self) -> Result<()> {
        let (users, items) = (self.user_ids.len(), self.item_ids.len());
        for (field, len, want) in [
            ("brand_codes", self.brand_codes.len(), items),
            ("titles", self.titles.len(), items),
            ("user_age", self.user_age.len(), users),
            ("user_region", self.user_region.len(), users),
            ("engine.items", self.engine.num_items(), items),
            ("in_stock", self.in_stock.as_ref().map_or(items, Vec::len), items),
        ] {
            if len != want {
                return Err(Error::invalid(
                    field,
                    len,
                    format!("the snapshot has {users} users and {items} items"),
                ));
            }
        }
        if self.engine.num_users() > users {
            return Err(Error::invalid(
                "engine.users",
                self.engine.num_users(),
                format!("more feature states than the {users} user ids"),
            ));
        }
        Ok(())
    }

    /// The checksummed encoding (see the module documentation).
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let payload = postcard::to_stdvec(self).map_err(|e| Error::Internal(format!("feature snapshot: {e}")))?;
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes and checks a blob written by [`FeatureSnapshot::encode`]; `what` names it in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(what, "not a feature snapshot (bad magic or too short)"));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let payload = &bytes[HEADER..];
        if payload.len() != len {
            return Err(Error::corrupt(
                what,
                format!("payload of {} bytes, the header says {len} (truncated?)", payload.len()),
            ));
        }
        if crc32fast::hash(payload) != crc {
            return Err(Error::corrupt(what, "checksum mismatch"));
        }
        let snap: FeatureSnapshot =
            postcard::from_bytes(payload).map_err(|e| Error::corrupt(what, format!("undecodable payload: {e}")))?;
        snap.validate().map_err(|e| Error::corrupt(what, e.to_string()))?;
        Ok(snap)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::features::{FeatureConfig, FeatureEvent, ItemCatalog};
    use crate::schema::EventType;

    /// A small snapshot with state in every part: 3 users, 4 items, events of several types.
    pub(crate) fn sample() -> FeatureSnapshot {
        let catalog = ItemCatalog::new(
            vec![Some(0), Some(1), None, Some(0)],
            vec![Some(10.0), Some(25.5), None, Some(3.0)],
            vec![None, Some(4.5), None, None],
        );
        let mut engine = FeatureEngine::new(FeatureConfig::default(), catalog).expect("engine");
        let events = [
            (0, 1, EventType::View, 1_000),
            (0, 1, EventType::Purchase, 2_000),
            (1, 3, EventType::Click, 3_000),
            (2, 0, EventType::AddToCart, 4_000),
        ];
        for (u, i, t, ts) in events {
            engine.ingest(&FeatureEvent::new(
                u,
                i,
                t,
                ts,
                Some(9.5),
                Some(2),
                Some("s1"),
                Some(4.0),
            ));
        }
        FeatureSnapshot {
            as_of_ms: 4_001,
            user_ids: vec!["u0".into(), "u1".into(), "u2".into()],
            item_ids: vec!["i0".into(), "i1".into(), "i2".into(), "i3".into()],
            categories: vec!["tv".into(), "audio".into()],
            brand_codes: vec![Some(0), None, Some(0), None],
            brands: vec!["acme".into()],
            titles: vec![Some("A TV".into()), None, None, Some("Ünïcode".into())],
            in_stock: Some(vec![true, false, true, true]),
            user_age: vec![Some("25-34".into()), None, None],
            user_region: vec![None, Some("north".into()), None],
            engine,
        }
    }

    #[test]
    fn snapshots_round_trip_exactly() {
        let snap = sample();
        let bytes = snap.encode().unwrap();
        let back = FeatureSnapshot::decode(&bytes, "test").unwrap();
        assert_eq!(back, snap);
        // The engine answers the same after the trip.
        let a = snap.engine.user_features(0, 5_000).unwrap();
        let b = back.engine.user_features(0, 5_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            snap.engine.item_features(1, 5_000).unwrap(),
            back.engine.item_features(1, 5_000).unwrap()
        );
    }

    #[test]
    fn damaged_blobs_are_refused_as_corrupt() {
        let bytes = sample().encode().unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        for (bad, why) in [
            (&bytes[..bytes.len() - 3], "truncated"),
            (&bytes[..10], "too short"),
            (&flipped[..], "checksum"),
            (&b"TSRCAND1xxxxxxxxxxxxxxxxxxxx"[..], "magic"),
        ] {
            match FeatureSnapshot::decode(bad, "features.bin") {
                Err(Error::Corrupt { what, .. }) => assert_eq!(what, "features.bin", "{why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn inconsistent_columns_are_refused() {
        let mut snap = sample();
        snap.titles.pop();
        match snap.encode() {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "titles"),
            other => panic!("{other:?}"),
        }
    }
}
