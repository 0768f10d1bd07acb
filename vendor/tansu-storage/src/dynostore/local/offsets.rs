// shop patch: consumer groups' committed offsets in one append-only log.

use std::{
    collections::HashMap,
    fs::File,
    io::Write as _,
    path::{Path as FsPath, PathBuf},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{ObjectMeta, PutPayload, path::Path};

/// The log's file in the store's folder.
const FILE: &str = "offsets.log";

/// The log is rewritten with only the last commit of each partition once it is this long and
/// four times what those take.
const COMPACT_FROM_BYTES: u64 = 1024 * 1024;

/// Each record: the length of what follows the CRC and its CRC-32 (big-endian), then a kind
/// byte, the time in milliseconds (i64), the location's length (u16), the location and, for a
/// commit, the committed offset as the engine wrote it (JSON).
const HEADER: usize = 8;
const COMMIT: u8 = 1;
const REMOVAL: u8 = 0;

/// The committed offsets (`clusters/{cluster}/groups/consumers/{group}/offsets/{topic}/partitions/{partition}.json`
/// to the engine) are not a file each: every commit is appended to one log, as a Kafka broker
/// appends them to `__consumer_offsets`, and the last of each partition is kept in memory. A
/// file each cost an inode allocation, a write and a rename for every commit of every
/// partition (librdkafka commits twice a second by default here): a fifth of the broker's CPU
/// below full load.
pub(super) struct Offsets {
    path: PathBuf,
    file: File,
    /// The log's length.
    bytes: u64,
    /// The last commit by location, and what its record takes in the log.
    last: HashMap<String, Committed>,
    /// What the records in `last` take in the log.
    live_bytes: u64,
}

struct Committed {
    payload: Bytes,
    at: DateTime<Utc>,
    record_bytes: u64,
}

/// `clusters/{cluster}/groups/consumers/{group}/offsets/{topic}/partitions/{partition}.json`.
/// (Asked of every object got, batches included: no allocation.)
pub(super) fn is_offset(location: &Path) -> bool {
    const FIXED: [Option<&str>; 8] = [
        Some("clusters"),
        None,
        Some("groups"),
        Some("consumers"),
        None,
        Some("offsets"),
        None,
        Some("partitions"),
    ];
    let mut parts = location.as_ref().split(object_store::path::DELIMITER);
    FIXED
        .iter()
        .all(|fixed| parts.next().is_some_and(|part| fixed.is_none_or(|fixed| part == fixed)))
        && parts.next().is_some_and(|last| last.ends_with(".json"))
        && parts.next().is_none()
}

fn record(kind: u8, at: DateTime<Utc>, location: &str, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let location_len = u16::try_from(location.len()).map_err(std::io::Error::other)?;
    let mut body = Vec::with_capacity(1 + 8 + 2 + location.len() + payload.len());
    body.push(kind);
    body.extend_from_slice(&at.timestamp_millis().to_be_bytes());
    body.extend_from_slice(&location_len.to_be_bytes());
    body.extend_from_slice(location.as_bytes());
    body.extend_from_slice(payload);
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut record = Vec::with_capacity(HEADER + body.len());
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    record.extend_from_slice(&body);
    Ok(record)
}

/// The record at the start of `bytes`: its kind, time, location and payload, and its length;
/// None where no whole, intact record is.
fn parse(bytes: &[u8]) -> Option<(u8, DateTime<Utc>, String, &[u8], usize)> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let kind = *body.first()?;
    let at = DateTime::from_timestamp_millis(i64::from_be_bytes(body.get(1..9)?.try_into().ok()?))?;
    let location_len = u16::from_be_bytes(body.get(9..11)?.try_into().ok()?) as usize;
    let location = std::str::from_utf8(body.get(11..11 + location_len)?).ok()?.to_owned();
    Some((kind, at, location, &body[11 + location_len..], HEADER + len))
}

