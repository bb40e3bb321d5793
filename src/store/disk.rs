//! The disk tier: one checked blob file per slice in a cache folder.
//!
//! # Layout
//! ```text
//! <cache>/CACHEDIR.TAG          marks the folder as lodcache's (and as a cache, for backup tools)
//! <cache>/manifest.json         the source fingerprint (see Manifest)
//! <cache>/demand.json           request statistics (see the pyramid's demand ranking)
//! <cache>/<level>/<z:06>.blob   one blob per slice of each level >= 1
//! ```
//! The cache folder defaults to `<stack>/.lodcache/` (hidden, so stack discovery ignores it);
//! where the stack folder is not writable, to a per-user folder keyed by the stack's path
//! ([`default_cache_dir`]).
//!
//! # Trust nothing in the folder
//! - Every blob read is checked ([`crate::codec::verify`]) against the slice it should be: its
//!   level, index, size and sample type, its checksum, and its **origin**: the stack's identity
//!   and the fingerprint of exactly the source slices it is made from (see [`Fingerprint`]).
//!   A blob made from an older version of a source slice (written by another process while
//!   this one opened the folder, say) or from another stack that shares the folder is refused,
//!   never returned. A damaged or stale blob is counted, removed and reported as a miss.
//! - Files are opened without following links and checked to be regular files before they are
//!   read, and never read past the longest blob their slice can have: a symlink, FIFO, device
//!   or folder where a blob belongs is a counted miss (and removed, being inside the folder),
//!   never a hang or a flood. Level folders that are links are never entered. Nothing outside
//!   the folder is written or deleted (see `folder.rs`).
//! - lodcache deletes only what it can tell it made: blob files, their temporary files, and its
//!   own top-level files, in a folder that carries its `CACHEDIR.TAG`. A folder that holds
//!   other files but no tag, or holds the stack's own slices (`--cache` pointed at the scan),
//!   is not used at all (with a warning).
//! - Every write goes to a temporary file renamed into place, so a reader (in this or another
//!   process) sees the old blob, the new blob or none, never a part. Temporary files of
//!   writers that are gone are swept on open.
//! - On open the manifest is compared with the stack as it is now. Blobs that depend on a
//!   changed, added or removed source slice are removed, and only those (slice `i` of level `n`
//!   depends on source slices `[i * 2^n, (i + 1) * 2^n)`); a different blob format, slice size
//!   or sample type removes every blob. The level rule plays no part: level `n` is level `n`
//!   whatever the edge, so changing the edge keeps every blob. The manifest is rewritten after
//!   the removals, so a crash in between repeats them on the next open.
//! - When another process rewrites the manifest for a changed stack (or another stack takes the
//!   folder over), this process stops reading and writing the folder, with a warning, and
//!   serves from memory and by generating; reopening the pyramid uses the folder again.
//! - A cache folder that cannot be written is used read-only when its manifest matches the
//!   stack, and not at all otherwise; either way with a warning ([`DiskStore::warnings`]) and
//!   never as an error: lodcache then caches in memory only.
//!
//! # Budget
//! When the blobs exceed the byte budget, the least valuable are removed until they take 90% of
//! it: lowest priority first (see [`DiskStore::set_priority`]; demand statistics plug in
//! there), then least recently used. Recency starts from the files' modification times.
//! Each process enforces the budget over the blobs it knows of (those present when it opened
//! and those it read or wrote since). Blobs of levels that the current level rule does not
//! have count like any other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::folder::{CacheFolder, Entry as FolderEntry, is_stale, is_temp_of};
use super::manifest::{Fingerprint, Invalidation, Manifest};
use super::{Blob, Budget, Counter, PriorityFn, Tier, TierStats};
use crate::codec::{self, BlobError};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::geometry::SliceKey;

/// Name of the default cache folder inside the stack folder.
pub const CACHE_FOLDER: &str = ".lodcache";
/// The manifest's file name.
pub(crate) const MANIFEST: &str = "manifest.json";
/// The tag's file name.
pub(crate) const TAG: &str = "CACHEDIR.TAG";
const BLOB_EXT: &str = "blob";
/// The files lodcache keeps at the top of a cache folder (their temporary files are swept).
pub(crate) const TOP_FILES: [&str; 4] = [TAG, MANIFEST, "demand.json", "demand.lock"];
/// Temporary files older than this are stale even if their pid is in use (pids get reused).
const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// The tag's first line, as the Cache Directory Tagging Specification wants it.
const TAG_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
const CACHEDIR_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks a lodcache cache folder: everything here can be rebuilt from the stack.\n";

/// Where and how big the disk tier is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// The cache folder (created if missing).
    pub dir: PathBuf,
    /// Byte budget for the blobs. Default: `u64::MAX` (unbounded).
    pub budget: u64,
}

impl DiskOptions {
    /// Options for the cache folder `dir` with no budget.
    pub fn new(dir: impl AsRef<Path>) -> DiskOptions {
        DiskOptions {
            dir: dir.as_ref().to_path_buf(),
            budget: u64::MAX,
        }
    }

