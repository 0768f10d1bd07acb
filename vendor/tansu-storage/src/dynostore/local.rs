// shop patch: a folder on disk as the store of a broker that is its only writer.

mod offsets;

use std::{
    collections::{HashMap, VecDeque},
    fmt::{Debug, Display},
    fs::File,
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::PathBuf,
    sync::{Arc, Mutex as SyncMutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, local::LocalFileSystem, path::Path,
};
use offsets::Offsets;
use tokio::sync::Mutex;

/// The local file system, without attributes, and with the conditional put (`PutMode::Update`, compare the version
/// and replace) that `LocalFileSystem` does not offer and a consumer group's state needs. It
/// is safe here because this process is the store's only writer: the comparison and the
/// replacement happen under one lock.
///
/// The batches of records (`…/partitions/{partition}/records/{base}.batch` to the engine) are
/// not a file each: they are appended to the partition's segment files
/// (`…/partitions/{partition}/segments/{first base}.log`, a new one from `SEGMENT_BYTES` on),
/// as a Kafka broker keeps its log, and read back with one positioned read, both on the
/// caller's thread. A file per batch cost an inode allocation on every produce and an open on
/// every read, each on tokio's blocking pool: the largest part of the broker's CPU below full load.
///
/// Nor are consumer groups' committed offsets a file each: they go to one log ([`Offsets`]).
/// (An offset committed as a file by an earlier version is still read, until committed again.)
pub(super) struct Exclusive {
    inner: Arc<LocalFileSystem>,
    updating: Mutex<()>,
    segments: Arc<SyncMutex<Segments>>,
    offsets: Arc<SyncMutex<Offsets>>,
}

impl Exclusive {
    /// The store in `root` (the folder `inner` is on), with the segments found there.
    pub(super) fn new(inner: LocalFileSystem, root: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(inner),
            updating: Mutex::new(()),
            segments: Arc::new(SyncMutex::new(Segments::recover(root)?)),
            offsets: Arc::new(SyncMutex::new(Offsets::open(root)?)),
        })
    }
}

/// A segment file is closed for appends once it holds this much.
const SEGMENT_BYTES: u64 = 1024 * 1024;

/// Each batch in a segment: its base offset and its length (big-endian), then its bytes.
const FRAMING: u64 = 12;

/// What a batch takes in a segment, with its framing (what retention counts).
pub(super) fn footprint(len: u64) -> u64 {
    len + FRAMING
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    modified: DateTime<Utc>,
    /// Batches in it not deleted yet; the file goes with the last.
    live: usize,
}

/// Where a batch is: its segment (by number in its partition), where its framing starts,
/// and its length without it. (Kept small: one per batch the broker keeps.)
#[derive(Clone, Copy)]
struct Stored {
    segment: u32,
    at: u32,
    len: u32,
}

/// The batches of a partition by base offset, oldest first: stored at the end, deleted from
/// the front, so a sorted queue. (Not always in the order they were stored: two produce
/// requests for one partition may store their batches the other way round from their offsets,
/// so one can go in just before the end.)
#[derive(Default)]
struct Batches(VecDeque<(i64, Stored)>);

impl Batches {
    fn insert(&mut self, base: i64, stored: Stored) -> Option<Stored> {
        match self.0.binary_search_by_key(&base, |(base, _)| *base) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, stored)),
            Err(i) => {
                self.0.insert(i, (base, stored));
                None
            }
        }
    }

    fn get(&self, base: &i64) -> Option<&Stored> {
        let i = self.0.binary_search_by_key(base, |(base, _)| *base).ok()?;
        Some(&self.0[i].1)
    }

    fn remove(&mut self, base: &i64) -> Option<Stored> {
        let i = self.0.binary_search_by_key(base, |(base, _)| *base).ok()?;
        self.0.remove(i).map(|(_, stored)| stored)
    }

    fn iter(&self) -> impl Iterator<Item = (&i64, &Stored)> {
        self.0.iter().map(|(base, stored)| (base, stored))
    }
}

