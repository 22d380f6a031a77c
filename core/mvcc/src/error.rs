//! Errors of the MVCC layer: either the client's (a [`StoreError`] the adapters map to their
//! protocol) or the storage's (the node cannot go on applying).

use cairn_api::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The request is refused by etcd's rules; nothing was changed.
    #[error(transparent)]
    Request(#[from] StoreError),
    /// RocksDB failed.
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    /// Bytes on disk that do not decode: the data dir is damaged or from another version.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<MvccError> for StoreError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Request(e) => e,
            other => StoreError::Internal(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, MvccError>;
