//! The Raft log's own files: segments written in place and fsynced, outside RocksDB.
//!
//! Why not RocksDB: its WAL file grows with every write, so each fsync also had to write the
//! file's inode, a second dependent disk write (measured here: 0.20 ms per fsync, against
//! 0.08 ms for the data alone; etcd's fsync costs it 0.06 ms). And every entry went through a
//! memtable, a flush and compactions only to be deleted soon after.
//!
//! A segment is zero-filled ahead of the writes, a MiB at a time, so an append overwrites
//! blocks the filesystem already holds as written data, and its fsync writes only the appended
//! bytes. Not `fallocate` (what etcd's WAL uses): ext4 and XFS keep fallocated space as
//! *unwritten* extents, and the first write into each block converts it, a metadata change that
//! makes the next `fdatasync` commit the filesystem's journal too. Measured here, 8 KiB appends
//! (a batch of puts under load) each followed by `fdatasync`: p50 0.14 ms into fallocated space,
//! as slow as growing the file, against 0.10 ms into zeroes written beforehand; one node's puts
//! at 100 clients, its server on a core of its own: 22.9-24.8k/s against 19.0-20.9k/s. The zeroes
//! cost a second write of the log's bytes, and the append that crosses into a new stretch also
//! writes the next MiB of zeroes (about 1.3 ms here) before its fsync.
//!
//! Layout: `member/wal/<index of the first entry, 20 digits>.log`. A segment is a run of
//! records `payload length (u32 LE) | crc32 (u32 LE) | index (u64 LE) | term (u64 LE) |
//! payload`, the checksum over index, term and payload; a zero length (the zeros past the last
//! record) ends it. Each segment continues the one before, and only the last is written to.
//!
//! Crash safety:
//! - An append is acknowledged after `fdatasync`. A torn append leaves a record that is not
//!   whole or fails its checksum: opening reads the last segment up to there, and zeroes every
//!   byte written after that point, so no stale bytes can line up behind a later, shorter record
//!   and read as valid. A record must also carry the next index and a term no lower than the
//!   one before it.
//! - Truncation deletes later segments newest first, then zeroes the cut-off bytes and syncs; a
//!   crash part way leaves an older, consistent log (the truncation is redone by the leader).
//! - Purging deletes whole segments oldest first, so what remains always starts a run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment takes no more appends once it holds this many bytes (a bigger append gets a
/// segment of its own).
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Zeroes written ahead of the records at a time: the append that crosses into a new stretch
/// writes them (and the file's new size) with its own fsync.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;
const HEADER_BYTES: usize = 24;
const ZEROES: [u8; 64 << 10] = [0; 64 << 10];

/// One record to append.
pub(crate) struct Record<'a> {
    pub index: u64,
    pub term: u64,
    pub payload: &'a [u8],
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
    /// Where each entry's record starts, entry `first + i` at `offsets[i]`. For a sealed
    /// segment (not the last) found on opening, filled on its first read.
    offsets: Option<Vec<u64>>,
    /// Entries held; known for sealed segments from the next segment's first index.
    count: u64,
    /// Bytes used by records (where the next append goes).
    end: u64,
    /// Bytes of the file (records and the zeroes written after them).
    allocated: u64,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (self.count > 0).then(|| self.first + self.count - 1)
    }

    /// Walks the record headers of a sealed segment (fully written and fsynced) once.
    fn offsets(&mut self) -> io::Result<&[u64]> {
        if self.offsets.is_none() {
            let mut offsets = Vec::with_capacity(self.count as usize);
            let mut at = 0u64;
            let mut header = [0u8; HEADER_BYTES];
            for i in 0..self.count {
                self.file.read_exact_at(&mut header, at)?;
                let h = Header::decode(&header);
                if h.len == 0 || h.index != self.first + i {
                    return Err(corrupt(&self.path, at, "record missing from a sealed segment"));
                }
                offsets.push(at);
                at += h.record_bytes();
            }
            self.end = at;
            self.offsets = Some(offsets);
        }
        Ok(self.offsets.as_deref().unwrap_or_default())
    }
}