#[derive(Default)]
struct Partition {
    batches: Batches,
    segments: HashMap<u32, Segment>,
    /// The segment that takes the next batch, and how much it holds.
    appending: Option<(u32, u64)>,
    next_segment: u32,
}

#[derive(Default)]
struct Segments {
    root: PathBuf,
    /// By the partition's folder (`clusters/{cluster}/topics/{topic}/partitions/{partition}`).
    partitions: HashMap<String, Partition>,
}

/// `…/partitions/{partition}/records/{base}.batch`: the partition's folder and the base.
fn batch_name(location: &Path) -> Option<(&str, i64)> {
    let (partition, name) = location.as_ref().rsplit_once("/records/")?;
    let base = name.strip_suffix(".batch")?.parse().ok()?;
    Some((partition, base))
}

fn io_error(location: &str, error: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "segments",
        source: format!("{location}: {error}").into(),
    }
}

fn poisoned(location: &str) -> object_store::Error {
    io_error(location, std::io::Error::other("a lock of the store is poisoned"))
}

/// The store's own files in its folder, not objects of the engine.
fn own_file(location: &Path) -> bool {
    let location = location.as_ref();
    location.contains("/segments/") || location.starts_with("offsets.log")
}

/// What a get answers: `bytes` of the object `meta` describes, the `range` asked for.
fn answer(meta: ObjectMeta, range: std::ops::Range<u64>, bytes: Bytes) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta,
        range,
        attributes: Attributes::default(),
    }
}

impl Partition {
    /// Indexes a batch just written to (or read back from) its segment; a batch stored again
    /// under the same base replaces the one before.
    fn index(&mut self, base: i64, stored: Stored) -> std::io::Result<()> {
        if let Some(segment) = self.segments.get_mut(&stored.segment) {
            segment.live += 1;
        }
        match self.batches.insert(base, stored) {
            Some(replaced) => self.forget(replaced),
            None => Ok(()),
        }
    }

    fn add_segment(&mut self, segment: Segment) -> u32 {
        let number = self.next_segment;
        self.next_segment += 1;
        _ = self.segments.insert(number, segment);
        number
    }

