//! Opening the RocksDB database with every column family and the options Cairn relies on.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options};

use crate::layout::COLUMN_FAMILIES;
use crate::Db;

/// Tunables of the RocksDB instance.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { block_cache_bytes: 64 << 20, write_buffer_bytes: 32 << 20 }
    }
}

/// Memtable size of the `meta` column family (see `open_db`).
const META_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Opens (creating if needed) the database at `path` with all of Cairn's column families.
pub fn open_db(path: &Path, opts: &DbOptions) -> Result<Db, rocksdb::Error> {
    let cache = Cache::new_lru_cache(opts.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);

    let cf_opts = |name: &str| {
        let mut o = Options::default();
        o.set_block_based_table_factory(&table);
        o.set_write_buffer_size(opts.write_buffer_bytes);
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        if name == crate::layout::CF_RAFT_LOG {
            // The log is appended and purged in order: no point in compressing or filtering it.
            o.set_compression_type(rocksdb::DBCompressionType::None);
        }
        if name == crate::layout::CF_KV {
            // Every put looks up the key's latest version here first. A bloom filter over the
            // memtable's keys lets a lookup of a key the memtable lacks skip the skiplist.
            o.set_memtable_prefix_bloom_ratio(0.1);
            o.set_memtable_whole_key_filtering(true);
        }
        if name == crate::layout::CF_META {
            // A handful of keys, two of them (the revision, the applied log id) rewritten with
            // every entry: a memtable keeps every one of those versions until it is flushed,
            // 26 MB of them after 30 s of puts with the full-size memtable. A small one holds
            // a few thousand versions and flushes into an SST of a few keys.
            o.set_write_buffer_size(META_WRITE_BUFFER_BYTES);
        }
        o
    };
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(2);
    db_opts.set_keep_log_file_num(3);
    // Measured when the Raft log was in RocksDB too (its appends and the state machine's
    // batches writing concurrently): a lone client's put about 0.02 ms faster.
    db_opts.set_enable_pipelined_write(true);
    // The state machine's writes are not synced: the Raft log (its own files) is, and the
    // log store syncs this WAL before it deletes log entries (cairn-raft's log_store.rs).
    let cfs = COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_opts(name)));
    Db::open_cf_descriptors(&db_opts, path, cfs)
}