    /// Sets the byte budget. Default: `u64::MAX` (unbounded).
    #[must_use]
    pub fn with_budget(mut self, budget: u64) -> DiskOptions {
        self.budget = budget;
        self
    }
}

/// How the disk tier is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiskMode {
    /// Blobs are read and written.
    ReadWrite,
    /// Blobs are read but the folder cannot be written.
    ReadOnly,
    /// The folder cannot be used: memory-only caching.
    Disabled,
}

/// Counters of the disk tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskStats {
    /// Reads that found a valid blob.
    pub hits: u64,
    /// Reads that found none (damaged and stale blobs included).
    pub misses: u64,
    /// Damaged blobs found (and removed where the folder is writable): failed checks, and
    /// entries that are not regular files.
    pub corrupt: u64,
    /// Sound blobs made from other sources found (an older version of a source slice, or
    /// another stack's), and removed.
    pub stale: u64,
    /// Blobs written.
    pub writes: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Blobs removed to stay within the budget.
    pub evictions: u64,
    /// Blobs removed on open because their source changed.
    pub invalidated: u64,
    /// Bytes of blobs known to be on disk.
    pub bytes: u64,
    /// Blobs known to be on disk.
    pub blobs: u64,
    /// The byte budget.
    pub budget: Budget,
    /// How the folder is used.
    pub mode: DiskMode,
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    corrupt: Counter,
    stale: Counter,
    writes: Counter,
    write_errors: Counter,
    evictions: Counter,
    invalidated: Counter,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    bytes: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<SliceKey, IndexEntry>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, key: SliceKey, bytes: u64) {
        self.clock += 1;
        let entry = IndexEntry {
            bytes,
            last_used: self.clock,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
    }

    fn forget(&mut self, key: SliceKey) {
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.bytes;
        }
    }
}

struct Inner {
    dir: PathBuf,
    folder: Option<CacheFolder>,
    mode: DiskMode,
    fingerprint: Fingerprint,
    budget: u64,
    index: Mutex<Index>,
    counters: Counters,
    warnings: Mutex<Vec<String>>,
    priority: RwLock<Option<PriorityFn>>,
    /// Fault injection: every write fails while set (see `DiskStore::inject_write_errors`).
    fail_writes: AtomicBool,
    /// The manifest this store vouches for, and the last seen identity of its file.
    manifest: Mutex<Option<Manifest>>,
    manifest_seen: Mutex<Option<FileStamp>>,
    /// Set once another open rewrote the manifest for a changed stack: reads and writes stop.
    superseded: AtomicBool,
}

/// What tells a file's versions apart without reading it: size, modification time, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// Blob files in a cache folder, checked on read, written atomically, kept under a budget.
///
/// Cheap to clone; clones share the index. `Send + Sync`. Any number of threads and processes
/// may use the same folder at once.
#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.inner.dir)
            .field("mode", &self.inner.mode)
            .field("budget", &Budget(self.inner.budget))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file of blob `key` in cache folder `dir`: `<dir>/<level>/<z:06>.blob`.
pub fn blob_path(dir: impl AsRef<Path>, key: SliceKey) -> PathBuf {
    dir.as_ref()
        .join(key.level.to_string())
        .join(blob_name(key.z))
}

fn blob_name(z: u32) -> String {
    format!("{z:06}.{BLOB_EXT}")
}

/// The slice number of a blob file name `<z:06>.blob` (six digits or more, as written).
fn blob_z(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".blob")?;
    (stem.len() >= 6 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// The level number of a level folder name (digits, no leading zero).
fn level_number(name: &str) -> Option<u32> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    ok.then(|| name.parse().ok()).flatten()
}

/// The cache folder lodcache uses for the stack in `stack_dir` when none is given:
/// `<stack_dir>/.lodcache` when that can be written, otherwise a per-user folder,
/// `$XDG_CACHE_HOME/lodcache/<name>-<hash of the stack's absolute path>` (`~/.cache` when
/// `XDG_CACHE_HOME` is unset).
pub fn default_cache_dir(stack_dir: impl AsRef<Path>) -> PathBuf {
    let stack_dir = stack_dir.as_ref();
    let local = stack_dir.join(CACHE_FOLDER);
    if can_write_in(&local) || (!local.exists() && can_write_in(stack_dir)) {
        return local;
    }
    user_cache_dir(stack_dir)
}

fn user_cache_dir(stack_dir: &Path) -> PathBuf {
    user_cache_dir_for(stack_dir, b"")
}

/// `$XDG_CACHE_HOME/lodcache/<name>-<hash of the stack's absolute path and salt>` (`~/.cache`
/// when `XDG_CACHE_HOME` is unset; an empty salt gives the per-user folder of
/// [`default_cache_dir`]).
pub(crate) fn user_cache_dir_for(stack_dir: &Path, salt: &[u8]) -> PathBuf {
    let root = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let absolute = std::fs::canonicalize(stack_dir).unwrap_or_else(|_| stack_dir.to_path_buf());
    let mut key = absolute.as_os_str().as_encoded_bytes().to_vec();
    if !salt.is_empty() {
        key.push(0);
        key.extend_from_slice(salt);
    }
    let hash = xxhash_rust::xxh3::xxh3_64(&key);
    let name: String = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    root.join("lodcache").join(format!("{name}-{hash:016x}"))
}