    /// A batch deleted: its segment goes with its last batch.
    fn forget(&mut self, stored: Stored) -> std::io::Result<()> {
        let Some(segment) = self.segments.get_mut(&stored.segment) else {
            return Ok(());
        };
        segment.live = segment.live.saturating_sub(1);
        if segment.live == 0 {
            let path = segment.path.clone();
            _ = self.segments.remove(&stored.segment);
            if self.appending.is_some_and(|(number, _)| number == stored.segment) {
                self.appending = None;
            }
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Segments {
    /// Finds the segments under `root` and indexes their batches. A batch cut short at the end
    /// of a segment (the process or the machine stopped during its write) is cut off; its
    /// producer was never answered.
    fn recover(root: &std::path::Path) -> std::io::Result<Self> {
        let mut segments = Self {
            root: root.to_owned(),
            ..Self::default()
        };
        // clusters/{cluster}/topics/{topic}/partitions/{partition}/segments/{first base}.log
        let mut files = vec![];
        let clusters = root.join("clusters");
        // A new folder has none yet.
        let walk = clusters.is_dir().then(|| walkdir::WalkDir::new(&clusters).min_depth(7).max_depth(7));
        for entry in walk.into_iter().flatten() {
            let entry = entry.map_err(std::io::Error::other)?;
            let path = entry.path();
            let in_segments = path.parent().and_then(|folder| folder.file_name()).is_some_and(|name| name == "segments");
            if in_segments && path.extension().is_some_and(|ext| ext == "log") && entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
        // In each partition the newest segment (the names sort by first base) comes last and
        // takes the next batches.
        files.sort();
        for path in files {
            let Some(name) = path
                .parent()
                .and_then(|segments| segments.parent())
                .and_then(|partition| partition.strip_prefix(root).ok())
                .and_then(|partition| partition.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            let bytes = std::fs::read(&path)?;
            let file = std::fs::OpenOptions::new().read(true).append(true).open(&path)?;
            let modified: DateTime<Utc> = file.metadata()?.modified()?.into();
            let partition = segments.partitions.entry(name).or_default();
            let number = partition.add_segment(Segment {
                file: Arc::new(file),
                path: path.clone(),
                modified,
                live: 0,
            });
            let mut at = 0_u64;
            while let Some(header) = bytes.get(at as usize..(at + FRAMING) as usize) {
                let base = i64::from_be_bytes(header[..8].try_into().unwrap_or_default());
                let len = u32::from_be_bytes(header[8..].try_into().unwrap_or_default());
                if at + FRAMING + u64::from(len) > bytes.len() as u64 {
                    break;
                }
                let stored = Stored {
                    segment: number,
                    at: u32::try_from(at).map_err(std::io::Error::other)?,
                    len,
                };
                partition.index(base, stored)?;
                at += FRAMING + u64::from(len);
            }
            let Some(segment) = partition.segments.get_mut(&number) else {
                continue;
            };
            if at < bytes.len() as u64 {
                tracing::warn!(?path, at, "a batch cut short at the end of a segment: cut off");
                segment.file.set_len(at)?;
            }
            if segment.live == 0 {
                _ = partition.segments.remove(&number);
                std::fs::remove_file(&path)?;
                continue;
            }
            partition.appending = Some((number, at));
        }
        Ok(segments)
    }

    fn append(&mut self, location: &Path, name: &str, base: i64, payload: &PutPayload) -> object_store::Result<()> {
        let error = |e| io_error(location.as_ref(), e);
        let len = u32::try_from(payload.content_length()).map_err(|e| error(std::io::Error::other(e)))?;
        if !self.partitions.contains_key(name) {
            _ = self.partitions.insert(name.to_owned(), Partition::default());
        }
        let Some(partition) = self.partitions.get_mut(name) else {
            return Err(error(std::io::Error::other("no partition")));
        };
        let (number, at) = match partition.appending {
            Some((number, size)) if size < SEGMENT_BYTES => (number, size),
            _ => {
                let folder = self.root.join(name).join("segments");
                std::fs::create_dir_all(&folder).map_err(error)?;
                let path = folder.join(format!("{base:0>20}.log"));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(error)?;
                let size = file.metadata().map_err(error)?.len();
                let number = partition.add_segment(Segment {
                    file: Arc::new(file),
                    path,
                    modified: Utc::now(),
                    live: 0,
                });
                (number, size)
            }
        };
        let stored = Stored {
            segment: number,
            at: u32::try_from(at).map_err(|e| error(std::io::Error::other(e)))?,
            len,
        };
        let Some(segment) = partition.segments.get_mut(&number) else {
            return Err(error(std::io::Error::other("no segment")));
        };
        let mut framed = Vec::with_capacity(FRAMING as usize + len as usize);
        framed.extend_from_slice(&base.to_be_bytes());
        framed.extend_from_slice(&len.to_be_bytes());
        for chunk in payload.iter() {
            framed.extend_from_slice(chunk);
        }
        // One write. A batch cut short by a stop during it is cut off on recovery; one cut
        // short by an error is cut off here, so the next goes where it is counted.
        if let Err(e) = (&*segment.file).write_all(&framed) {
            _ = segment.file.set_len(at);
            partition.appending = Some((number, at));
            return Err(error(e));
        }
        segment.modified = Utc::now();
        partition.appending = Some((number, at + framed.len() as u64));
        partition.index(base, stored).map_err(error)
    }

    /// The batch stored as `location`: a copy of its file handle, where its bytes start, and
    /// what the engine sees of it.
    fn find(&self, location: &Path) -> Option<(Arc<File>, u64, ObjectMeta)> {
        let (name, base) = batch_name(location)?;
        let partition = self.partitions.get(name)?;
        let stored = partition.batches.get(&base)?;
        let segment = partition.segments.get(&stored.segment)?;
        Some((segment.file.clone(), u64::from(stored.at) + FRAMING, Self::meta(name, base, stored, segment)))
    }

    fn meta(name: &str, base: i64, stored: &Stored, segment: &Segment) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(format!("{name}/records/{base:0>20}.batch")),
            last_modified: segment.modified,
            size: u64::from(stored.len),
            e_tag: None,
            version: None,
        }
    }

    /// Deletes the batch stored as `location`: false when there is none in a segment.
    fn delete(&mut self, location: &Path) -> object_store::Result<bool> {
        let Some((name, base)) = batch_name(location) else {
            return Ok(false);
        };
        let Some(partition) = self.partitions.get_mut(name) else {
            return Ok(false);
        };
        let Some(stored) = partition.batches.remove(&base) else {
            return Ok(false);
        };
        partition.forget(stored).map_err(|e| io_error(location.as_ref(), e))?;
        Ok(true)
    }

    /// The batches in segments under `prefix`, as the engine names them.
    fn list(&self, prefix: Option<&Path>) -> Vec<ObjectMeta> {
        let mut found = vec![];
        for (name, partition) in &self.partitions {
            let folder = Path::from(format!("{name}/records/"));
            if prefix.is_some_and(|prefix| !folder.prefix_matches(prefix) && !prefix.prefix_matches(&folder)) {
                continue;
            }
            for (base, stored) in partition.batches.iter() {
                if let Some(segment) = partition.segments.get(&stored.segment) {
                    let meta = Self::meta(name, *base, stored, segment);
                    if prefix.is_none_or(|prefix| meta.location.prefix_matches(prefix)) {
                        found.push(meta);
                    }
                }
            }
        }
        found
    }
}

impl Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive").field("inner", &self.inner).finish()
    }
}

impl Display for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exclusive({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Exclusive {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult, object_store::Error> {
        // A file has no content type: the attributes the engine sets (JSON) are dropped, as
        // `LocalFileSystem` refuses them.
        let opts = PutOptions {
            attributes: Default::default(),
            ..opts
        };
        if let Some((partition, base)) = batch_name(location) {
            self.segments
                .lock()
                .map_err(|_| poisoned(location.as_ref()))?
                .append(location, partition, base, &payload)?;
            return Ok(PutResult {
                e_tag: None,
                version: None,
            });
        }
        if matches!(opts.mode, PutMode::Overwrite) && offsets::is_offset(location) {
            self.offsets
                .lock()
                .map_err(|_| poisoned(location.as_ref()))?
                .put(location, &payload)
                .map_err(|e| io_error(location.as_ref(), e))?;
            return Ok(PutResult {
                e_tag: None,
                version: None,
            });
        }
        let PutMode::Update(expected) = &opts.mode else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let _updating = self.updating.lock().await;
        let current = match self.inner.head(location).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { path, source }) => {
                return Err(object_store::Error::Precondition { path, source });
            }
            Err(otherwise) => return Err(otherwise),
        };
        if current.e_tag != expected.e_tag {
            return Err(object_store::Error::Precondition {
                path: location.to_string(),
                source: format!("version {:?}, not {:?}", current.e_tag, expected.e_tag).into(),
            });
        }
        self.inner
            .put_opts(
                location,
                payload,
                PutOptions {
                    mode: PutMode::Overwrite,
                    ..opts
                },
            )
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>, object_store::Error> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> Result<GetResult, object_store::Error> {
        let range_of = |meta: &ObjectMeta| match &options.range {
            Some(range) => range
                .as_range(meta.size)
                .map_err(|e| io_error(location.as_ref(), e)),
            None => Ok(0..meta.size),
        };
        if offsets::is_offset(location) {
            let committed = self
                .offsets
                .lock()
                .map_err(|_| poisoned(location.as_ref()))?
                .get(location);
            if let Some((payload, meta)) = committed {
                let range = range_of(&meta)?;
                let bytes = if options.head {
                    Bytes::new()
                } else {
                    payload.slice(range.start as usize..range.end as usize)
                };
                return Ok(answer(meta, range, bytes));
            }
        }
        let found = self
            .segments
            .lock()
            .map_err(|_| poisoned(location.as_ref()))?
            .find(location);
        // Not in a segment nor in the offsets' log: a file (a batch stored before segments, an
        // offset committed before the log, or neither).
        let Some((file, at, meta)) = found else {
            return self.inner.get_opts(location, options).await;
        };
        let range = range_of(&meta)?;
        let mut bytes = vec![0; if options.head { 0 } else { (range.end - range.start) as usize }];
        if !bytes.is_empty() {
            file.read_exact_at(&mut bytes, at + range.start)
                .map_err(|e| io_error(location.as_ref(), e))?;
        }
        Ok(answer(meta, range, Bytes::from(bytes)))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path, object_store::Error>>,
    ) -> BoxStream<'static, Result<Path, object_store::Error>> {
        let segments = self.segments.clone();
        let offsets = self.offsets.clone();
        let inner = self.inner.clone();
        futures::stream::once(async move {
            let locations: Vec<Path> = match locations.try_collect().await {
                Ok(locations) => locations,
                Err(error) => return futures::stream::once(async move { Err(error) }).boxed(),
            };
            let mut deleted = vec![];
            let mut files = vec![];
            // Offsets removed from the log, whose file from before the log may still be there.
            let mut shadowed = vec![];
            {
                let (Ok(mut segments), Ok(mut offsets)) = (segments.lock(), offsets.lock()) else {
                    let error = poisoned("segments");
                    return futures::stream::once(async move { Err(error) }).boxed();
                };
                for location in locations {
                    if offsets::is_offset(&location) {
                        match offsets.delete(&location) {
                            Ok(true) => shadowed.push(Ok(location)),
                            Ok(false) => files.push(Ok(location)),
                            Err(error) => deleted.push(Err(io_error(location.as_ref(), error))),
                        }
                        continue;
                    }
                    match segments.delete(&location) {
                        Ok(true) => deleted.push(Ok(location)),
                        Ok(false) => files.push(Ok(location)),
                        Err(error) => deleted.push(Err(error)),
                    }
                }
            }
            let shadowed = inner
                .delete_stream(futures::stream::iter(shadowed).boxed())
                .map(|deleted| match deleted {
                    Err(object_store::Error::NotFound { path, .. }) => Ok(Path::from(path)),
                    otherwise => otherwise,
                });
            futures::stream::iter(deleted)
                .chain(shadowed)
                .chain(inner.delete_stream(futures::stream::iter(files).boxed()))
                .boxed()
        })
        .flatten()
        .boxed()
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta, object_store::Error>> {
        // The batches in segments and the offsets in the log as the engine names them; the
        // segment files and the log are not the engine's, nor a file an offset in the log
        // replaced.
        let (ours, in_log) = match (self.segments.lock(), self.offsets.lock()) {
            (Ok(segments), Ok(offsets)) => {
                let in_log = offsets.list(prefix);
                let mut ours: Vec<_> = segments.list(prefix).into_iter().map(Ok).collect();
                let replaced = in_log.iter().map(|meta| meta.location.clone()).collect();
                ours.extend(in_log.into_iter().map(Ok));
                (ours, replaced)
            }
            _ => (vec![Err(poisoned("segments"))], std::collections::HashSet::new()),
        };
        self.inner
            .list(prefix)
            .try_filter(move |meta| {
                let theirs = !own_file(&meta.location) && !in_log.contains(&meta.location);
                async move { theirs }
            })
            .chain(futures::stream::iter(ours))
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> Result<ListResult, object_store::Error> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects.retain(|meta| !own_file(&meta.location));
        // The folders and objects the offsets in the log would make there as files.
        let offsets = self.offsets.lock().map_err(|_| poisoned("offsets"))?.list(prefix);
        let depth = prefix.map_or(0, |prefix| prefix.parts().count());
        let mut folders: std::collections::BTreeSet<Path> = listed.common_prefixes.drain(..).collect();
        for meta in offsets {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() > depth + 1 {
                _ = folders.insert(Path::from_iter(parts[..=depth].iter().cloned()));
            } else if !listed.objects.iter().any(|listed| listed.location == meta.location) {
                listed.objects.push(meta);
            }
        }
        listed.common_prefixes = folders.into_iter().collect();
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        opts: CopyOptions,
    ) -> Result<(), object_store::Error> {
        self.inner.copy_opts(from, to, opts).await
    }
}
