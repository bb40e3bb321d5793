//! The disk tier: one checked blob file per slice in a cache folder.
//!
//! # Layout
//! ```text
//! <cache>/CACHEDIR.TAG          marks the folder as a cache for backup tools
//! <cache>/manifest.json         the source fingerprint (see Manifest)
//! <cache>/<level>/<z:06>.blob   one blob per slice of each level >= 1
//! ```
//! The cache folder defaults to `<stack>/.lodcache/` (hidden, so stack discovery ignores it);
//! where the stack folder is not writable, to a per-user folder keyed by the stack's path
//! ([`default_cache_dir`]).
//!
//! # Safety of the data
//! - Every write goes to a temporary file that is renamed into place, so a reader (in this or
//!   another process) sees the old blob, the new blob or none, never a part. Temporary files of
//!   writers that are gone are swept on open.
//! - Every read is checked ([`crate::codec::verify`]); a damaged blob is counted, removed and
//!   reported as a miss.
//! - On open the manifest is compared with the stack as it is now. Blobs that depend on a
//!   changed, added or removed source slice are removed, and only those (slice `i` of level `n`
//!   depends on source slices `[i * 2^n, (i + 1) * 2^n)`); a different blob format, level rule
//!   or slice size removes every blob. The manifest is rewritten after the removals, so a crash
//!   in between repeats them on the next open.
//! - A cache folder that cannot be written is used read-only when its manifest matches the
//!   stack, and not at all otherwise; either way with a warning ([`DiskStore::warnings`]) and
//!   never as an error: lodcache then caches in memory only.
//!
//! # Budget
//! When the blobs exceed the byte budget, the least valuable are removed until they take 90% of
//! it: lowest priority first (see [`DiskStore::set_priority`]; demand statistics plug in
//! there), then least recently used. Recency starts from the files' modification times.
//! Each process enforces the budget over the blobs it knows of (those present when it opened
//! and those it read or wrote since).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::manifest::{Invalidation, Manifest};
use super::{Blob, Counter, PriorityFn};
use crate::codec;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::geometry::{LevelInfo, SliceKey};

