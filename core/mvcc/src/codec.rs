//! Value encodings of the MVCC column families (postcard: compact, serde-derived, stable).

use cairn_api::KeyValue;
use serde::{Deserialize, Serialize};

use crate::error::{MvccError, Result};

/// One version of a key, as `kv` (latest) and `history` store it; the key itself is in the
/// record's RocksDB key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Version {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// A delete: the key had no live version from `mod_revision` on.
    pub tombstone: bool,
}

impl Version {
    pub fn from_kv(kv: &KeyValue) -> Self {
        Version {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
            value: kv.value.clone(),
            tombstone: false,
        }
    }

    pub fn tombstone(mod_revision: i64) -> Self {
        Version {
            create_revision: 0,
            mod_revision,
            version: 0,
            lease: 0,
            value: Vec::new(),
            tombstone: true,
        }
    }

    pub fn into_kv(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value,
            lease: self.lease,
        }
    }
}

/// What the `revisions` column family records of one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub tombstone: bool,
}

/// A granted lease, as `leases` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The granted TTL in seconds.
    pub ttl: i64,
    /// Wall-clock deadline (ms since the Unix epoch) as decided by the member that proposed the
    /// grant or the last renewal; part of the replicated state, so every member agrees on it and
    /// it survives restarts and leader changes. Renewals the leader answers from memory move
    /// the deadline only there (see `cairn_raft`'s lease renewals), not here.
    pub deadline_ms: i64,
    /// Renewed at least once by a keep-alive. Such a lease is renewed by the leader in memory
    /// from then on, and a new leader gives it its full TTL again; a lease never kept alive
    /// ends exactly at `deadline_ms`, across restarts and leader changes.
    pub kept_alive: bool,
}

impl LeaseRecord {
    /// Reads a stored record, including those written before `kept_alive` existed.
    pub(crate) fn decode(bytes: &[u8]) -> Result<LeaseRecord> {
        match postcard::from_bytes::<LeaseRecord>(bytes) {
            Ok(record) => Ok(record),
            Err(postcard::Error::DeserializeUnexpectedEnd) => {
                let (ttl, deadline_ms): (i64, i64) = decode(bytes, "lease")?;
                Ok(LeaseRecord { ttl, deadline_ms, kept_alive: false })
            }
            Err(e) => Err(MvccError::Corrupt(format!("lease: {e}"))),
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on writer errors, and a Vec writer cannot fail.
    postcard::to_stdvec(value).expect("encoding into a Vec cannot fail")
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| MvccError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn encode_i64(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

pub(crate) fn decode_i64(bytes: &[u8], what: &str) -> Result<i64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| MvccError::Corrupt(format!("{what}: {} bytes, want 8", bytes.len())))?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Version`] as it was before its value was marked `serde_bytes`: data written then must
    /// read the same now, and the other way round.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct PlainVersion {
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        lease: i64,
        value: Vec<u8>,
        tombstone: bool,
    }

    #[test]
    fn byte_strings_encode_as_before() {
        let value: Vec<u8> = (0..=255u8).chain(0..44).collect();
        let v = Version { create_revision: 3, mod_revision: 9, version: 2, lease: 7, value: value.clone(), tombstone: false };
        let plain = PlainVersion { create_revision: 3, mod_revision: 9, version: 2, lease: 7, value, tombstone: false };
        assert_eq!(encode(&v), encode(&plain));
        let back: Version = decode(&encode(&plain), "version").unwrap();
        assert_eq!(back, v);
        let put = cairn_api::PutRequest { key: b"k\x00\xff".to_vec(), value: vec![1, 2, 3], ..Default::default() };
        let old_put = (b"k\x00\xff".to_vec(), vec![1u8, 2, 3]);
        let encoded = encode(&put);
        assert!(encoded.starts_with(&encode(&old_put)), "key and value lead the put, encoded as a plain list");
    }
}
