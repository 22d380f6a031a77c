//! `cairn snapshot restore`: a new member's data dir built from a snapshot file, as etcdutl
//! does it for etcd.
//!
//! The file is what the Maintenance Snapshot call streams (and `etcdctl snapshot save`
//! writes): a state dump, zero padding to whole 512-byte pages, and the SHA-256 of all that.
//! The restored store keeps every key, version and lease, but none of the old cluster's Raft
//! state: the member starts a new cluster (its ids from the new --initial-cluster), and its
//! revision is moved forward (and the old revisions marked compacted), so a watcher that
//! resumes from a revision of the old cluster is told its history is gone instead of
//! silently missing events.

use std::path::Path;
use std::sync::Arc;

use cairn_mvcc::layout::{self, CF_META};
use cairn_mvcc::{open_db, DbOptions, Reader};
use sha2::{Digest, Sha256};

/// What to restore, and as which member of which new cluster.
pub struct RestoreOptions<'a> {
    pub snapshot_file: &'a Path,
    pub data_dir: &'a Path,
    pub name: &'a str,
    pub initial_cluster: &'a [(String, Vec<String>)],
    pub initial_cluster_token: &'a str,
    /// Added to the snapshot's revision.
    pub bump_revision: i64,
    /// Mark every revision up to the new one compacted.
    pub mark_compacted: bool,
}

/// Restores `opts.snapshot_file` into a new data dir; returns the new revision.
pub fn restore(opts: &RestoreOptions) -> Result<i64, String> {
    let bytes = std::fs::read(opts.snapshot_file).map_err(|e| format!("cannot read {}: {e}", opts.snapshot_file.display()))?;
    if bytes.len() < 32 + 512 || (bytes.len() - 32) % 512 != 0 {
        return Err("not a snapshot file (no trailing SHA-256 after whole pages)".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("snapshot file is corrupt: its SHA-256 does not match".into());
    }
    let Some((_, my_urls)) = opts.initial_cluster.iter().find(|(n, _)| n == opts.name) else {
        return Err(format!("couldn't find local name {:?} in the initial cluster configuration", opts.name));
    };
    if opts.data_dir.join("member").exists() {
        return Err(format!("data dir {} already holds a member; restore into a new one", opts.data_dir.display()));
    }
    let db_path = opts.data_dir.join("member").join("db");
    std::fs::create_dir_all(&db_path).map_err(|e| format!("cannot create {}: {e}", db_path.display()))?;
    let db = Arc::new(open_db(&db_path, &DbOptions::default()).map_err(|e| format!("cannot open the store: {e}"))?);
    crate::snapshot::load_snapshot(&db, body).map_err(|e| format!("cannot load the snapshot: {e}"))?;

    let meta = Reader::snapshot(&db).meta().map_err(|e| e.to_string())?;
    let revision = meta.revision + opts.bump_revision.max(0);
    let ids: Vec<u64> =
        opts.initial_cluster.iter().map(|(_, urls)| crate::member_id_for(urls, opts.initial_cluster_token)).collect();
    let member_id = crate::member_id_for(my_urls, opts.initial_cluster_token);
    let cluster_id = crate::cluster_id_for(&ids);
    let cf = db.cf_handle(CF_META).ok_or("missing meta column family")?;
    let mut batch = rocksdb::WriteBatch::default();
    // The old cluster's Raft progress, membership, ids and alarms do not carry over.
    for key in [layout::META_APPLIED, layout::META_APPLYING, layout::META_MEMBERSHIP, layout::META_ALARMS] {
        batch.delete_cf(cf, key);
    }
    batch.put_cf(cf, layout::META_MEMBER_ID, member_id.to_be_bytes());
    batch.put_cf(cf, layout::META_CLUSTER_ID, cluster_id.to_be_bytes());
    batch.put_cf(cf, layout::META_REVISION, revision.to_be_bytes());
    if opts.mark_compacted {
        batch.put_cf(cf, layout::META_COMPACT_REVISION, revision.to_be_bytes());
    }
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo).map_err(|e| format!("cannot write the store: {e}"))?;
    Ok(revision)
}
