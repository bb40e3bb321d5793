//! What cached blobs are made from: the manifest of a stack's sources, and the fingerprints
//! every blob is checked against.
//!
//! A blob of slice `z` of level `n` depends on source slices `[z * 2^n, (z + 1) * 2^n)` and on
//! nothing else: not on the level rule (level `n` is level `n` whatever the edge), not on the
//! stack's path. So a blob records the fingerprint of exactly those sources ([`Origin`]), and a
//! reader checks it against the sources as they are now: a blob made from an older version of
//! a source slice, or from another stack that happens to share the cache folder, is refused.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::codec::{BlobId, FORMAT_VERSION, Origin};
use crate::error::{Error, Result};
use crate::geometry::{LevelInfo, LevelRule, SliceKey, dependent_slice, source_range};
use crate::slice::SampleType;
use crate::source::Stack;

/// Version of the manifest file's layout (3: per-source content hashes, no level rule).
const MANIFEST_VERSION: u32 = 3;

/// One source slice as the manifest remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// File name within the stack folder (lossy UTF-8 where the name is not UTF-8).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 where the system has none).
    pub mtime_ns: u128,
    /// The file's inode number (0 where the system has none). Two stacks written within one
    /// tick of the file system's clock can share names, sizes and times; they never share
    /// inodes on one file system, while every machine mounting the same files sees the same.
    #[serde(default)]
    pub inode: u64,
    /// XXH3-64 of the whole file, when the content check is on (see
    /// [`Manifest::with_content`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<u64>,
    /// The page, for a page of a multi-page TIFF (the file's size, time and inode are the
    /// whole file's: rewriting the file invalidates every page, as it must).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl SourceRecord {
    /// This record's part of a blob's sources fingerprint.
    fn hash(&self) -> u64 {
        let mut h = Xxh3::new();
        h.update(self.name.as_bytes());
        h.update(&[0]);
        h.update(&self.size.to_le_bytes());
        h.update(&self.mtime_ns.to_le_bytes());
        h.update(&self.inode.to_le_bytes());
        h.update(&self.content.unwrap_or(0).to_le_bytes());
        h.update(&[u8::from(self.content.is_some())]);
        if let Some(page) = self.page {
            h.update(b"page");
            h.update(&page.to_le_bytes());
        }
        h.digest()
    }
}

/// The source fingerprint of a stack: what its cached blobs are made from.
///
/// Written as `manifest.json` in a cache folder. It records every source slice (name, size,
/// modification time, inode number and, with the content check, a hash of its bytes), the slices' size and
/// sample type, and the blob format version; not the stack's path (machines that mount a scan
/// at different paths share its blobs) and not the level rule (blobs do not depend on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this file.
    pub manifest_version: u32,
    /// Blob format version ([`FORMAT_VERSION`]).
    pub format_version: u16,
    /// The stack folder when the manifest was written (for people reading the file; not
    /// compared).
    pub stack: String,
    /// The slices' name prefix.
    pub prefix: String,
    /// The slices' extension, lower case.
    pub extension: String,
    /// Width of the source slices.
    pub width: u32,
    /// Height of the source slices.
    pub height: u32,
    /// Sample type name (`u8`, `u16`, `f32`).
    pub sample_type: String,
    /// Every source slice in z order.
    pub sources: Vec<SourceRecord>,
}

/// What a change of manifest means for the blobs on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// Nothing changed.
    None,
    /// These blobs depend on a changed, added or removed source slice.
    Some(BTreeSet<SliceKey>),
    /// Format version, slice size or sample type changed: every blob goes.
    All(String),
}

impl Manifest {
    /// The fingerprint of `stack`: every source file's name, size and modification time (one
    /// `stat` per file).
    ///
    /// # Errors
    /// [`Error::Io`] naming a source file that cannot be stat'ed.
    pub fn of(stack: &Stack) -> Result<Manifest> {
        // The pages of a multi-page TIFF share one stat.
        let mut last: Option<(&Path, SourceRecord)> = None;
        let mut sources = Vec::with_capacity(stack.files().len());
        for f in stack.files() {
            let record = match &last {
                Some((path, r)) if *path == f.path.as_path() => r.clone(),
                _ => source_record(&f.path)?,
            };
            last = Some((&f.path, record.clone()));
            sources.push(SourceRecord {
                page: f.page.map(|p| p.number),
                ..record
            });
        }
        let info = stack.info();
        Ok(Manifest {
            manifest_version: MANIFEST_VERSION,
            format_version: FORMAT_VERSION,
            stack: stack.dir().display().to_string(),
            prefix: stack.prefix().to_string(),
            extension: stack.extension().to_ascii_lowercase(),
            width: info.width,
            height: info.height,
            sample_type: info.sample_type.name().to_string(),
            sources,
        })
    }