impl Offsets {
    /// The log in `root`, read back. A record cut short or damaged at the end (the process or
    /// the machine stopped during its write) is cut off, with whatever follows it: its commit
    /// was never answered.
    pub(super) fn open(root: &FsPath) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let path = root.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e),
        };
        let file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut offsets = Self {
            path,
            file,
            bytes: 0,
            last: HashMap::new(),
            live_bytes: 0,
        };
        let mut at = 0;
        while let Some((kind, time, location, payload, len)) = parse(&bytes[at..]) {
            if kind == COMMIT {
                offsets.keep(location, Bytes::copy_from_slice(payload), time, len as u64);
            } else {
                _ = offsets.drop_last(&location);
            }
            at += len;
        }
        if at < bytes.len() {
            tracing::warn!(path = ?offsets.path, at, "a commit cut short at the end of the offsets' log: cut off");
            offsets.file.set_len(at as u64)?;
        }
        offsets.bytes = at as u64;
        Ok(offsets)
    }

    fn keep(&mut self, location: String, payload: Bytes, at: DateTime<Utc>, record_bytes: u64) {
        self.live_bytes += record_bytes;
        let replaced = self.last.insert(location, Committed { payload, at, record_bytes });
        if let Some(replaced) = replaced {
            self.live_bytes -= replaced.record_bytes;
        }
    }

    fn drop_last(&mut self, location: &str) -> bool {
        match self.last.remove(location) {
            Some(removed) => {
                self.live_bytes -= removed.record_bytes;
                true
            }
            None => false,
        }
    }

    fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        // One write. One cut short by an error is cut off, so the next starts where it counts.
        if let Err(e) = (&self.file).write_all(record) {
            _ = self.file.set_len(self.bytes);
            return Err(e);
        }
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Appends the commit stored as `location`.
    pub(super) fn put(&mut self, location: &Path, payload: &PutPayload) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(payload.content_length());
        for chunk in payload.iter() {
            bytes.extend_from_slice(chunk);
        }
        let payload = Bytes::from(bytes);
        let now = Utc::now();
        let record = record(COMMIT, now, location.as_ref(), &payload)?;
        self.append(&record)?;
        self.keep(location.as_ref().to_owned(), payload, now, record.len() as u64);
        self.compact_if_due()
    }

    /// Removes the commit stored as `location`: false when there is none.
    pub(super) fn delete(&mut self, location: &Path) -> std::io::Result<bool> {
        if !self.last.contains_key(location.as_ref()) {
            return Ok(false);
        }
        self.append(&record(REMOVAL, Utc::now(), location.as_ref(), &[])?)?;
        let removed = self.drop_last(location.as_ref());
        self.compact_if_due()?;
        Ok(removed)
    }

    /// The last commit stored as `location`, and what the engine sees of it.
    pub(super) fn get(&self, location: &Path) -> Option<(Bytes, ObjectMeta)> {
        let committed = self.last.get(location.as_ref())?;
        Some((committed.payload.clone(), Self::meta(location.as_ref(), committed)))
    }

    fn meta(location: &str, committed: &Committed) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(location),
            last_modified: committed.at,
            size: committed.payload.len() as u64,
            e_tag: None,
            version: None,
        }
    }

    /// The commits under `prefix`.
    pub(super) fn list(&self, prefix: Option<&Path>) -> Vec<ObjectMeta> {
        self.last
            .iter()
            .map(|(location, committed)| Self::meta(location, committed))
            .filter(|meta| prefix.is_none_or(|prefix| meta.location.prefix_matches(prefix)))
            .collect()
    }

    /// Rewrites the log with the last commit of each partition alone, once it is long enough
    /// and mostly commits made since: written beside it, synced, then put in its place.
    fn compact_if_due(&mut self) -> std::io::Result<()> {
        if self.bytes < COMPACT_FROM_BYTES || self.bytes < 4 * self.live_bytes {
            return Ok(());
        }
        let fresh = self.path.with_extension("log.compacting");
        let mut written = Vec::with_capacity(self.live_bytes as usize);
        let mut sizes = Vec::with_capacity(self.last.len());
        for (location, committed) in &self.last {
            let record = record(COMMIT, committed.at, location, &committed.payload)?;
            sizes.push((location.clone(), record.len() as u64));
            written.extend_from_slice(&record);
        }
        {
            let mut file = File::create(&fresh)?;
            file.write_all(&written)?;
            file.sync_data()?;
        }
        std::fs::rename(&fresh, &self.path)?;
        self.file = std::fs::OpenOptions::new().read(true).append(true).open(&self.path)?;
        self.bytes = written.len() as u64;
        for (location, size) in sizes {
            if let Some(committed) = self.last.get_mut(&location) {
                committed.record_bytes = size;
            }
        }
        self.live_bytes = self.bytes;
        Ok(())
    }
}
