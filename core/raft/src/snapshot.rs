//! Snapshot files: a dump of the state-machine column families taken on one RocksDB snapshot,
//! and loading such a dump in place of the current state.
//!
//! Format: the magic `CAIRNSNAP1`, then records `cf index (u8), key length (u32 LE), key,
//! value length (u32 LE), value`, ended by the byte 0xff. The applied log id and membership
//! travel inside the dumped `meta` column family and in openraft's snapshot meta.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use cairn_mvcc::layout::{self, STATE_COLUMN_FAMILIES};
use cairn_mvcc::Db;
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::types::{LogId, StoredMembership};

const MAGIC: &[u8] = b"CAIRNSNAP1";
const END: u8 = 0xff;
/// Flush a load batch once it holds this many bytes.
const LOAD_BATCH_BYTES: usize = 8 << 20;

fn cf<'a>(db: &'a Db, name: &str) -> io::Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| io::Error::other(format!("missing column family {name}")))
}

/// Writes a dump of the state to `path`; returns the applied log id and membership it holds.
pub(crate) fn write_snapshot(db: &Db, path: &Path) -> io::Result<(Option<LogId>, StoredMembership)> {
    let snap = db.snapshot();
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(MAGIC)?;
    for (i, name) in STATE_COLUMN_FAMILIES.iter().enumerate() {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        for item in db.iterator_cf_opt(cf(db, name)?, opts, IteratorMode::Start) {
            let (k, v) = item.map_err(io::Error::other)?;
            out.write_all(&[i as u8])?;
            out.write_all(&(k.len() as u32).to_le_bytes())?;
            out.write_all(&k)?;
            out.write_all(&(v.len() as u32).to_le_bytes())?;
            out.write_all(&v)?;
        }
    }
    out.write_all(&[END])?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let meta_cf = cf(db, layout::CF_META)?;
    let decode = |key: &[u8]| -> io::Result<Option<Vec<u8>>> { snap.get_cf(meta_cf, key).map_err(io::Error::other) };
    let applied = match decode(layout::META_APPLIED)? {
        Some(b) => postcard::from_bytes(&b).map_err(io::Error::other)?,
        None => None,
    };
    let membership = match decode(layout::META_MEMBERSHIP)? {
        Some(b) => postcard::from_bytes(&b).map_err(io::Error::other)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// Meta keys that describe this member rather than the replicated state: a snapshot from
/// another member must not overwrite them.
fn is_local(key: &[u8]) -> bool {
    key == layout::META_MEMBER_ID || key == layout::META_CLUSTER_ID
}

fn read_u32(r: &mut impl Read) -> io::Result<usize> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b) as usize)
}

/// Replaces the state with the dump read from `reader`.
pub(crate) fn load_snapshot(db: &Db, reader: impl Read) -> io::Result<()> {
    let mut r = BufReader::new(reader);
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(io::Error::other("not a Cairn snapshot"));
    }
    // Clear the current state first (but for what belongs to this member alone).
    for name in STATE_COLUMN_FAMILIES {
        let handle = cf(db, name)?;
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(handle, IteratorMode::Start) {
            let (k, _) = item.map_err(io::Error::other)?;
            if name == layout::CF_META && is_local(&k) {
                continue;
            }
            batch.delete_cf(handle, k);
            if batch.size_in_bytes() > LOAD_BATCH_BYTES {
                db.write(std::mem::take(&mut batch)).map_err(io::Error::other)?;
            }
        }
        db.write(batch).map_err(io::Error::other)?;
    }
    let mut batch = WriteBatch::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let name = STATE_COLUMN_FAMILIES
            .get(tag[0] as usize)
            .ok_or_else(|| io::Error::other("bad column family in snapshot"))?;
        let mut key = vec![0u8; read_u32(&mut r)?];
        r.read_exact(&mut key)?;
        let mut value = vec![0u8; read_u32(&mut r)?];
        r.read_exact(&mut value)?;
        if *name == layout::CF_META && is_local(&key) {
            // The sender's own ids: this member keeps its own.
            continue;
        }
        batch.put_cf(cf(db, name)?, key, value);
        if batch.size_in_bytes() > LOAD_BATCH_BYTES {
            db.write(std::mem::take(&mut batch)).map_err(io::Error::other)?;
        }
    }
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts).map_err(io::Error::other)
}

/// Bytes per message of a client snapshot stream (etcd sends 32 KiB).
const CLIENT_CHUNK: usize = 32 * 1024;

/// Streams the dump at `path` to a client in chunks, zero-padded to a multiple of 512 bytes
/// (etcd's clients check that a snapshot is whole pages plus the checksum; the loader stops at
/// the end marker, so the padding is ignored), then one last chunk holding the SHA-256 of
/// everything before it (as etcd's Snapshot RPC does). Removes the file when done.
pub(crate) fn stream_file(path: std::path::PathBuf, header: cairn_api::ResponseHeader) -> cairn_api::SnapshotStream {
    use sha2::{Digest, Sha256};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let send = |item| tx.blocking_send(item).is_ok();
        let result = (|| -> io::Result<()> {
            let mut file = File::open(&path)?;
            let size = file.metadata()?.len();
            let total = size.div_ceil(512) * 512;
            let mut sent = 0u64;
            let mut hasher = Sha256::new();
            loop {
                let mut buf = vec![0u8; CLIENT_CHUNK];
                let mut n = file.read(&mut buf)?;
                if n == 0 {
                    // The padding, after the file's bytes.
                    n = (total - sent).min(CLIENT_CHUNK as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    buf.iter_mut().for_each(|b| *b = 0);
                }
                buf.truncate(n);
                hasher.update(&buf);
                sent += n as u64;
                let chunk = cairn_api::SnapshotChunk { header: header.clone(), remaining_bytes: total - sent + 32, blob: buf };
                if !send(Ok(chunk)) {
                    return Ok(());
                }
            }
            let digest = hasher.finalize().to_vec();
            send(Ok(cairn_api::SnapshotChunk { header: header.clone(), remaining_bytes: 0, blob: digest }));
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(cairn_api::StoreError::Internal(format!("reading the snapshot: {e}"))));
        }
        let _ = std::fs::remove_file(&path);
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