    /// The same manifest with a hash of every source file's whole content, read on
    /// `threads` threads (the content check: catches a slice rewritten with the same size and
    /// a restored modification time, as `cp -p` or `rsync -t` leave it).
    ///
    /// # Errors
    /// [`Error::Io`] naming a source file that cannot be read.
    pub fn with_content(mut self, stack: &Stack, threads: usize) -> Result<Manifest> {
        let files = stack.files();
        let threads = threads.clamp(1, 16).min(files.len().max(1));
        let hashes: Vec<Result<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut last: Option<(&Path, u64)> = None;
                        files
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .map(|f| {
                                // The pages of one file: hashed once per thread.
                                if let Some((path, h)) = last
                                    && path == f.path.as_path()
                                {
                                    return Ok(h);
                                }
                                let h = content_hash(&f.path)?;
                                last = Some((&f.path, h));
                                Ok(h)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut parts: Vec<std::vec::IntoIter<Result<u64>>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| {
                            vec![Err(Error::internal(
                                "content check",
                                "a hashing thread panicked",
                            ))]
                        })
                        .into_iter()
                })
                .collect();
            (0..files.len())
                .map(|i| {
                    parts[i % threads].next().unwrap_or_else(|| {
                        Err(Error::internal("content check", "a hash is missing"))
                    })
                })
                .collect()
        });
        for (record, hash) in self.sources.iter_mut().zip(hashes) {
            record.content = Some(hash?);
        }
        Ok(self)
    }

    /// Whether the content check is on (every source has a content hash).
    pub fn has_content(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|s| s.content.is_some())
    }

    /// The stack's identity: what every slice shares (size, sample type, naming), hashed. Not
    /// the path.
    pub fn stack_id(&self) -> u64 {
        let mut h = Xxh3::new();
        h.update(b"lodcache stack\0");
        h.update(&self.width.to_le_bytes());
        h.update(&self.height.to_le_bytes());
        h.update(self.sample_type.as_bytes());
        h.update(&[0]);
        h.update(self.prefix.as_bytes());
        h.update(&[0]);
        h.update(self.extension.as_bytes());
        h.digest()
    }

    /// Every level the stack can have, level 0 first, down to one pixel: whatever the level
    /// rule, a cached slice is one of these.
    pub(crate) fn all_levels(&self) -> Vec<LevelInfo> {
        let ty = sample_type_named(&self.sample_type);
        let depth = u32::try_from(self.sources.len()).unwrap_or(u32::MAX);
        LevelRule::default()
            .with_edge(1)
            .levels(self.width, self.height, depth.max(1), ty)
            .unwrap_or_default()
    }

    /// The blobs made under `self` that are no longer valid under `new` (of the `levels`,
    /// level 0 first).
    pub(crate) fn invalidated_by(&self, new: &Manifest, levels: &[LevelInfo]) -> Invalidation {
        let mut reasons = Vec::new();
        if self.format_version != new.format_version
            || self.manifest_version != new.manifest_version
        {
            reasons.push(format!(
                "blob format version {} -> {}",
                self.format_version, new.format_version
            ));
        }
        if (self.width, self.height, &self.sample_type) != (new.width, new.height, &new.sample_type)
        {
            reasons.push(format!(
                "slices {} x {} {} -> {} x {} {}",
                self.width, self.height, self.sample_type, new.width, new.height, new.sample_type
            ));
        }
        if (&self.prefix, &self.extension) != (&new.prefix, &new.extension) {
            reasons.push(format!(
                "slice names {}*.{} -> {}*.{}",
                self.prefix.escape_debug(),
                self.extension.escape_debug(),
                new.prefix.escape_debug(),
                new.extension.escape_debug()
            ));
        }
        if !reasons.is_empty() {
            return Invalidation::All(reasons.join(", "));
        }
        let mut keys = BTreeSet::new();
        let n = self.sources.len().max(new.sources.len());
        for p in 0..n {
            if self.sources.get(p) == new.sources.get(p) {
                continue;
            }
            let p = u32::try_from(p).unwrap_or(u32::MAX);
            for level in levels.iter().skip(1) {
                keys.insert(SliceKey::new(level.level, dependent_slice(level.level, p)));
            }
        }
        if keys.is_empty() {
            Invalidation::None
        } else {
            Invalidation::Some(keys)
        }
    }

    /// Parses the bytes of a manifest file (`path` names it in errors). `Ok(None)` for a file
    /// of an older layout (its blobs are then all discarded, quietly: an upgrade).
    ///
    /// # Errors
    /// [`Error::Decode`] when it is not a manifest.
    pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<Option<Manifest>> {
        #[derive(Deserialize)]
        struct Version {
            manifest_version: Option<u32>,
        }
        match serde_json::from_slice::<Version>(bytes) {
            Ok(Version {
                manifest_version: Some(v),
            }) if v == MANIFEST_VERSION => {}
            Ok(_) => return Ok(None),
            Err(e) => {
                return Err(Error::decode(path, format!("not a lodcache manifest: {e}")));
            }
        }
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| Error::decode(path, format!("not a lodcache manifest: {e}")))
    }

    /// The manifest as the bytes of its file.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