/// The log's segments, in order; each continues the one before.
pub(crate) struct LogFiles {
    dir: PathBuf,
    segments: Vec<Segment>,
    segment_bytes: u64,
    /// Entries up to here are purged: never read, though their segment may still hold them.
    purged: Option<u64>,
}

/// What precedes each entry's payload: its length and checksum, the entry's index and term.
struct Header {
    len: u32,
    crc: u32,
    index: u64,
    term: u64,
}

impl Header {
    fn for_record(r: &Record<'_>) -> io::Result<Self> {
        let len = u32::try_from(r.payload.len()).map_err(|_| io::Error::other("log entry over 4 GiB"))?;
        Ok(Header { len, crc: checksum(r.index, r.term, r.payload), index: r.index, term: r.term })
    }

    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.crc.to_le_bytes());
        b[8..16].copy_from_slice(&self.index.to_le_bytes());
        b[16..24].copy_from_slice(&self.term.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        Header { len: u32_at(0), crc: u32_at(4), index: u64_at(8), term: u64_at(16) }
    }

    /// Bytes of the whole record, header included.
    fn record_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + u64::from(self.len)
    }

    fn checks(&self, payload: &[u8]) -> bool {
        checksum(self.index, self.term, payload) == self.crc
    }
}

fn corrupt(path: &Path, at: u64, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what} at byte {at}", path.display()))
}