/// Name of the default cache folder inside the stack folder.
pub const CACHE_FOLDER: &str = ".lodcache";
const MANIFEST: &str = "manifest.json";
const BLOB_EXT: &str = "blob";
/// Temporary files older than this are stale even if their pid is in use (pids get reused).
const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);
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
    pub fn new(dir: impl Into<PathBuf>) -> DiskOptions {
        DiskOptions {
            dir: dir.into(),
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
    /// Reads that found none (damaged blobs included).
    pub misses: u64,
    /// Damaged blobs found (and removed where the folder is writable).
    pub corrupt: u64,
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
    pub budget: super::Budget,
    /// How the folder is used.
    pub mode: DiskMode,
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    corrupt: Counter,
    writes: Counter,
    write_errors: Counter,
    evictions: Counter,
    invalidated: Counter,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<SliceKey, Entry>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, key: SliceKey, bytes: u64) {
        self.clock += 1;
        let entry = Entry {
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
    mode: DiskMode,
    levels: Vec<LevelInfo>,
    budget: u64,
    index: Mutex<Index>,
    counters: Counters,
    warnings: Mutex<Vec<String>>,
    priority: RwLock<Option<PriorityFn>>,
    /// Fault injection: every write fails while set (see [`DiskStore::inject_write_errors`]).
    fail_writes: std::sync::atomic::AtomicBool,
    /// The manifest this store vouches for, and the last seen identity of its file.
    manifest: Option<Manifest>,
    manifest_seen: Mutex<Option<FileStamp>>,
    /// Set once another open rewrote the manifest for a changed stack: writes stop.
    superseded: std::sync::atomic::AtomicBool,
}

/// What tells a file's versions apart without reading it: size, modification time, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
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
            .field("budget", &super::Budget(self.inner.budget))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file of blob `key` in cache folder `dir`: `<dir>/<level>/<z:06>.blob`.
pub fn blob_path(dir: &Path, key: SliceKey) -> PathBuf {
    dir.join(key.level.to_string())
        .join(format!("{:06}.{BLOB_EXT}", key.z))
}

/// The cache folder lodcache uses for the stack in `stack_dir` when none is given:
/// `<stack_dir>/.lodcache` when that can be written, otherwise a per-user folder,
/// `$XDG_CACHE_HOME/lodcache/<name>-<hash of the stack's absolute path>` (`~/.cache` when
/// `XDG_CACHE_HOME` is unset).
pub fn default_cache_dir(stack_dir: &Path) -> PathBuf {
    let local = stack_dir.join(CACHE_FOLDER);
    if can_write_in(&local) || (!local.exists() && can_write_in(stack_dir)) {
        return local;
    }
    user_cache_dir(stack_dir)
}

fn user_cache_dir(stack_dir: &Path) -> PathBuf {
    let root = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let absolute = std::fs::canonicalize(stack_dir).unwrap_or_else(|_| stack_dir.to_path_buf());
    let hash = xxhash_rust::xxh3::xxh3_64(absolute.as_os_str().as_encoded_bytes());
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
fn can_write_in(dir: &Path) -> bool {
    let probe = fsutil::temp_path(&dir.join(".lodcache-probe"));
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
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

/// Every `<level>/<z>.blob` under `dir`, sweeping stale temporary files on the way.
fn scan(dir: &Path, sweep: bool) -> Vec<Found> {
    let mut found = Vec::new();
    let Ok(top) = std::fs::read_dir(dir) else {
        return found;
    };
    for level_entry in top.flatten() {
        let level_path = level_entry.path();
        if sweep && fsutil::is_stale_temp(&level_path, Some(TEMP_MAX_AGE)) {
            let _ = std::fs::remove_file(&level_path);
            continue;
        }
        let Some(level) = level_entry
            .file_name()
            .to_str()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(&level_path) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if sweep && fsutil::is_stale_temp(&path, Some(TEMP_MAX_AGE)) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let z = path
                .extension()
                .filter(|e| *e == BLOB_EXT)
                .and_then(|_| path.file_stem())
                .and_then(|s| s.to_str())
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u32>().ok());
            let (Some(z), Ok(meta)) = (z, file.metadata()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            found.push(Found {
                key: SliceKey::new(level, z),
                path,
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    found
}

fn remove_blob(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

impl DiskStore {
    /// Opens (creating if needed) the cache folder of `options` for a pyramid of `levels`
    /// (level 0 first) whose sources are fingerprinted by `manifest`.
    ///
    /// Never fails: a folder that cannot be created or written degrades the tier (see
    /// [`DiskMode`]) with a warning. Blobs invalidated by source changes are removed here.
    pub fn open(options: &DiskOptions, manifest: &Manifest, levels: &[LevelInfo]) -> DiskStore {
        let dir = options.dir.clone();
        let mut warnings = Vec::new();
        let mut mode = DiskMode::ReadWrite;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warnings.push(format!(
                "cache folder {} cannot be created ({e}); caching in memory only",
                dir.display()
            ));
            mode = DiskMode::Disabled;
        } else if !can_write_in(&dir) {
            mode = DiskMode::ReadOnly;
        }
        let writable = mode == DiskMode::ReadWrite;
        let counters = Counters::default();
        let mut found = if mode == DiskMode::Disabled {
            Vec::new()
        } else {
            scan(&dir, writable)
        };

        let manifest_path = dir.join(MANIFEST);
        let invalidation = match Manifest::load(&manifest_path) {
            Ok(Some(old)) => old.invalidated_by(manifest, levels),
            Ok(None) if found.is_empty() => Invalidation::None,
            Ok(None) => Invalidation::All("the folder has blobs but no manifest".into()),
            Err(e) if mode == DiskMode::Disabled => Invalidation::All(e.to_string()),
            Err(e) => {
                warnings.push(format!("{e}; discarding the cached blobs"));
                Invalidation::All(e.to_string())
            }
        };
        if mode == DiskMode::ReadOnly {
            if invalidation == Invalidation::None && manifest_path.is_file() {
                warnings.push(format!(
                    "cache folder {} is read-only: reading cached blobs, new ones are kept in \
                     memory only",
                    dir.display()
                ));
            } else {
                warnings.push(format!(
                    "cache folder {} is read-only and does not match the stack; caching in \
                     memory only",
                    dir.display()
                ));
                mode = DiskMode::Disabled;
                found.clear();
            }
        }

        if mode == DiskMode::ReadWrite {
            let doomed = |key: &SliceKey| match &invalidation {
                Invalidation::None => false,
                Invalidation::All(_) => true,
                Invalidation::Some(keys) => keys.contains(key),
            };
            let out_of_range = |key: &SliceKey| {
                key.level == 0
                    || levels
                        .get(key.level as usize)
                        .is_none_or(|l| key.z >= l.depth)
            };
            found.retain(|f| {
                let invalid = doomed(&f.key);
                if invalid || out_of_range(&f.key) {
                    if remove_blob(&f.path) && invalid {
                        counters.invalidated.incr();
                    }
                    return false;
                }
                true
            });
            if let Invalidation::All(reason) = &invalidation {
                log::info!("lodcache: cache {} reset: {reason}", dir.display());
            }
            let current = Manifest::load(&manifest_path).ok().flatten();
            let stale = current.as_ref() != Some(manifest);
            if stale && let Err(e) = fsutil::write_atomic(&manifest_path, &manifest.to_bytes()) {
                warnings.push(format!("{e}; caching in memory only"));
                mode = DiskMode::Disabled;
                found.clear();
            }
            let tag = dir.join("CACHEDIR.TAG");
            if mode == DiskMode::ReadWrite && !tag.exists() {
                let _ = fsutil::write_atomic(&tag, CACHEDIR_TAG);
            }
        }

        // Oldest first, so that recency order starts as modification order.
        found.sort_by_key(|f| f.modified);
        let mut index = Index::default();
        for f in &found {
            index.touch(f.key, f.bytes);
        }
        for w in &warnings {
            log::warn!("lodcache: {w}");
        }
        let store = DiskStore {
            inner: Arc::new(Inner {
                dir,
                mode,
                levels: levels.to_vec(),
                budget: options.budget,
                index: Mutex::new(index),
                counters,
                warnings: Mutex::new(warnings),
                priority: RwLock::new(None),
                fail_writes: std::sync::atomic::AtomicBool::new(false),
                manifest_seen: Mutex::new(stamp(&manifest_path)),
                manifest: Some(manifest.clone()),
                superseded: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        store.enforce_budget();
        store
    }

    /// A disk tier that keeps nothing (memory-only caching, chosen by the caller: no warning).
    pub fn disabled() -> DiskStore {
        DiskStore {
            inner: Arc::new(Inner {
                dir: PathBuf::new(),
                mode: DiskMode::Disabled,
                levels: Vec::new(),
                budget: 0,
                index: Mutex::new(Index::default()),
                counters: Counters::default(),
                warnings: Mutex::new(Vec::new()),
                priority: RwLock::new(None),
                fail_writes: std::sync::atomic::AtomicBool::new(false),
                manifest: None,
                manifest_seen: Mutex::new(None),
                superseded: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How the folder is used.
    pub fn mode(&self) -> DiskMode {
        self.inner.mode
    }

    /// Warnings about the folder (read-only, unreadable manifest, failed writes), oldest first.
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

    fn level(&self, key: SliceKey) -> Option<&LevelInfo> {
        self.inner
            .levels
            .get(key.level as usize)
            .filter(|l| key.level > 0 && key.z < l.depth)
    }

    /// The blob of `key` if a valid one is on disk. A damaged blob is counted, removed and
    /// reported as a miss.
    pub fn get(&self, key: SliceKey) -> Option<Blob> {
        let counters = &self.inner.counters;
        let Some(level) = self
            .level(key)
            .filter(|_| self.inner.mode != DiskMode::Disabled)
        else {
            counters.misses.incr();
            return None;
        };
        let path = blob_path(&self.inner.dir, key);
        // A file larger than any blob of this slice can be is not read into memory at all.
        let longest = codec::max_blob_len(level);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
            && meta.len() > longest
        {
            let reason = format!(
                "{} bytes, more than a blob of it can hold ({longest})",
                meta.len()
            );
            self.discard_corrupt(key, &path, &reason);
            counters.misses.incr();
            return None;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.warn(format!("reading {}: {e}", path.display()));
                }
                lock(&self.inner.index).forget(key);
                counters.misses.incr();
                return None;
            }
        };
        match codec::verify(&bytes, level, key.z) {
            Ok(_) => {
                lock(&self.inner.index).touch(key, bytes.len() as u64);
                counters.hits.incr();
                Some(bytes.into())
            }
            Err(e) => {
                self.discard_corrupt(key, &path, &e.to_string());
                counters.misses.incr();
                None
            }
        }
    }

    /// Records that the blob of `key` is damaged (found by a later decode): counted and removed.
    pub fn report_corrupt(&self, key: SliceKey, reason: &str) {
        let path = blob_path(&self.inner.dir, key);
        self.discard_corrupt(key, &path, reason);
    }

    fn discard_corrupt(&self, key: SliceKey, path: &Path, reason: &str) {
        self.inner.counters.corrupt.incr();
        lock(&self.inner.index).forget(key);
        if self.inner.mode == DiskMode::ReadWrite {
            let _ = std::fs::remove_file(path);
        }
        self.warn(format!(
            "damaged cache blob {} ({reason}): removed, will be rebuilt",
            path.display()
        ));
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
        if self.level(key).is_none() {
            return Err(Error::invalid(
                "blob key",
                format!("{key} is outside the pyramid's cached levels"),
            ));
        }
        if !self.manifest_still_ours() {
            return Ok(());
        }
        let path = blob_path(&self.inner.dir, key);
        let injected = self
            .inner
            .fail_writes
            .load(std::sync::atomic::Ordering::Relaxed);
        let written = if injected {
            Err(Error::io(
                "writing",
                &path,
                std::io::Error::other("injected write error (fault test)"),
            ))
        } else {
            Ok(())
        };
        let written = written.and_then(|()| {
            path.parent()
                .map_or(Ok(()), |p| {
                    std::fs::create_dir_all(p).map_err(|e| Error::io("creating", p, e))
                })
                .and_then(|()| fsutil::write_atomic(&path, blob))
        });
        if let Err(e) = written {
            self.inner.counters.write_errors.incr();
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
        self.inner
            .fail_writes
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the folder's manifest is still the one this store opened with. Another process
    /// that opens the folder for a changed stack rewrites it; from then on this store's slices
    /// may come from old sources and must not be written where the new manifest vouches for
    /// them, so writing stops (with a warning). One `stat` per write; the file is read only
    /// when it changed.
    fn manifest_still_ours(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.inner.superseded.load(Ordering::Relaxed) {
            return false;
        }
        let path = self.inner.dir.join(MANIFEST);
        let now = stamp(&path);
        let mut seen = lock(&self.inner.manifest_seen);
        if now.is_some() && now == *seen {
            return true;
        }
        let same = Manifest::load(&path)
            .ok()
            .flatten()
            .is_some_and(|m| Some(&m) == self.inner.manifest.as_ref());
        if same {
            *seen = now;
            return true;
        }
        drop(seen);
        self.inner.superseded.store(true, Ordering::Relaxed);
        self.warn(format!(
            "{} was rewritten by another process for a changed stack; this process stops \
             writing to the cache folder (reopen to use it again)",
            path.display()
        ));
        false
    }

    /// Whether a blob of `key` is known to be on disk (not checked).
    pub fn contains(&self, key: SliceKey) -> bool {
        lock(&self.inner.index).entries.contains_key(&key)
    }

    /// Removes the blob of `key`, if any.
    pub fn remove(&self, key: SliceKey) {
        lock(&self.inner.index).forget(key);
        if self.inner.mode == DiskMode::ReadWrite {
            let _ = std::fs::remove_file(blob_path(&self.inner.dir, key));
        }
    }

    /// Removes the least valuable blobs until they take at most 90% of the budget.
    fn enforce_budget(&self) {
        let budget = self.inner.budget;
        if self.inner.mode != DiskMode::ReadWrite {
            return;
        }
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
            if remove_blob(&blob_path(&self.inner.dir, key)) {
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
            writes: c.writes.get(),
            write_errors: c.write_errors.get(),
            evictions: c.evictions.get(),
            invalidated: c.invalidated.get(),
            bytes,
            blobs,
            budget: super::Budget(self.inner.budget),
            mode: self.inner.mode,
        }
    }
}