/// Whether a file can be created in `dir` (tried, not guessed from permission bits).
/// The name of the file [`can_write_in`] creates and removes.
const PROBE_NAME: &str = ".lodcache-probe";

fn can_write_in(dir: &Path) -> bool {
    let probe = fsutil::temp_path(&dir.join(PROBE_NAME));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if made {
        let _ = std::fs::remove_file(&probe);
    }
    made
}

/// One blob file found on disk.
struct Found {
    key: SliceKey,
    bytes: u64,
    modified: SystemTime,
}

/// What a folder's top level says about who made it.
struct Survey {
    /// It carries lodcache's tag.
    tagged: bool,
    /// It holds nothing but what lodcache names its files (a folder made by a process killed
    /// before it wrote the tag: level folders of blobs, the manifest, temporary files).
    lodcache_shaped: bool,
    /// One of the stack's own slices, if the folder holds one.
    holds_source: Option<String>,
}

fn survey(folder: &CacheFolder, manifest: &Manifest) -> Survey {
    let listing = folder.list(None).unwrap_or_default();
    let tagged = matches!(
        folder.read(None, TAG, 4096),
        Ok(FolderEntry::File(bytes)) if bytes.starts_with(TAG_SIGNATURE)
    );
    let sources: std::collections::HashSet<&str> =
        manifest.sources.iter().map(|s| s.name.as_str()).collect();
    let top_file = |name: &str| {
        TOP_FILES.contains(&name)
            || is_temp_of(name, |t| TOP_FILES.contains(&t))
            || is_temp_of(name, |t| t == PROBE_NAME)
    };
    let blob_file =
        |name: &str| blob_z(name).is_some() || is_temp_of(name, |t| blob_z(t).is_some());
    let lodcache_shaped = listing.iter().all(|e| {
        (e.is_file && top_file(&e.name))
            || (e.is_dir
                && level_number(&e.name).is_some()
                && folder
                    .list(Some(&e.name))
                    .is_ok_and(|files| files.iter().all(|f| f.is_file && blob_file(&f.name))))
    });
    Survey {
        tagged,
        lodcache_shaped,
        holds_source: listing
            .iter()
            .find(|e| sources.contains(e.name.as_str()))
            .map(|e| e.name.clone()),
    }
}

impl DiskStore {
    /// Opens (creating if needed) the cache folder of `options` for the stack whose sources
    /// `manifest` describes.
    ///
    /// Never fails: a folder that cannot be created, written or trusted degrades the tier (see
    /// [`DiskMode`]) with a warning. Blobs invalidated by source changes are removed here.
    pub fn open(options: &DiskOptions, manifest: &Manifest) -> DiskStore {
        DiskStore::open_with(options, manifest, Fingerprint::of(manifest))
    }

