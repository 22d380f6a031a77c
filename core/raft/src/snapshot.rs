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
    // Clear the current state first.
    for name in STATE_COLUMN_FAMILIES {
        let handle = cf(db, name)?;
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(handle, IteratorMode::Start) {
            let (k, _) = item.map_err(io::Error::other)?;
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
        batch.put_cf(cf(db, name)?, key, value);
        if batch.size_in_bytes() > LOAD_BATCH_BYTES {
            db.write(std::mem::take(&mut batch)).map_err(io::Error::other)?;
        }
    }
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts).map_err(io::Error::other)
}