fn sample_type_named(name: &str) -> SampleType {
    match name {
        "u8" => SampleType::U8,
        "f32" => SampleType::F32,
        _ => SampleType::U16,
    }
}

fn source_record(path: &Path) -> Result<SourceRecord> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("reading metadata of", path, e))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(SourceRecord {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: meta.len(),
        mtime_ns,
        inode,
        content: None,
        page: None,
    })
}

/// XXH3-64 of a whole file, read in 1 MiB pieces.
fn content_hash(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(h.digest()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading", path, e)),
        }
    }
}

/// The origins every blob of a stack is checked against: the stack's identity and a hash per
/// source slice, from the stack's [`Manifest`]. Cheap to clone; clones share it, and
/// [`Fingerprint::update`] (after a content verification) changes what every tier expects.
#[derive(Clone)]
pub struct Fingerprint {
    inner: Arc<RwLock<Expected>>,
}

#[derive(Debug)]
struct Expected {
    stack: u64,
    records: Vec<u64>,
    levels: Vec<LevelInfo>,
    /// How many times the sources were taken again ([`Fingerprint::update`]).
    epoch: u64,
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.read();
        f.debug_struct("Fingerprint")
            .field("stack", &format_args!("{:016x}", e.stack))
            .field("sources", &e.records.len())
            .finish()
    }
}