    /// [`DiskStore::open`] checking blobs against `fingerprint` (shared with other tiers).
    pub(crate) fn open_with(
        options: &DiskOptions,
        manifest: &Manifest,
        fingerprint: Fingerprint,
    ) -> DiskStore {
        let dir = options.dir.clone();
        let mut warnings = Vec::new();
        let mut mode = DiskMode::ReadWrite;
        let folder = match CacheFolder::open(&dir, true) {
            Ok(f) => Some(f),
            Err(e) => match CacheFolder::open(&dir, false) {
                // It exists but we cannot create in its parent: maybe read-only.
                Ok(f) => Some(f),
                Err(_) => {
                    warnings.push(format!(
                        "cache folder {dir:?} cannot be created or opened ({e}); caching in \
                         memory only"
                    ));
                    mode = DiskMode::Disabled;
                    None
                }
            },
        };
        if folder.is_some() && !can_write_in(&dir) {
            mode = DiskMode::ReadOnly;
        }
        // The folder must be ours, or empty, and must not be the scan itself.
        if let Some(f) = &folder {
            let s = survey(f, manifest);
            let refusal = if let Some(name) = s.holds_source {
                Some(format!(
                    "cache folder {dir:?} holds the stack's slice {name:?}: a cache folder must \
                     not be the scan's folder; not using it, caching in memory only"
                ))
            } else if !s.tagged && !s.lodcache_shaped {
                Some(format!(
                    "cache folder {dir:?} holds files lodcache did not make (it has no \
                     {TAG}); choose an empty or new folder. Not using it, caching in memory only"
                ))
            } else {
                None
            };
            if let Some(w) = refusal {
                warnings.push(w);
                mode = DiskMode::Disabled;
            } else if mode == DiskMode::ReadWrite
                && !s.tagged
                && let Err(e) = f.write_atomic(None, TAG, CACHEDIR_TAG)
            {
                warnings.push(format!(
                    "cache folder {dir:?} cannot be written ({e}); caching in memory only"
                ));
                mode = DiskMode::Disabled;
            }
        }
        let folder = folder.filter(|_| mode != DiskMode::Disabled);
        let counters = Counters::default();
        let mut found = match &folder {
            Some(f) => scan(f, mode == DiskMode::ReadWrite, &mut warnings),
            None => Vec::new(),
        };

        let manifest_path = dir.join(MANIFEST);
        let levels = fingerprint.levels();
        let old = match &folder {
            Some(f) => match f.read(None, MANIFEST, MAX_MANIFEST_BYTES) {
                Ok(FolderEntry::File(bytes)) => Manifest::from_bytes(&bytes, &manifest_path),
                Ok(FolderEntry::Missing) => Ok(None),
                Ok(FolderEntry::TooLong(n)) => Err(Error::decode(
                    &manifest_path,
                    format!("{n} bytes, too long for a manifest"),
                )),
                Ok(FolderEntry::NotRegular(what)) => Err(Error::decode(
                    &manifest_path,
                    format!("{what}, not a manifest file"),
                )),
                Err(e) => Err(Error::io("reading", &manifest_path, e)),
            },
            None => Ok(None),
        };
        let had_manifest = matches!(old, Ok(Some(_)));
        let invalidation = match old {
            Ok(Some(old)) => old.invalidated_by(manifest, &levels),
            Ok(None) if found.is_empty() => Invalidation::None,
            // A manifest of an older layout: its blobs were made by an older format.
            Ok(None) if had_old_layout(folder.as_ref()) => {
                Invalidation::All("a cache of an older lodcache version".into())
            }
            Ok(None) => Invalidation::All("the folder has blobs but no manifest".into()),
            Err(e) => {
                if mode != DiskMode::Disabled {
                    warnings.push(format!("{e}; discarding the cached blobs"));
                }
                Invalidation::All(e.to_string())
            }
        };
        if mode == DiskMode::ReadOnly {
            if invalidation == Invalidation::None && had_manifest {
                warnings.push(format!(
                    "cache folder {dir:?} is read-only: reading cached blobs, new ones are kept \
                     in memory only"
                ));
            } else {
                warnings.push(format!(
                    "cache folder {dir:?} is read-only and does not match the stack; caching in \
                     memory only"
                ));
                mode = DiskMode::Disabled;
                found.clear();
            }
        }

        if mode == DiskMode::ReadWrite
            && let Some(f) = &folder
        {
            let doomed = |key: &SliceKey| match &invalidation {
                Invalidation::None => false,
                Invalidation::All(_) => true,
                Invalidation::Some(keys) => keys.contains(key),
            };
            found.retain(|b| {
                if doomed(&b.key) {
                    // Made for the stack the old manifest describes: ours to remove.
                    if remove_blob(f, b.key) {
                        counters.invalidated.incr();
                    }
                    return false;
                }
                true
            });
            if let Invalidation::All(reason) = &invalidation {
                log::info!("lodcache: cache {dir:?} reset: {reason}");
            }
            let current = match f.read(None, MANIFEST, MAX_MANIFEST_BYTES) {
                Ok(FolderEntry::File(bytes)) => {
                    Manifest::from_bytes(&bytes, &manifest_path).ok().flatten()
                }
                _ => None,
            };
            if current.as_ref() != Some(manifest)
                && let Err(e) = f.write_atomic(None, MANIFEST, &manifest.to_bytes())
            {
                warnings.push(format!(
                    "writing {manifest_path:?}: {e}; caching in memory only"
                ));
                mode = DiskMode::Disabled;
                found.clear();
            }
        }

        // Files named like slices this stack does not have are left alone and not counted.
        found.retain(|b| fingerprint.level(b.key).is_some());
        // Oldest first, so that recency order starts as modification order.
        found.sort_by_key(|b| b.modified);
        let mut index = Index::default();
        for b in &found {
            index.touch(b.key, b.bytes);
        }
        for w in &warnings {
            log::warn!("lodcache: {w}");
        }
        let store = DiskStore {
            inner: Arc::new(Inner {
                folder: folder.filter(|_| mode != DiskMode::Disabled),
                manifest_seen: Mutex::new(stamp(&manifest_path)),
                dir,
                mode,
                fingerprint,
                budget: options.budget,
                index: Mutex::new(index),
                counters,
                warnings: Mutex::new(warnings),
                priority: RwLock::new(None),
                fail_writes: AtomicBool::new(false),
                manifest: Mutex::new(Some(manifest.clone())),
                superseded: AtomicBool::new(false),
            }),
        };
        store.enforce_budget();
        store
    }

    /// A disk tier that keeps nothing (memory-only caching, chosen by the caller: no warning).
    pub fn disabled() -> DiskStore {
        let empty = Manifest {
            manifest_version: 0,
            format_version: codec::FORMAT_VERSION,
            stack: String::new(),
            prefix: String::new(),
            extension: String::new(),
            width: 1,
            height: 1,
            sample_type: "u8".into(),
            sources: Vec::new(),
        };
        DiskStore::disabled_with(Fingerprint::of(&empty))
    }