fn checksum(index: u64, term: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&term.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes zeroes over `[from, to)` of `file`.
fn zero(file: &File, from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROES.len() as u64) as usize;
        file.write_all_at(&ZEROES[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

impl LogFiles {
    /// Opens the segments in `dir` (creating it if needed), checking the last one record by
    /// record and cleaning up after a torn append.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    pub(crate) fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for item in fs::read_dir(dir)? {
            let name = item?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments = Vec::with_capacity(firsts.len());
        for (i, &first) in firsts.iter().enumerate() {
            let path = dir.join(segment_name(first));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let allocated = file.metadata()?.len();
            let count = match firsts.get(i + 1) {
                Some(&next) => next - first,
                None => 0,
            };
            segments.push(Segment { first, path, file, offsets: None, count, end: 0, allocated });
        }
        let mut files = LogFiles { dir: dir.to_path_buf(), segments, segment_bytes, purged: None };
        if let Some(last) = files.segments.last_mut() {
            recover_last(last)?;
        }
        Ok(files)
    }

    /// Index of the first entry held, if any.
    #[cfg(test)]
    pub(crate) fn first_index(&self) -> Option<u64> {
        let first = self.segments.iter().find(|s| s.count > 0).map(|s| s.first)?;
        let first = first.max(self.purged.map_or(0, |p| p + 1));
        (Some(first) <= self.last_index()).then_some(first)
    }

    /// Index of the last entry held, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last)
    }

    /// Appends `records` (consecutive indexes) and fsyncs before returning. A first index past
    /// the next one restarts the log there (the caller does that only once every entry held is
    /// purged). Returns the bytes written.
    pub(crate) fn append(&mut self, records: &[Record<'_>]) -> io::Result<usize> {
        let Some(head) = records.first() else { return Ok(0) };
        if let Some(last) = self.last_index() {
            if head.index <= last {
                return Err(io::Error::other(format!("append at {} over the log's last entry {last}", head.index)));
            }
            if head.index > last + 1 {
                self.remove_all()?;
            }
        }
        // An empty segment (left by a crash right after it was made) must start where this
        // append does.
        if self.segments.last().is_some_and(|s| s.count == 0 && s.first != head.index) {
            if let Some(seg) = self.segments.pop() {
                fs::remove_file(&seg.path)?;
                sync_dir(&self.dir)?;
            }
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| HEADER_BYTES + r.payload.len()).sum());
        let mut lengths = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if r.index != head.index + i as u64 {
                return Err(io::Error::other("appended entries are not consecutive"));
            }
            let header = Header::for_record(r)?;
            buf.extend_from_slice(&header.encode());
            buf.extend_from_slice(r.payload);
            lengths.push(header.record_bytes());
        }
        let needs_new = match self.segments.last() {
            None => true,
            Some(s) => s.count > 0 && s.end + buf.len() as u64 > self.segment_bytes,
        };
        if needs_new {
            self.start_segment(head.index)?;
        }
        let seg = self.segments.last_mut().ok_or_else(|| io::Error::other("no segment to append to"))?;
        let new_end = seg.end + buf.len() as u64;
        seg.file.write_all_at(&buf, seg.end)?;
        if new_end > seg.allocated {
            // Past the zeroes: the next stretch goes behind these records, synced with them.
            let target = (new_end / ZERO_AHEAD_BYTES + 1) * ZERO_AHEAD_BYTES;
            zero(&seg.file, new_end, target)?;
            seg.allocated = target;
        }
        seg.file.sync_data()?;
        let offsets = seg.offsets.get_or_insert_with(Vec::new);
        let mut at = seg.end;
        for len in lengths {
            offsets.push(at);
            at += len;
        }
        seg.count += records.len() as u64;
        seg.end = new_end;
        Ok(buf.len())
    }

    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = self.dir.join(segment_name(first));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        zero(&file, 0, ZERO_AHEAD_BYTES)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        let seg = Segment { first, path, file, offsets: Some(Vec::new()), count: 0, end: 0, allocated: ZERO_AHEAD_BYTES };
        self.segments.push(seg);
        Ok(())
    }

    fn remove_all(&mut self) -> io::Result<()> {
        while let Some(seg) = self.segments.pop() {
            fs::remove_file(&seg.path)?;
        }
        sync_dir(&self.dir)
    }

    /// The payloads of entries `start..=end` that the log holds, in order.
    pub(crate) fn read(&mut self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let start = start.max(self.purged.map_or(0, |p| p + 1));
        let mut out = Vec::new();
        if start > end {
            return Ok(out);
        }
        for seg in &mut self.segments {
            let Some(last) = seg.last() else { continue };
            if last < start || seg.first > end {
                continue;
            }
            let (from, to) = (start.max(seg.first), end.min(last));
            let (first, path) = (seg.first, seg.path.clone());
            let offsets = seg.offsets()?;
            let (a, b) = ((from - first) as usize, (to - first) as usize);
            let region_start = offsets[a];
            let region_end = offsets.get(b + 1).copied().unwrap_or(seg.end);
            let mut region = vec![0u8; (region_end - region_start) as usize];
            seg.file.read_exact_at(&mut region, region_start)?;
            let mut at = 0usize;
            for index in from..=to {
                let cut_short = || corrupt(&path, region_start + at as u64, "record cut short");
                let header = region.get(at..at + HEADER_BYTES).and_then(|b| b.try_into().ok()).ok_or_else(cut_short)?;
                let h = Header::decode(header);
                let payload = region.get(at + HEADER_BYTES..at + h.record_bytes() as usize).ok_or_else(cut_short)?;
                if h.index != index || !h.checks(payload) {
                    return Err(corrupt(&path, region_start + at as u64, "record fails its checksum"));
                }
                out.push((index, payload.to_vec()));
                at += h.record_bytes() as usize;
            }
        }
        Ok(out)
    }

    /// Removes the entries at and after `index`, durably.
    pub(crate) fn truncate(&mut self, index: u64) -> io::Result<()> {
        let mut removed = false;
        while self.segments.last().is_some_and(|s| s.first >= index) {
            if let Some(seg) = self.segments.pop() {
                fs::remove_file(&seg.path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        let Some(seg) = self.segments.last_mut() else { return Ok(()) };
        let Some(last) = seg.last() else { return Ok(()) };
        if index > last {
            return Ok(());
        }
        let keep = (index - seg.first) as usize;
        let cut = seg.offsets()?[keep];
        zero(&seg.file, cut, seg.end)?;
        seg.file.sync_data()?;
        if let Some(offsets) = seg.offsets.as_mut() {
            offsets.truncate(keep);
        }
        seg.count = keep as u64;
        seg.end = cut;
        Ok(())
    }

    /// Forgets the entries at and before `index`: deletes the segments that hold nothing else
    /// (a segment holding later entries too is kept whole, its purged entries unread).
    pub(crate) fn purge(&mut self, index: u64) -> io::Result<()> {
        self.purged = self.purged.max(Some(index));
        let doomed = self.segments.iter().take_while(|s| s.last().is_none_or(|l| l <= index) && s.first <= index).count();
        if doomed == 0 {
            return Ok(());
        }
        for seg in self.segments.drain(..doomed) {
            fs::remove_file(&seg.path)?;
        }
        sync_dir(&self.dir)
    }
}

/// Reads the last segment record by record up to the first one that is not whole and valid,
/// and zeroes whatever was written after that (a torn append).
fn recover_last(seg: &mut Segment) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, &seg.file);
    let mut offsets = Vec::new();
    let (mut at, mut prev_term) = (0u64, 0u64);
    let mut header = [0u8; HEADER_BYTES];
    let mut payload = Vec::new();
    loop {
        if at + HEADER_BYTES as u64 > seg.allocated || reader.read_exact(&mut header).is_err() {
            break;
        }
        let h = Header::decode(&header);
        let expected = seg.first + offsets.len() as u64;
        if h.len == 0 || h.index != expected || h.term < prev_term || at + h.record_bytes() > seg.allocated {
            break;
        }
        payload.resize(h.len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || !h.checks(&payload) {
            break;
        }
        offsets.push(at);
        at += h.record_bytes();
        prev_term = h.term;
    }
    drop(reader);
    seg.count = offsets.len() as u64;
    seg.offsets = Some(offsets);
    seg.end = at;
    // Anything not zero past the end is a torn append's: clear it, or a later record of the
    // same length could make the bytes after it look like records again.
    let mut dirty_to = None;
    let mut chunk = vec![0u8; 1 << 20];
    let mut pos = at;
    while pos < seg.allocated {
        let n = (seg.allocated - pos).min(chunk.len() as u64) as usize;
        seg.file.read_exact_at(&mut chunk[..n], pos)?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b != 0) {
            dirty_to = Some(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    if let Some(to) = dirty_to {
        zero(&seg.file, at, to)?;
        seg.file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: u64, term: u64, payload: &[u8]) -> Record<'_> {
        Record { index, term, payload }
    }

    fn indexes(files: &mut LogFiles, start: u64, end: u64) -> Vec<u64> {
        files.read(start, end).expect("read").into_iter().map(|(i, _)| i).collect()
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("entry {i} {}", "x".repeat((i % 7) as usize * 10)).into_bytes()
    }

    fn append_range(files: &mut LogFiles, from: u64, to: u64, term: u64) {
        let payloads: Vec<Vec<u8>> = (from..=to).map(payload).collect();
        let records: Vec<Record<'_>> = (from..=to).zip(&payloads).map(|(i, p)| rec(i, term, p)).collect();
        files.append(&records).expect("append");
    }

    /// The space ahead of the records is zeroes written to disk, neither a hole nor fallocated
    /// space, whose unwritten extents make every append's fsync commit the filesystem journal
    /// too (see the module doc). ext4 and XFS report unwritten extents as holes to SEEK_HOLE.
    #[test]
    fn the_space_ahead_of_the_records_is_written_zeroes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = LogFiles::open(dir.path()).expect("open");
        append_range(&mut files, 1, 3, 1);
        // One append crosses into the next stretch of zeroes.
        let big = vec![7u8; ZERO_AHEAD_BYTES as usize];
        files.append(&[rec(4, 1, &big)]).expect("append");
        append_range(&mut files, 5, 6, 1);
        let seg = files.segments.last().expect("a segment");
        let len = seg.file.metadata().expect("metadata").len();
        assert_eq!(len, seg.allocated);
        assert!(len > seg.end + 1000, "zeroes follow the records: {len} bytes, records end at {}", seg.end);
        let hole = rustix::fs::seek(&seg.file, rustix::fs::SeekFrom::Hole(0)).expect("SEEK_HOLE");
        assert_eq!(hole, len, "the first hole (or unwritten extent) must be the end of the file");
        let mut tail = vec![1u8; (len - seg.end) as usize];
        seg.file.read_exact_at(&mut tail, seg.end).expect("read the tail");
        assert!(tail.iter().all(|&b| b == 0), "the bytes past the records read as zero");
        drop(files);
        let mut files = LogFiles::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut files, 1, 7), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn appended_entries_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = LogFiles::open_with(dir.path(), 300).expect("open");
        assert_eq!(files.last_index(), None);
        for i in 1..=40 {
            append_range(&mut files, i, i, 1);
        }
        assert!(files.segments.len() > 3, "small segments rotate: {}", files.segments.len());
        assert_eq!(files.read(5, 7).expect("read"), vec![(5, payload(5)), (6, payload(6)), (7, payload(7))]);
        drop(files);
        let mut files = LogFiles::open_with(dir.path(), 300).expect("reopen");
        assert_eq!((files.first_index(), files.last_index()), (Some(1), Some(40)));
        assert_eq!(indexes(&mut files, 0, u64::MAX), (1..=40).collect::<Vec<_>>());
        assert_eq!(files.read(33, 33).expect("read"), vec![(33, payload(33))]);
        append_range(&mut files, 41, 45, 2);
        assert_eq!(indexes(&mut files, 38, 100), (38..=45).collect::<Vec<_>>());
    }

    #[test]
    fn truncation_and_purge_keep_a_contiguous_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = LogFiles::open_with(dir.path(), 300).expect("open");
        append_range(&mut files, 1, 30, 1);
        for i in 31..=60 {
            append_range(&mut files, i, i, 1);
        }
        files.truncate(45).expect("truncate");
        assert_eq!(files.last_index(), Some(44));
        append_range(&mut files, 45, 50, 2);
        files.purge(40).expect("purge");
        let first = files.first_index().expect("entries left");
        assert!(first <= 41, "entries after the purge point stay: first {first}");
        drop(files);
        let mut files = LogFiles::open_with(dir.path(), 300).expect("reopen");
        assert_eq!(files.last_index(), Some(50));
        assert_eq!(indexes(&mut files, 41, 100), (41..=50).collect::<Vec<_>>());
        // A truncated entry never comes back, even where a new record of the same size sits
        // in front of the cut-off ones.
        files.truncate(48).expect("truncate");
        append_range(&mut files, 48, 48, 3);
        drop(files);
        let mut files = LogFiles::open_with(dir.path(), 300).expect("reopen");
        assert_eq!(files.last_index(), Some(48));
        // Purging everything, then appending further on, starts the log over there.
        files.purge(48).expect("purge");
        assert_eq!(files.last_index(), None);
        append_range(&mut files, 100, 101, 4);
        assert_eq!(indexes(&mut files, 0, u64::MAX), vec![100, 101]);
    }

    #[test]
    fn a_torn_append_is_cut_off_and_its_bytes_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = LogFiles::open(dir.path()).expect("open");
        append_range(&mut files, 1, 5, 1);
        let seg = files.segments.last().expect("segment");
        let (path, end, at4) = (seg.path.clone(), seg.end, seg.offsets.as_ref().expect("offsets")[3]);
        drop(files);
        // Entry 4's record loses a byte of its payload on disk; entry 5 is intact behind it.
        let file = OpenOptions::new().write(true).open(&path).expect("open segment");
        file.write_all_at(&[0xAB], at4 + HEADER_BYTES as u64 + 2).expect("corrupt");
        drop(file);
        let mut files = LogFiles::open(dir.path()).expect("reopen");
        assert_eq!(files.last_index(), Some(3));
        let seg = files.segments.last().expect("segment");
        let mut tail = vec![0xffu8; (end - at4) as usize];
        seg.file.read_exact_at(&mut tail, at4).expect("read tail");
        assert!(tail.iter().all(|&b| b == 0), "the torn record and the one after are zeroed");
        // The next append takes index 4, and entry 5's old record cannot return behind it.
        append_range(&mut files, 4, 4, 1);
        drop(files);
        let mut files = LogFiles::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&mut files, 0, u64::MAX), vec![1, 2, 3, 4]);
    }

    #[test]
    fn appends_that_overlap_or_skip_are_refused_unless_the_log_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = LogFiles::open(dir.path()).expect("open");
        append_range(&mut files, 1, 3, 1);
        let p = payload(3);
        assert!(files.append(&[rec(3, 1, &p)]).is_err(), "index 3 is already there");
        assert!(files.append(&[rec(4, 1, &p), rec(6, 1, &p)]).is_err(), "not consecutive");
        assert_eq!(files.last_index(), Some(3));
    }
}