impl Fingerprint {
    /// The fingerprint of the stack `manifest` describes.
    pub fn of(manifest: &Manifest) -> Fingerprint {
        Fingerprint {
            inner: Arc::new(RwLock::new(Expected::of(manifest))),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Expected> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the sources as `manifest` describes them from now on (a new epoch).
    pub fn update(&self, manifest: &Manifest) {
        let mut e = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let epoch = e.epoch + 1;
        *e = Expected {
            epoch,
            ..Expected::of(manifest)
        };
    }

    /// The current epoch: read it before reading sources, and hand it to
    /// [`Fingerprint::origin_at`] when storing what was made from them.
    pub fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// What slice `key` must have been made from, if the sources are still those of `epoch`
    /// (`None`: they were taken again since, and a slice made from the old ones is not kept).
    pub fn origin_at(&self, key: SliceKey, epoch: u64) -> Option<Origin> {
        let e = self.read();
        (e.epoch == epoch).then(|| e.origin(key))
    }

    /// Every level the stack can have, level 0 first, down to one pixel.
    pub fn levels(&self) -> Vec<LevelInfo> {
        self.read().levels.clone()
    }

    /// The level a cached slice `key` belongs to, if the stack has it (level >= 1, `z` in
    /// range).
    pub fn level(&self, key: SliceKey) -> Option<LevelInfo> {
        let e = self.read();
        e.levels
            .get(key.level as usize)
            .filter(|l| key.level > 0 && key.z < l.depth)
            .copied()
    }

    /// What slice `key` must have been made from.
    pub fn origin(&self, key: SliceKey) -> Origin {
        self.read().origin(key)
    }

    /// What a blob of `key` must be: its level, index and origin. `None` for a key outside the
    /// stack's levels.
    pub fn id(&self, key: SliceKey) -> Option<BlobId> {
        let e = self.read();
        let level = e
            .levels
            .get(key.level as usize)
            .filter(|l| key.level > 0 && key.z < l.depth)
            .copied()?;
        Some(BlobId::new(level, key.z).with_origin(e.origin(key)))
    }
}

impl Expected {
    fn of(manifest: &Manifest) -> Expected {
        Expected {
            stack: manifest.stack_id(),
            records: manifest.sources.iter().map(SourceRecord::hash).collect(),
            levels: manifest.all_levels(),
            epoch: 0,
        }
    }

    fn origin(&self, key: SliceKey) -> Origin {
        let depth = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        let range = source_range(key.level, key.z, depth);
        let mut h = Xxh3::new();
        h.update(&key.level.to_le_bytes());
        h.update(&key.z.to_le_bytes());
        for r in &self.records[range.start as usize..range.end as usize] {
            h.update(&r.to_le_bytes());
        }
        Origin {
            stack: self.stack,
            sources: h.digest(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(depth: usize) -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            format_version: FORMAT_VERSION,
            stack: "/scan".into(),
            prefix: "s".into(),
            extension: "tif".into(),
            width: 64,
            height: 64,
            sample_type: "u16".into(),
            sources: (0..depth)
                .map(|i| SourceRecord {
                    name: format!("s{i:03}.tif"),
                    size: 100,
                    mtime_ns: 5,
                    inode: 1000 + i as u64,
                    content: None,
                    page: None,
                })
                .collect(),
        }
    }

    #[test]
    fn one_changed_source_invalidates_one_blob_per_level() {
        let old = manifest(20);
        let mut new = old.clone();
        new.sources[13].mtime_ns = 6;
        let Invalidation::Some(keys) = old.invalidated_by(&new, &old.all_levels()) else {
            panic!("expected some");
        };
        let expect: BTreeSet<_> = [(1, 6), (2, 3), (3, 1), (4, 0), (5, 0), (6, 0)]
            .map(|(l, z)| SliceKey::new(l, z))
            .into();
        assert_eq!(keys, expect);
    }

    #[test]
    fn appended_source_invalidates_the_tail_and_a_new_size_everything() {
        let old = manifest(20);
        let new = manifest(21);
        let Invalidation::Some(keys) = old.invalidated_by(&new, &new.all_levels()) else {
            panic!("expected some");
        };
        assert!(keys.contains(&SliceKey::new(1, 10)));
        assert_eq!(
            old.invalidated_by(&old.clone(), &old.all_levels()),
            Invalidation::None
        );
        let mut other = old.clone();
        other.width = 66;
        assert!(matches!(
            old.invalidated_by(&other, &old.all_levels()),
            Invalidation::All(_)
        ));
        other = old.clone();
        other.format_version += 1;
        assert!(matches!(
            old.invalidated_by(&other, &old.all_levels()),
            Invalidation::All(_)
        ));
    }

    #[test]
    fn origins_depend_on_exactly_the_sources_a_slice_is_made_from() {
        let old = manifest(20);
        let mut new = old.clone();
        new.sources[13].mtime_ns = 6;
        let (a, b) = (Fingerprint::of(&old), Fingerprint::of(&new));
        for level in 1..=4u32 {
            for z in 0..(20u32.div_ceil(1 << level)) {
                let key = SliceKey::new(level, z);
                let depends = source_range(level, z, 20).contains(&13);
                assert_eq!(a.origin(key) != b.origin(key), depends, "{key}");
                assert_eq!(a.origin(key).stack, b.origin(key).stack);
            }
        }
        // Another stack with the same slice size and names but other files differs everywhere.
        let mut other = old.clone();
        for s in &mut other.sources {
            s.mtime_ns = 99;
        }
        let c = Fingerprint::of(&other);
        assert_ne!(a.origin(SliceKey::new(1, 0)), c.origin(SliceKey::new(1, 0)));
        // A level beyond any rule still has ids; a key outside the stack has none.
        assert!(a.id(SliceKey::new(6, 0)).is_some());
        assert!(a.id(SliceKey::new(1, 10)).is_none());
        assert!(a.id(SliceKey::new(0, 0)).is_none());
    }
}