    pub(crate) fn disabled_with(fingerprint: Fingerprint) -> DiskStore {
        DiskStore {
            inner: Arc::new(Inner {
                dir: PathBuf::new(),
                folder: None,
                mode: DiskMode::Disabled,
                fingerprint,
                budget: 0,
                index: Mutex::new(Index::default()),
                counters: Counters::default(),
                warnings: Mutex::new(Vec::new()),
                priority: RwLock::new(None),
                fail_writes: AtomicBool::new(false),
                manifest: Mutex::new(None),
                manifest_seen: Mutex::new(None),
                superseded: AtomicBool::new(false),
            }),
        }
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What blobs are checked against (shared with the other tiers).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// How the folder is used.
    pub fn mode(&self) -> DiskMode {
        self.inner.mode
    }

    /// The folder, while it may be read.
    fn readable(&self) -> Option<&CacheFolder> {
        if self.inner.superseded.load(Ordering::Relaxed) {
            return None;
        }
        self.inner.folder.as_ref()
    }

    /// Warnings about the folder (read-only, untrusted, unreadable manifest, failed writes),
    /// oldest first.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.inner.warnings).clone()
    }

    fn warn(&self, message: String) {
        log::warn!("lodcache: {message}");
        let mut w = lock(&self.inner.warnings);
        // Keep the list short on a failing disk: the counters hold the totals.
        if w.len() < 100 {
            w.push(message);
        }
    }

    /// Sets how valuable each blob is to keep under the budget (higher stays longer; ties go
    /// by recency). Default: every blob 0, so plain least-recently-used.
    pub fn set_priority(&self, priority: PriorityFn) {
        *self
            .inner
            .priority
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(priority);
    }

    /// The blob of `key` if a valid one is on disk. A damaged blob, a blob made from other
    /// sources and an entry that is not a regular file are counted, removed and reported as a
    /// miss.
    pub fn get(&self, key: SliceKey) -> Option<Blob> {
        let counters = &self.inner.counters;
        let (Some(folder), Some(id)) = (self.readable(), self.inner.fingerprint.id(key)) else {
            counters.misses.incr();
            return None;
        };
        if !self.manifest_still_ours() {
            counters.misses.incr();
            return None;
        }
        let sub = key.level.to_string();
        let path = blob_path(&self.inner.dir, key);
        // A file larger than any blob of this slice can be is not read into memory at all.
        let longest = codec::max_blob_len(&id.level);
        let bytes = match folder.read(Some(&sub), &blob_name(key.z), longest) {
            Ok(FolderEntry::File(b)) => b,
            Ok(FolderEntry::Missing) => {
                lock(&self.inner.index).forget(key);
                counters.misses.incr();
                return None;
            }
            Ok(FolderEntry::TooLong(n)) => {
                let reason = format!("{n} bytes, more than a blob of it can hold ({longest})");
                self.discard(key, &path, &reason, false);
                counters.misses.incr();
                return None;
            }
            Ok(FolderEntry::NotRegular(what)) => {
                self.discard(key, &path, &format!("{what}, not a blob file"), false);
                counters.misses.incr();
                return None;
            }
            Err(e) => {
                self.warn(format!("reading {path:?}: {e}"));
                lock(&self.inner.index).forget(key);
                counters.misses.incr();
                return None;
            }
        };
        match codec::verify(&bytes, &id) {
            Ok(_) => {
                lock(&self.inner.index).touch(key, bytes.len() as u64);
                counters.hits.incr();
                Some(bytes.into())
            }
            Err(e @ BlobError::Origin { .. }) => {
                // Sound, but made from other sources. If the folder is still ours, the blob is
                // stale (made before a source changed): drop it. If another process took the
                // folder over, it may be that process's: leave it, and stop using the folder.
                if self.manifest_still_ours() {
                    self.discard(key, &path, &e.to_string(), true);
                }
                counters.misses.incr();
                None
            }
            Err(e) => {
                self.discard(key, &path, &e.to_string(), false);
                counters.misses.incr();
                None
            }
        }
    }

    /// Records that the blob of `key` is damaged (found by a later decode): counted and removed.
    pub fn report_corrupt(&self, key: SliceKey, reason: &str) {
        let path = blob_path(&self.inner.dir, key);
        self.discard(key, &path, reason, false);
    }

    fn discard(&self, key: SliceKey, path: &Path, reason: &str, stale: bool) {
        if stale {
            self.inner.counters.stale.incr();
        } else {
            self.inner.counters.corrupt.incr();
        }
        lock(&self.inner.index).forget(key);
        if self.inner.mode == DiskMode::ReadWrite
            && let Some(f) = self.readable()
        {
            remove_blob(f, key);
        }
        if stale {
            log::info!(
                "lodcache: cache blob {path:?} was made from other sources ({reason}): removed, will be rebuilt"
            );
        } else {
            self.warn(format!(
                "damaged cache blob {path:?} ({reason}): removed, will be rebuilt"
            ));
        }
    }

