//! etcd v3 multi-version semantics over RocksDB, deterministic and free of Raft and clocks.
//!
//! The Raft state machine hands every committed command to [`Applier`], which turns it into one
//! RocksDB write batch (plus whatever the caller adds, such as the applied log id), and readers
//! use [`Reader`] on a consistent RocksDB snapshot. The on-disk layout is in [`layout`]; it keeps
//! the latest version of every live key in its own column family, so a current read never scans
//! history and a restart rebuilds nothing in memory.

mod apply;
pub mod auth;
mod codec;
mod compact;
mod error;
pub mod layout;
mod meta_cache;
mod read;
mod storage;
mod validate;

pub use apply::{read_only_txn, Applier, ApplyOutcome, WriteCommand};
pub use codec::LeaseRecord;
pub use error::MvccError;
pub use meta_cache::MetaCache;
pub use read::{KeySpan, Reader, StoreMeta};
pub use storage::{open_db, DbOptions};
pub use validate::{check_range, check_txn, check_put, check_delete, Limits};

/// The RocksDB handle type used throughout Cairn (column families created at open).
pub type Db = rocksdb::DB;