    /// Writes the blob of `key` (atomically; replaces an older one). Does nothing when the
    /// folder is not writable or the blob alone exceeds the budget.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when the write fails (counted; the tier stays usable).
    pub fn put(&self, key: SliceKey, blob: &[u8]) -> Result<()> {
        if self.inner.mode != DiskMode::ReadWrite || blob.len() as u64 > self.inner.budget {
            return Ok(());
        }
        if self.inner.fingerprint.level(key).is_none() {
            return Err(Error::invalid(
                "blob key",
                format!("{key} is outside the stack's levels"),
            ));
        }
        let Some(folder) = self.readable() else {
            return Ok(());
        };
        if !self.manifest_still_ours() {
            return Ok(());
        }
        let path = blob_path(&self.inner.dir, key);
        let written = if self.inner.fail_writes.load(Ordering::Relaxed) {
            Err(std::io::Error::other("injected write error (fault test)"))
        } else {
            folder.write_atomic(Some(&key.level.to_string()), &blob_name(key.z), blob)
        };
        if let Err(e) = written {
            self.inner.counters.write_errors.incr();
            let e = Error::io("writing", &path, e);
            self.warn(e.to_string());
            return Err(e);
        }
        self.inner.counters.writes.incr();
        let over = {
            let mut index = lock(&self.inner.index);
            index.touch(key, blob.len() as u64);
            index.bytes > self.inner.budget
        };
        if over {
            self.enforce_budget();
        }
        Ok(())
    }

    /// Makes every following write fail (`true`) or succeed again (`false`), as a full or
    /// broken disk would: for fault tests (feature `test-utils`). A failed write is counted and
    /// warned about, and the pyramid goes on serving from memory.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn inject_write_errors(&self, fail: bool) {
        self.inner.fail_writes.store(fail, Ordering::Relaxed);
    }

    /// Whether the folder's manifest is still the one this store opened with. Another process
    /// that opens the folder for a changed stack (or another stack) rewrites it; from then on
    /// the folder is theirs: this store stops reading and writing it (with a warning). One
    /// `stat` per call; the file is read only when it changed.
    fn manifest_still_ours(&self) -> bool {
        if self.inner.superseded.load(Ordering::Relaxed) {
            return false;
        }
        let Some(folder) = self.inner.folder.as_ref() else {
            return false;
        };
        let path = self.inner.dir.join(MANIFEST);
        let now = stamp(&path);
        let mut seen = lock(&self.inner.manifest_seen);
        if now.is_some() && now == *seen {
            return true;
        }
        let same = match folder.read(None, MANIFEST, MAX_MANIFEST_BYTES) {
            Ok(FolderEntry::File(bytes)) => Manifest::from_bytes(&bytes, &path)
                .ok()
                .flatten()
                .is_some_and(|m| Some(&m) == lock(&self.inner.manifest).as_ref()),
            _ => false,
        };
        if same {
            *seen = now;
            return true;
        }
        drop(seen);
        if !self.inner.superseded.swap(true, Ordering::Relaxed) {
            self.warn(format!(
                "{path:?} was rewritten by another process for a changed or different stack; \
                 this process stops reading and writing the cache folder and generates what it \
                 needs (reopen to use the folder again)"
            ));
        }
        false
    }

    /// Writes `manifest` as the folder's manifest (after a verification found sources changed,
    /// and their dependents were removed), if the folder is still this store's.
    pub(crate) fn replace_manifest(&self, manifest: &Manifest) {
        if self.inner.mode != DiskMode::ReadWrite || !self.manifest_still_ours() {
            return;
        }
        let Some(folder) = self.readable() else {
            return;
        };
        let path = self.inner.dir.join(MANIFEST);
        let mut seen = lock(&self.inner.manifest_seen);
        match folder.write_atomic(None, MANIFEST, &manifest.to_bytes()) {
            Ok(()) => {
                *lock(&self.inner.manifest) = Some(manifest.clone());
                *seen = stamp(&path);
            }
            Err(e) => {
                drop(seen);
                self.warn(format!("writing {path:?}: {e}"));
            }
        }
    }

    /// Whether a blob of `key` is known to be on disk (not checked).
    pub fn contains(&self, key: SliceKey) -> bool {
        !self.inner.superseded.load(Ordering::Relaxed)
            && lock(&self.inner.index).entries.contains_key(&key)
    }

    /// Removes the blob of `key`, if any.
    pub fn remove(&self, key: SliceKey) {
        lock(&self.inner.index).forget(key);
        if self.inner.mode == DiskMode::ReadWrite
            && let Some(f) = self.readable()
        {
            remove_blob(f, key);
        }
    }

    /// Removes the least valuable blobs until they take at most 90% of the budget.
    fn enforce_budget(&self) {
        let budget = self.inner.budget;
        let Some(folder) = self
            .readable()
            .filter(|_| self.inner.mode == DiskMode::ReadWrite)
        else {
            return;
        };
        let priority = self
            .inner
            .priority
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let victims: Vec<SliceKey> = {
            let mut index = lock(&self.inner.index);
            if index.bytes <= budget {
                return;
            }
            let target = budget - budget / 10;
            let mut ranked: Vec<(f64, u64, SliceKey, u64)> = index
                .entries
                .iter()
                .map(|(k, e)| {
                    let p = priority.as_ref().map_or(0.0, |f| f(*k));
                    (p, e.last_used, *k, e.bytes)
                })
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut victims = Vec::new();
            for (_, _, key, _) in ranked {
                if index.bytes <= target {
                    break;
                }
                index.forget(key);
                victims.push(key);
            }
            victims
        };
        for key in victims {
            if remove_blob(folder, key) {
                self.inner.counters.evictions.incr();
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> DiskStats {
        let c = &self.inner.counters;
        let (bytes, blobs) = {
            let index = lock(&self.inner.index);
            (index.bytes, index.entries.len() as u64)
        };
        DiskStats {
            hits: c.hits.get(),
            misses: c.misses.get(),
            corrupt: c.corrupt.get(),
            stale: c.stale.get(),
            writes: c.writes.get(),
            write_errors: c.write_errors.get(),
            evictions: c.evictions.get(),
            invalidated: c.invalidated.get(),
            bytes,
            blobs,
            budget: Budget(self.inner.budget),
            mode: if self.inner.superseded.load(Ordering::Relaxed) {
                DiskMode::Disabled
            } else {
                self.inner.mode
            },
        }
    }
}

impl Tier for DiskStore {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn get(&self, key: SliceKey) -> Option<Blob> {
        DiskStore::get(self, key)
    }

    fn put(&self, key: SliceKey, blob: &Blob) -> Result<()> {
        DiskStore::put(self, key, blob)
    }

    fn contains(&self, key: SliceKey) -> bool {
        DiskStore::contains(self, key)
    }

    fn remove(&self, key: SliceKey) {
        DiskStore::remove(self, key);
    }

    fn report_corrupt(&self, key: SliceKey, reason: &str) {
        DiskStore::report_corrupt(self, key, reason);
    }

    fn tier_stats(&self) -> TierStats {
        let s = self.stats();
        TierStats {
            hits: s.hits,
            misses: s.misses,
            corrupt: s.corrupt + s.stale,
            writes: s.writes,
            evictions: s.evictions,
            bytes: s.bytes,
            entries: s.blobs,
            budget: s.budget,
        }
    }

    fn set_priority(&self, priority: PriorityFn) {
        DiskStore::set_priority(self, priority);
    }

    fn warnings(&self) -> Vec<String> {
        DiskStore::warnings(self)
    }
}

/// What [`remove_cache_folder`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removed {
    /// Files removed.
    pub files: u64,
    /// Bytes of the files removed.
    pub bytes: u64,
    /// Entries left in place because lodcache did not make them (the folder then stays).
    pub left: Vec<PathBuf>,
}

/// Why `dir` is not a cache folder lodcache made, or `None` when it is one: a real folder
/// holding lodcache's `CACHEDIR.TAG` and a manifest.
pub fn not_a_cache_folder(dir: impl AsRef<Path>) -> Option<String> {
    let dir = dir.as_ref();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Some("it is not a folder (or it is a link)".into()),
        Err(e) => return Some(e.to_string()),
    }
    let Ok(folder) = CacheFolder::open(dir, false) else {
        return Some("it cannot be opened".into());
    };
    if !matches!(folder.read(None, TAG, 4096), Ok(FolderEntry::File(b)) if b.starts_with(TAG_SIGNATURE))
    {
        return Some(format!("it holds no {TAG} written by lodcache"));
    }
    if !matches!(
        folder.read(None, MANIFEST, MAX_MANIFEST_BYTES),
        Ok(FolderEntry::File(_))
    ) {
        return Some(format!("it holds no {MANIFEST}"));
    }
    None
}

/// Removes a cache folder lodcache made (see [`not_a_cache_folder`]): every file lodcache
/// names (blobs, level folders, its own top files and their temporary files), never following
/// a link, then the folder itself if nothing else is left in it. Anything else is left in
/// place and listed.
///
/// # Errors
/// [`Error::InvalidArgument`] when `dir` is not a cache folder lodcache made (saying why);
/// [`Error::Io`] naming what could not be removed.
pub fn remove_cache_folder(dir: impl AsRef<Path>) -> Result<Removed> {
    let dir = dir.as_ref();
    if let Some(why) = not_a_cache_folder(dir) {
        return Err(Error::invalid(
            "cache folder",
            format!("not removing {dir:?}: {why}, so lodcache did not make it"),
        ));
    }
    let folder = CacheFolder::open(dir, false).map_err(|e| Error::io("opening", dir, e))?;
    let mut removed = Removed::default();
    let mut remove = |sub: Option<&str>, e: &super::folder::Listed| -> Result<()> {
        let path = match sub {
            Some(s) => dir.join(s).join(&e.name),
            None => dir.join(&e.name),
        };
        folder
            .remove(sub, &e.name)
            .map_err(|err| Error::io("removing", &path, err))?;
        removed.files += 1;
        removed.bytes += e.len;
        Ok(())
    };
    let mut left = Vec::new();
    let top = folder
        .list(None)
        .map_err(|e| Error::io("listing", dir, e))?;
    for entry in &top {
        if level_number(&entry.name).is_some() && entry.is_dir {
            let files = folder
                .list(Some(&entry.name))
                .map_err(|e| Error::io("listing", dir.join(&entry.name), e))?;
            let mut kept = false;
            for f in &files {
                let ours = f.is_file
                    && (blob_z(&f.name).is_some() || is_temp_of(&f.name, |t| blob_z(t).is_some()));
                if ours {
                    remove(Some(&entry.name), f)?;
                } else {
                    kept = true;
                    left.push(dir.join(&entry.name).join(&f.name));
                }
            }
            if !kept {
                folder
                    .remove(None, &entry.name)
                    .map_err(|e| Error::io("removing", dir.join(&entry.name), e))?;
            }
            continue;
        }
        let ours = entry.is_file
            && (TOP_FILES.contains(&entry.name.as_str())
                || is_temp_of(&entry.name, |t| TOP_FILES.contains(&t) || t == PROBE_NAME));
        if ours && entry.name != TAG {
            remove(None, entry)?;
        } else if entry.name != TAG {
            left.push(dir.join(&entry.name));
        }
    }
    if left.is_empty() {
        // The tag last: until then the folder still says whose it is.
        if let Some(tag) = top.iter().find(|e| e.name == TAG) {
            remove(None, tag)?;
        }
        drop(folder);
        std::fs::remove_dir(dir).map_err(|e| Error::io("removing", dir, e))?;
    }
    removed.left = left;
    Ok(removed)
}

/// A manifest file longer than this is not one of ours (a million slices take about 150 MB).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Every blob under the folder, sweeping (when `sweep`) what lodcache left behind: stale
/// temporary files of its own files, and entries named like blobs or level folders that are
/// not regular files and folders (each named in `warnings`). Nothing else is touched: files
/// named like blobs of slices this stack does not have are left alone and not counted.
fn scan(folder: &CacheFolder, sweep: bool, warnings: &mut Vec<String>) -> Vec<Found> {
    let mut found = Vec::new();
    let top = folder.list(None).unwrap_or_default();
    for entry in top {
        // lodcache's top files' temporary files, and the write probe of a process killed
        // between making and removing it.
        let ours_at_top = is_temp_of(&entry.name, |t| TOP_FILES.contains(&t) || t == PROBE_NAME);
        if ours_at_top {
            if sweep && is_stale(&entry.name, entry.modified, TEMP_MAX_AGE) {
                let _ = folder.remove(None, &entry.name);
            }
            continue;
        }
        let Some(level) = level_number(&entry.name) else {
            continue;
        };
        if !entry.is_dir {
            // A level folder's name on a link or file: lodcache's place, not a folder. Remove
            // the entry itself (never what a link points to) before anything is written there.
            let path = folder.path().join(&entry.name);
            if sweep {
                match folder.remove(None, &entry.name) {
                    Ok(_) => warnings.push(format!(
                        "{path:?} in the cache folder is not a folder; removed"
                    )),
                    Err(e) => warnings.push(format!(
                        "{path:?} in the cache folder is not a folder and cannot be removed \
                         ({e}); its level is not cached on disk"
                    )),
                }
            } else {
                warnings.push(format!("{path:?} in the cache folder is not a folder"));
            }
            continue;
        }
        for file in folder.list(Some(&entry.name)).unwrap_or_default() {
            if is_temp_of(&file.name, |t| blob_z(t).is_some()) {
                if sweep && is_stale(&file.name, file.modified, TEMP_MAX_AGE) {
                    let _ = folder.remove(Some(&entry.name), &file.name);
                }
                continue;
            }
            let Some(z) = blob_z(&file.name) else {
                continue;
            };
            let key = SliceKey::new(level, z);
            if !file.is_file {
                let path = folder.path().join(&entry.name).join(&file.name);
                // A link, FIFO, device or empty folder goes; a folder with contents stays
                // (lodcache cannot tell it made them) and reads as a miss.
                if sweep && folder.remove(Some(&entry.name), &file.name).is_ok() {
                    warnings.push(format!("{path:?} is not a blob file; removed"));
                } else {
                    warnings.push(format!(
                        "{path:?} is not a blob file; its slice is not cached on disk"
                    ));
                }
                continue;
            }
            found.push(Found {
                key,
                bytes: file.len,
                modified: file.modified,
            });
        }
    }
    found
}

/// Whether the folder has a manifest file at all (read as `None`: an older layout).
fn had_old_layout(folder: Option<&CacheFolder>) -> bool {
    folder.is_some_and(|f| {
        matches!(
            f.read(None, MANIFEST, MAX_MANIFEST_BYTES),
            Ok(FolderEntry::File(_))
        )
    })
}

fn remove_blob(folder: &CacheFolder, key: SliceKey) -> bool {
    match folder.remove(Some(&key.level.to_string()), &blob_name(key.z)) {
        Ok(removed) => removed,
        Err(e) => {
            log::warn!(
                "lodcache: removing {:?}: {e}",
                blob_path(folder.path(), key)
            );
            false
        }
    }
}
