//! The lazy pyramid: slices, regions, volumes and sections of any level, made on demand and kept
//! in the memory and disk tiers (see [`Pyramid`]).

mod flight;
mod request;
mod warmup;
mod zarr;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flight::{Flights, Role};
pub(crate) use request::Ctx;
pub use request::{Cancel, CancelOnDrop, Progress, ProgressFn, Request};

use crate::cascade::{PairReducer, StreamOptions, stream_shared};
use crate::demand::{Demand, DemandRanking};
use crate::error::{Error, Result};
use crate::export::{self, ExportReport};
use crate::geometry::{LevelInfo, LevelRule, Region, SliceKey, dependent_slice};
use crate::slice::{Pixels, Sample, SampleType, Slice};
use crate::source::{Stack, StackPattern};
use crate::store::{
    Budget, Counter, DiskMode, DiskOptions, DiskStats, DiskStore, Fingerprint, Hit, Manifest,
    MemoryStats, MemoryStore, PriorityFn, Tier, Tiers, default_cache_dir,
};
pub use warmup::{
    LevelReport, MAX_THREADS, Shard, ShardPlan, WarmupHandle, WarmupOptions, WarmupOutcome,
    WarmupProgress, WarmupReport,
};

/// Default memory budget: 512 MiB of compressed blobs.
pub const DEFAULT_MEMORY_BUDGET: u64 = 512 << 20;

/// An axis of a level's volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Columns: a section at fixed `x` is a YZ plane (`height` wide, `depth` tall).
    X,
    /// Rows: a section at fixed `y` is an XZ plane (`width` wide, `depth` tall).
    Y,
    /// Slices: a section at fixed `z` is the slice itself.
    Z,
}

/// Where a requested slice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Served {
    /// The memory tier (or a slice generated moments ago, still being stored).
    Memory,
    /// The disk tier (now promoted to memory).
    Disk,
    /// Generated for this request (or by a concurrent request it waited for).
    Generated,
    /// Decoded from its source file (level 0).
    Source,
    /// A tier behind the disk (an object store, say; see [`PyramidBuilder::with_tier`]), now
    /// in memory and on disk too.
    Remote,
}

impl Served {
    /// Lower-case name: `memory`, `disk`, `generated` or `source`.
    pub fn name(self) -> &'static str {
        match self {
            Served::Memory => "memory",
            Served::Disk => "disk",
            Served::Generated => "generated",
            Served::Source => "source",
            Served::Remote => "remote",
        }
    }

    fn from_hit(hit: Hit) -> Served {
        match hit {
            Hit::Lower(0) => Served::Disk,
            Hit::Lower(_) => Served::Remote,
            _ => Served::Memory,
        }
    }
}

/// A whole level: `depth` slices of `width` x `height`, z-major (slice after slice, each
/// row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    info: LevelInfo,
    pixels: Pixels,
}

impl Volume {
    /// The level's size and sample type.
    pub fn info(&self) -> LevelInfo {
        self.info
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.info.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.info.height
    }

    /// Number of slices.
    pub fn depth(&self) -> u32 {
        self.info.depth
    }

    /// The samples, z-major.
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }

    /// The samples as `T`, z-major, or `None` when the level's samples are not `T`.
    pub fn samples<T: Sample>(&self) -> Option<&[T]> {
        T::view(&self.pixels)
    }

    /// Takes the samples out.
    pub fn into_pixels(self) -> Pixels {
        self.pixels
    }

    /// A copy of slice `z`, or `None` outside `0..depth`.
    pub fn slice(&self, z: u32) -> Option<Slice> {
        if z >= self.info.depth {
            return None;
        }
        let n = self.info.slice_bytes();
        let bytes = &self.pixels.as_bytes()[z as usize * n..][..n];
        let mut s = Slice::zeroed(self.info.width, self.info.height, self.info.sample_type);
        s.pixels_mut().as_bytes_mut().copy_from_slice(bytes);
        Some(s)
    }
}

/// What [`Pyramid::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Source slices checked.
    pub sources: u64,
    /// Whether their contents were hashed (the content check is on).
    pub content: bool,
    /// Positions (z) of the source slices that changed.
    pub changed: Vec<u32>,
    /// Cached slices dropped because they were made from a changed source slice (of every
    /// level the stack can have, stored or not).
    pub dropped: u64,
}

/// What a pyramid has done so far.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PyramidStats {
    /// The memory tier's counters.
    pub memory: MemoryStats,
    /// The disk tier's counters.
    pub disk: DiskStats,
    /// Blobs generated (lazily or by a streaming build).
    pub generated: u64,
    /// Requests that waited for another request's generation instead of repeating it.
    pub coalesced: u64,
    /// Streaming builds run (whole-level requests on levels not fully stored).
    pub stream_builds: u64,
    /// Source slices read: decoded whole, or in part (a level-0 [`Pyramid::region`] of a
    /// file that holds its samples as they are reads only the region's rows; see
    /// `source_bytes` for how much was read).
    pub source_slices: u64,
    /// Bytes of source files read.
    pub source_bytes: u64,
    /// Bytes of blobs stored (both tiers get each blob once).
    pub stored_bytes: u64,
    /// Time spent generating (decoding sources, reducing, encoding, storing), summed over
    /// threads.
    pub generating: Duration,
    /// Requests per level so far (index = level).
    pub requests: Vec<u64>,
}

/// Settings of a [`Pyramid`]; see [`Pyramid::builder`].
#[must_use]
#[derive(Debug, Clone)]
pub struct PyramidBuilder {
    dir: PathBuf,
    pattern: Option<StackPattern>,
    cache_dir: Option<PathBuf>,
    disk_cache: bool,
    memory_budget: Budget,
    disk_budget: Budget,
    rule: LevelRule,
    pool: Option<Arc<rayon::ThreadPool>>,
    decode_threads: Option<usize>,
    demand_priority: bool,
    content_check: bool,
    behind: Vec<Arc<dyn Tier>>,
    #[cfg(feature = "object-store")]
    remote: Option<crate::store::ObjectStoreOptions>,
    voxel_size: Option<[f64; 3]>,
}

impl PyramidBuilder {
    /// Reads the stack with an explicit file-name pattern instead of detecting it.
    /// Default: detection (see [`Stack`]).
    pub fn with_pattern(mut self, pattern: StackPattern) -> Self {
        self.pattern = Some(pattern);
        self
    }

    /// The cache folder. Default: `<stack>/.lodcache`, or a per-user folder when the stack
    /// folder is read-only ([`default_cache_dir`]).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Whether to keep blobs on disk at all (`false`: memory only, nothing written).
    /// Default: `true`.
    pub fn with_disk_cache(mut self, enabled: bool) -> Self {
        self.disk_cache = enabled;
        self
    }

    /// Bytes of compressed blobs kept in memory. Default: [`DEFAULT_MEMORY_BUDGET`] (512 MiB).
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Budget(bytes);
        self
    }

    /// Bytes of blobs kept on disk. Default: `u64::MAX` (unbounded; a full pyramid of a
    /// 16-bit stack takes at most a seventh of the source's raw size).
    pub fn with_disk_budget(mut self, bytes: u64) -> Self {
        self.disk_budget = Budget(bytes);
        self
    }

    /// Levels are made while the larger side exceeds `edge` pixels. Default: 500.
    pub fn with_edge(mut self, edge: u32) -> Self {
        self.rule.edge = edge;
        self
    }

    /// The whole level rule (edge and optional cap on the level count).
    /// Default: [`LevelRule::default`].
    pub fn with_level_rule(mut self, rule: LevelRule) -> Self {
        self.rule = rule;
        self
    }

    /// The rayon pool kernels run on. Default: the caller's current pool.
    pub fn with_thread_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Decoder threads of streaming builds. Default: 2, or 1 on a one-core machine.
    pub fn with_decode_threads(mut self, threads: usize) -> Self {
        self.decode_threads = Some(threads);
        self
    }

    /// Whether the tiers keep the most requested levels over the others under pressure
    /// (`false`: plain least-recently-used). Default: `true`.
    pub fn with_demand_priority(mut self, enabled: bool) -> Self {
        self.demand_priority = enabled;
        self
    }

    /// Whether to fingerprint each source slice by its whole content as well as by its name,
    /// size and modification time: catches a slice rewritten with the same size and a restored
    /// modification time (`cp -p`, `rsync -t`), at the price of reading every source file when
    /// the pyramid opens. See also [`Pyramid::verify`]. Default: `false`.
    pub fn with_content_check(mut self, enabled: bool) -> Self {
        self.content_check = enabled;
        self
    }

    /// Adds a tier behind the disk (an object store shared by several machines, say): asked
    /// after memory and disk, written with every stored blob. Tiers added first are asked
    /// first. Default: none.
    pub fn with_tier(mut self, tier: Arc<dyn Tier>) -> Self {
        self.behind.push(tier);
        self
    }

    /// Adds the object store at `url` (`s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`) behind the disk tier, with the default
    /// [`crate::store::ObjectStoreOptions`] (server and credentials from the environment:
    /// `AWS_*`, `GOOGLE_*`, `AZURE_*`): memory, then the local cache folder, then the store, then
    /// generating. Every machine that opens the same scan (at whatever path) with the same URL
    /// shares its blobs; see [`crate::store::object`]. The sources are then fingerprinted
    /// without inode numbers ([`Manifest::portable`]), and the cache folder defaults to a
    /// per-user folder ([`crate::store::default_local_cache_dir`]). Feature `object-store`.
    /// Default: none.
    #[cfg(feature = "object-store")]
    pub fn with_cache_url(self, url: impl Into<String>) -> Self {
        self.with_object_store(crate::store::ObjectStoreOptions::new(url))
    }

    /// [`PyramidBuilder::with_cache_url`] with every option of the store. Feature
    /// `object-store`. Default: none.
    #[cfg(feature = "object-store")]
    pub fn with_object_store(mut self, options: crate::store::ObjectStoreOptions) -> Self {
        self.remote = Some(options);
        self
    }

    /// The physical size of a level-0 voxel, `[x, y, z]` in micrometres, overriding what the
    /// stack says (TIFF resolution tags, ImageJ's description, a scanner log; see
    /// [`crate::VoxelSize`]). Default: read from the stack.
    pub fn with_voxel_size(mut self, xyz: [f64; 3]) -> Self {
        self.voxel_size = Some(xyz);
        self
    }

    /// Opens the stack and the cache folder.
    ///
    /// # Errors
    /// The stack's errors ([`Error::StackNotFound`], [`Error::NoImages`], decoding errors of
    /// the first slice), [`Error::InvalidArgument`] for an edge of 0 or 0 decoder threads (or a
    /// cache URL that is not one), [`Error::Io`] when a source file cannot be stat'ed, and
    /// [`Error::ObjectStore`] when the object store given cannot be opened (credentials
    /// refused, no such bucket, no answer). A cache folder that cannot be used
    /// is not an error: the pyramid caches in memory only and says so in
    /// [`Pyramid::warnings`].
    pub fn build(self) -> Result<Pyramid> {
        if self.rule.edge == 0 {
            return Err(Error::invalid("level edge", "0; it must be at least 1"));
        }
        if self.decode_threads == Some(0) {
            return Err(Error::invalid("decode threads", "0; it must be at least 1"));
        }
        let stack = match &self.pattern {
            Some(p) => Stack::open_pattern(&self.dir, p)?,
            None => Stack::open(&self.dir)?,
        };
        let levels = stack.levels(&self.rule)?;
        let voxel = match self.voxel_size {
            Some(xyz) => Some(crate::voxel::VoxelSize::user(xyz)?),
            None => stack.voxel_size(),
        };
        let mut manifest = Manifest::of(&stack)?;
        if self.content_check {
            manifest = manifest.with_content(&stack, content_threads())?;
        }
        #[cfg(feature = "object-store")]
        if self.remote.is_some() {
            manifest = manifest.portable();
        }
        let fingerprint = Fingerprint::of(&manifest);
        #[cfg(feature = "object-store")]
        let remote = match &self.remote {
            Some(options) => Some(crate::store::ObjectStoreTier::open(
                options,
                &manifest,
                fingerprint.clone(),
            )?),
            None => None,
        };
        let default_dir = || {
            #[cfg(feature = "object-store")]
            if let Some(options) = &self.remote {
                return crate::store::default_local_cache_dir(&self.dir, &options.url);
            }
            default_cache_dir(&self.dir)
        };
        let disk = if self.disk_cache {
            let dir = self.cache_dir.clone().unwrap_or_else(default_dir);
            let options = DiskOptions::new(dir).with_budget(self.disk_budget.0);
            DiskStore::open_with(&options, &manifest, fingerprint)
        } else {
            DiskStore::disabled_with(fingerprint)
        };
        let mut stream = StreamOptions {
            rule: self.rule,
            ..StreamOptions::default()
        };
        if let Some(t) = self.decode_threads {
            stream.decode_threads = t;
        }
        let requests = levels.iter().map(|_| Counter::default()).collect();
        let demand = Arc::new(if disk.mode() == DiskMode::ReadWrite {
            Demand::open(disk.dir())
        } else {
            Demand::in_memory()
        });
        #[cfg_attr(
            not(feature = "object-store"),
            expect(unused_mut, reason = "only the store adds")
        )]
        let mut behind = self.behind;
        #[cfg(feature = "object-store")]
        if let Some(tier) = &remote {
            behind.insert(0, Arc::new(tier.clone()));
        }
        let tiers = Tiers::with_pool(
            MemoryStore::new(self.memory_budget.0),
            disk,
            behind,
            stream.decode_threads,
            self.pool.clone(),
        );
        if self.demand_priority {
            // Priority classes at powers of two of the score: levels 4x or more apart always
            // fall in different classes (the hotter one wins outright), closer ones may share a
            // class and then share the tiers by recency.
            let ranked = Arc::clone(&demand);
            let priority: PriorityFn =
                Arc::new(move |key: SliceKey| (1.0 + ranked.level_score(key.level)).log2().floor());
            tiers.set_priority(priority);
        }
        Ok(Pyramid {
            inner: Arc::new(Inner {
                demand,
                tiers,
                manifest: std::sync::Mutex::new(manifest),
                #[cfg(feature = "object-store")]
                remote,
                helpers: Helpers::default(),
                stack,
                levels,
                voxel,
                stream,
                pool: self.pool,
                slices: Flights::default(),
                streams: Flights::default(),
                counters: Counters {
                    requests,
                    ..Counters::default()
                },
            }),
        })
    }
}

/// Threads hashing source files for the content check: the cores, at most 8 (reading is the
/// limit beyond that).
fn content_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

#[derive(Debug, Default)]
struct Counters {
    generated: Counter,
    coalesced: Counter,
    stream_builds: Counter,
    source_slices: Counter,
    source_bytes: Counter,
    generating_ns: Counter,
    requests: Vec<Counter>,
}

#[derive(Debug)]
struct Inner {
    stack: Stack,
    levels: Vec<LevelInfo>,
    /// The level-0 voxel size: given, or read from the stack.
    voxel: Option<crate::voxel::VoxelSize>,
    stream: StreamOptions,
    /// Every tier, and storing behind the requests.
    tiers: Tiers,
    /// The sources as last fingerprinted (updated by [`Pyramid::verify`]).
    manifest: std::sync::Mutex<Manifest>,
    /// The object store behind the disk, if any.
    #[cfg(feature = "object-store")]
    remote: Option<crate::store::ObjectStoreTier>,
    pool: Option<Arc<rayon::ThreadPool>>,
    demand: Arc<Demand>,
    /// Helper threads generating halves of slices now (at most twice the core count).
    helpers: Helpers,
    slices: Flights<SliceKey, (Arc<Slice>, Served)>,
    streams: Flights<u32, ()>,
    counters: Counters,
}

/// Counts helper threads, so that a deep request does not start one per slice it needs. Twice
/// the core count: a request for a level-3 slice then makes its four level-1 slices on four
/// threads at once, which shares the cores evenly (with one per core, one thread made two of
/// them after the others had finished: 12.5-14.6 ms instead of 15.2-16.8 ms on 2 cores).
#[derive(Debug)]
struct Helpers {
    running: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl Default for Helpers {
    fn default() -> Self {
        Helpers {
            running: std::sync::atomic::AtomicUsize::new(0),
            limit: 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// One helper thread's place; given back on drop.
struct HelperPlace<'a>(&'a std::sync::atomic::AtomicUsize);

impl Helpers {
    /// A place for one more helper thread, if fewer than the limit are running.
    fn enter(&self) -> Option<HelperPlace<'_>> {
        use std::sync::atomic::Ordering;
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| HelperPlace(&self.running))
    }
}

impl Drop for HelperPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The storer's own drop finishes its queue; the statistics are saved here.
        if let Err(e) = self.demand.save() {
            log::warn!("lodcache: request statistics not saved: {e}");
        }
    }
}

/// A CT stack's level-of-detail pyramid: slices, regions, volumes and sections of any level,
/// made on demand and kept in the memory and disk tiers.
///
/// # Serving order
/// A request for slice `z` of level `n >= 1` is served from the memory tier, else from the disk
/// tier (and promoted to memory), else generated from slices `2z` and `2z + 1` of level
/// `n - 1`, which are requested the same way (the two at once, while helper threads are
/// free); level 1 is made straight from its two source files
/// ([`PairReducer::reduce_pair`]). Every slice generated on the way is stored in both
/// tiers. Storing (encoding and writing) happens behind the request on background threads,
/// which hold back while requests are in progress, so a request waits for reading and the
/// kernel only; until a slice is stored it is served from the pending map. Waiting slices share
/// the memory budget with the memory tier: past it, a request waits for room (see the storer's
/// docs in `pyramid/storer.rs`). [`Pyramid::flush`] waits for the stores in flight.
///
/// Whole-level requests ([`Pyramid::volume`], [`Pyramid::section`], [`Pyramid::export_ctharvester`])
/// on a level that is not fully stored run the streaming builder ([`crate::stream_levels`]) once
/// over the sources, handing every slice of every level up to the one asked for to the storing
/// threads: each source byte is read once, and memory stays bounded by the budget plus a few
/// slices per thread.
///
/// # Concurrency
/// [`Pyramid`] is `Send + Sync` and cheap to clone (clones share everything). Concurrent
/// requests for the same missing slice, or the same missing level, compute it once
/// (single-flight); no lock is held while a kernel runs. On a rayon worker thread a request never
/// blocks on another one's work (it computes on its own instead), which keeps calls from inside
/// `par_iter` free of deadlocks. Kernels and blob decoding run on the pool given to
/// [`PyramidBuilder::with_thread_pool`], else on the current pool of the thread doing the
/// work (the global pool for plain threads, lodcache's helper threads included); lodcache never
/// configures the global pool. Source files are read on the calling thread and, outside rayon
/// workers, a helper thread (lazy requests) or on the streaming builder's own reading threads
/// (whole levels).
#[derive(Debug, Clone)]
pub struct Pyramid {
    inner: Arc<Inner>,
}

impl Pyramid {
    /// Settings for the stack in folder `dir`; finish with [`PyramidBuilder::build`].
    pub fn builder(dir: impl AsRef<Path>) -> PyramidBuilder {
        PyramidBuilder {
            dir: dir.as_ref().to_path_buf(),
            pattern: None,
            cache_dir: None,
            disk_cache: true,
            memory_budget: Budget(DEFAULT_MEMORY_BUDGET),
            disk_budget: Budget::UNLIMITED,
            rule: LevelRule::default(),
            pool: None,
            decode_threads: None,
            demand_priority: true,
            content_check: false,
            behind: Vec::new(),
            #[cfg(feature = "object-store")]
            remote: None,
            voxel_size: None,
        }
    }

    /// The pyramid of the stack in `dir` with every default.
    ///
    /// # Errors
    /// As [`PyramidBuilder::build`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Pyramid> {
        Pyramid::builder(dir).build()
    }

    /// Every level, level 0 (the source) first.
    pub fn levels(&self) -> &[LevelInfo] {
        &self.inner.levels
    }

    /// The source stack.
    pub fn stack(&self) -> &Stack {
        &self.inner.stack
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryStore {
        self.inner.tiers.memory()
    }

    /// The disk tier.
    pub fn disk(&self) -> &DiskStore {
        self.inner.tiers.disk()
    }

    /// Every tier (memory, disk and any behind it), as one.
    pub fn tiers(&self) -> &Tiers {
        &self.inner.tiers
    }

    /// The object store behind the disk, if the pyramid has one
    /// ([`PyramidBuilder::with_cache_url`]). Feature `object-store`.
    #[cfg(feature = "object-store")]
    pub fn object_store(&self) -> Option<&crate::store::ObjectStoreTier> {
        self.inner.remote.as_ref()
    }

    /// Warnings about the cache (read-only or unusable folder, damaged blobs found).
    pub fn warnings(&self) -> Vec<String> {
        let mut all = self.inner.tiers.warnings();
        all.extend(self.inner.demand.warnings());
        all
    }

    /// What users have asked for, most requested level first (decayed request counts, this
    /// run's and earlier runs' on the same cache folder; see [`DemandRanking`]). Levels this
    /// pyramid's rule does not have (asked for under another edge) are not shown; their
    /// counts are kept for a rule that has them.
    pub fn demand(&self) -> DemandRanking {
        self.inner.demand.ranking(self.level_count())
    }

    fn level(&self, level: u32) -> Result<LevelInfo> {
        let levels = &self.inner.levels;
        levels.get(level as usize).copied().ok_or_else(|| {
            Error::invalid(
                "level",
                format!("{level}; this pyramid has levels 0..={}", levels.len() - 1),
            )
        })
    }

    fn check_z(info: &LevelInfo, z: u32) -> Result<()> {
        if z >= info.depth {
            return Err(Error::invalid(
                "slice index",
                format!("{z} at level {}; valid: 0..={}", info.level, info.depth - 1),
            ));
        }
        Ok(())
    }

    /// Counts a request for slice `z` of `level` (statistics, and demand unless the call says
    /// otherwise).
    fn count_slice(&self, ctx: &Ctx<'_>, level: u32, z: u32) {
        if let Some(c) = self.inner.counters.requests.get(level as usize) {
            c.incr();
        }
        if ctx.demand {
            self.inner.demand.record(SliceKey::new(level, z));
        }
    }

    /// Counts a request for slice `z` of `level` that the application answered from its own
    /// cache (a server's cache of encoded tiles, say), exactly as a [`Pyramid::slice`] call
    /// would count it: in the statistics' requests and as demand, so that what users look at
    /// ranks the levels for warm-up even when most of it never reaches the pyramid again.
    /// Do not call it for a request the pyramid served (that one is counted already), nor for
    /// one that should not count as demand (see [`Request::without_demand`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a level or slice index out of range (nothing counted).
    pub fn record_request(&self, level: u32, z: u32) -> Result<()> {
        let info = self.level(level)?;
        Self::check_z(&info, z)?;
        self.count_slice(&Ctx::counted(), level, z);
        Ok(())
    }

    /// Counts a request for the whole of `level`.
    fn count_level(&self, ctx: &Ctx<'_>, level: u32) {
        if let Some(c) = self.inner.counters.requests.get(level as usize) {
            c.incr();
        }
        if ctx.demand {
            self.inner.demand.record_level(level, 1.0);
        }
    }

    /// Options for one call: cancellation, progress, demand (see [`Request`]).
    pub fn request(&self) -> Request<'_> {
        Request {
            pyramid: self,
            ctx: Ctx::counted(),
        }
    }

    /// The number of levels, level 0 (the source) included: at least 1.
    pub fn level_count(&self) -> u32 {
        self.inner.levels.len() as u32
    }

    /// The last (smallest) level: level 0 when the stack is not above the rule's edge.
    pub fn coarsest(&self) -> LevelInfo {
        // A pyramid always has level 0.
        self.inner.levels[self.inner.levels.len() - 1]
    }

    /// Slice `z` of `level`: level 0 is decoded from its source file, other levels come from
    /// the tiers or are generated (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the valid range when `level` or `z` is out of range;
    /// decoding errors of the source files involved, naming the file.
    pub fn slice(&self, level: u32, z: u32) -> Result<Slice> {
        self.slice_served(level, z).map(|(s, _)| s)
    }

    /// [`Pyramid::slice`], also saying where the slice came from (for viewers that show it,
    /// and for measuring the tiers).
    ///
    /// # Errors
    /// As [`Pyramid::slice`].
    pub fn slice_served(&self, level: u32, z: u32) -> Result<(Slice, Served)> {
        self.slice_in(&Ctx::counted(), level, z)
    }

    pub(crate) fn slice_in(&self, ctx: &Ctx<'_>, level: u32, z: u32) -> Result<(Slice, Served)> {
        let _foreground = self.inner.tiers.enter();
        let info = self.level(level)?;
        Self::check_z(&info, z)?;
        self.count_slice(ctx, level, z);
        ctx.check()?;
        if level == 0 {
            let mut out = Slice::zeroed(0, 0, self.sample_type());
            self.read_sources(ctx, z..z + 1, &mut out, |_, _| Ok(()))?;
            return Ok((out, Served::Source));
        }
        self.level_slice_served(ctx, SliceKey::new(level, z))
            .map(|(s, from)| {
                (
                    Arc::try_unwrap(s).unwrap_or_else(|shared| (*shared).clone()),
                    from,
                )
            })
    }

    /// The rectangle `region` of slice `z` of `level`. At level 0, a source file that holds
    /// its samples as they are (an uncompressed gray TIFF in strips, either byte order, or an
    /// uncompressed 8-bit gray BMP) is read only in the region's rows; any other file is
    /// decoded whole. [`PyramidStats::source_bytes`] counts what was read.
    ///
    /// # Errors
    /// As [`Pyramid::slice`], and [`Error::InvalidArgument`] when the rectangle is empty or
    /// leaves the slice.
    pub fn region(&self, level: u32, z: u32, region: Region) -> Result<Slice> {
        self.region_in(&Ctx::counted(), level, z, region)
    }

    pub(crate) fn region_in(
        &self,
        ctx: &Ctx<'_>,
        level: u32,
        z: u32,
        region: Region,
    ) -> Result<Slice> {
        let info = self.level(level)?;
        if !region.fits(info.width, info.height) {
            return Err(Error::invalid(
                "region",
                format!(
                    "{region} at level {level}; the level is {} x {} and the region must be \
                     non-empty and inside it",
                    info.width, info.height
                ),
            ));
        }
        if level == 0 {
            return self.source_region(ctx, &info, z, region);
        }
        let (whole, _) = self.slice_in(ctx, level, z)?;
        let mut out = Slice::zeroed(region.width, region.height, info.sample_type);
        copy_rect(&info, region, 0, whole.pixels().as_bytes(), &mut out);
        Ok(out)
    }

    /// Rows `y..y + height` of source slice `z` (level 0), full width, read straight from its
    /// file when the file holds its samples as they are (an uncompressed gray TIFF in strips,
    /// either byte order, or an uncompressed 8-bit gray BMP): a `width x height` slice.
    /// `None` when the file must be decoded whole (a compressed TIFF, PNG, JPEG, ...): then
    /// only the file's header was read and nothing is counted, and the caller asks for the
    /// whole slice ([`Pyramid::slice`]) instead, which it may keep for the next band.
    ///
    /// What a server answering level-0 chunks or tiles wants: a chunk of a plain file costs
    /// its rows, not the whole slice. Counted as a [`Pyramid::region`] is: one request of
    /// level 0 (and demand), one source slice, and the bytes of the rows in
    /// [`PyramidStats::source_bytes`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the valid range when `z` is out of range or the rows
    /// are empty or leave the slice; the file's errors, naming it (a file cut short, a size or
    /// sample type that differs from the first slice's).
    pub fn source_rows(&self, z: u32, y: u32, height: u32) -> Result<Option<Slice>> {
        self.source_rows_in(&Ctx::counted(), z, y, height)
    }

    pub(crate) fn source_rows_in(
        &self,
        ctx: &Ctx<'_>,
        z: u32,
        y: u32,
        height: u32,
    ) -> Result<Option<Slice>> {
        let _foreground = self.inner.tiers.enter();
        let info = self.level(0)?;
        Self::check_z(&info, z)?;
        let band = Region::new(0, y, info.width, height);
        if !band.fits(info.width, info.height) {
            return Err(Error::invalid(
                "source rows",
                format!(
                    "{height} rows from row {y}; the source slices are {} rows high and the \
                     rows must be at least one and inside them",
                    info.height
                ),
            ));
        }
        ctx.check()?;
        let mut reader = self.inner.stack.reader();
        let Some(mut rows) = reader.rows(z)? else {
            return Ok(None);
        };
        self.count_slice(ctx, 0, z);
        let mut out = Slice::zeroed(info.width, height, info.sample_type);
        let len = out.pixels().as_bytes().len();
        let result = rows.read(y, height, out.pixels_mut().as_bytes_mut());
        if result.is_ok() {
            reader.count_read(len as u64);
        }
        self.inner.counters.source_bytes.add(reader.bytes_read());
        result?;
        self.inner.counters.source_slices.incr();
        Ok(Some(out))
    }

    /// The rectangle `region` (inside the slice) of source slice `z`: its rows only when the
    /// file allows ([`Pyramid::source_rows`]), else the slice decoded whole. Counted as one
    /// source slice either way; `source_bytes` counts the bytes of the rows read (the file's
    /// header is not counted, as for the level-1 reduction by rows).
    fn source_region(
        &self,
        ctx: &Ctx<'_>,
        info: &LevelInfo,
        z: u32,
        region: Region,
    ) -> Result<Slice> {
        if let Some(band) = self.source_rows_in(ctx, z, region.y, region.height)? {
            if region.width == info.width {
                return Ok(band);
            }
            let mut out = Slice::zeroed(region.width, region.height, info.sample_type);
            copy_rect(info, region, region.y, band.pixels().as_bytes(), &mut out);
            return Ok(out);
        }
        let _foreground = self.inner.tiers.enter();
        self.count_slice(ctx, 0, z);
        ctx.check()?;
        let mut reader = self.inner.stack.reader();
        let mut whole = Slice::zeroed(0, 0, info.sample_type);
        let result = reader.read_into(z, &mut whole);
        self.inner.counters.source_bytes.add(reader.bytes_read());
        result?;
        self.inner.counters.source_slices.incr();
        let mut out = Slice::zeroed(region.width, region.height, info.sample_type);
        copy_rect(info, region, 0, whole.pixels().as_bytes(), &mut out);
        Ok(out)
    }

    /// The whole of `level`, z-major. A level not fully stored yet is built in one streaming
    /// pass over the sources, which stores every slice of it and of the levels below it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level out of range; decoding errors naming the file.
    pub fn volume(&self, level: u32) -> Result<Volume> {
        self.volume_in(&Ctx::counted(), level)
    }

    pub(crate) fn volume_in(&self, ctx: &Ctx<'_>, level: u32) -> Result<Volume> {
        let _foreground = self.inner.tiers.enter();
        let info = self.level(level)?;
        self.count_level(ctx, level);
        let n = info.slice_bytes();
        let mut pixels = Pixels::zeroed(info.sample_type, info.slice_len() * info.depth as usize);
        {
            let bytes = pixels.as_bytes_mut();
            self.each_slice(ctx, &[level], &mut |_, z, s| {
                bytes[z as usize * n..][..n].copy_from_slice(s.pixels().as_bytes());
                Ok(())
            })?;
        }
        Ok(Volume { info, pixels })
    }

    /// The plane of `level` at `index` across `axis`: for [`Axis::Y`] the XZ plane of row
    /// `index` (`width` x `depth`), for [`Axis::X`] the YZ plane of column `index`
    /// (`height` x `depth`), for [`Axis::Z`] slice `index`. Row `z` of the result is slice `z`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the valid range when `level` or `index` is out of
    /// range; decoding errors naming the file.
    pub fn section(&self, level: u32, axis: Axis, index: u32) -> Result<Slice> {
        self.section_in(&Ctx::counted(), level, axis, index)
    }

    pub(crate) fn section_in(
        &self,
        ctx: &Ctx<'_>,
        level: u32,
        axis: Axis,
        index: u32,
    ) -> Result<Slice> {
        let _foreground = self.inner.tiers.enter();
        let info = self.level(level)?;
        let (extent, out_w) = match axis {
            Axis::X => (info.width, info.height),
            Axis::Y => (info.height, info.width),
            Axis::Z => return self.slice_in(ctx, level, index).map(|(s, _)| s),
        };
        if index >= extent {
            return Err(Error::invalid(
                "section index",
                format!(
                    "{index} across {axis:?} at level {level}; valid: 0..={}",
                    extent - 1
                ),
            ));
        }
        self.count_level(ctx, level);
        let s = info.sample_type.bytes();
        let row = out_w as usize * s;
        let w = info.width as usize;
        let mut out = Slice::zeroed(out_w, info.depth, info.sample_type);
        {
            let dst = out.pixels_mut().as_bytes_mut();
            self.each_slice(ctx, &[level], &mut |_, z, slice| {
                let src = slice.pixels().as_bytes();
                let line = &mut dst[z as usize * row..][..row];
                match axis {
                    Axis::Y => {
                        line.copy_from_slice(&src[index as usize * w * s..][..row]);
                    }
                    _ => {
                        for (y, px) in line.chunks_exact_mut(s).enumerate() {
                            let at = (y * w + index as usize) * s;
                            px.copy_from_slice(&src[at..at + s]);
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Writes `levels` (all levels >= 1 when `None`) in CTHarvester's layout under `out`
    /// (`out/<n>/<i:06>.tif`), reading through the cache: stored slices are served from it and
    /// missing ones are built and stored on the way. Level folders already in `out` are
    /// replaced only after the whole export succeeded.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level outside `1..` the pyramid's last level; decoding
    /// errors naming the source file; [`Error::Io`]/[`Error::Encode`] naming the file that
    /// could not be written. On error `out` is left as it was.
    pub fn export_ctharvester(
        &self,
        out: impl AsRef<Path>,
        levels: Option<&[u32]>,
    ) -> Result<ExportReport> {
        self.export_ctharvester_in(&Ctx::counted(), out.as_ref(), levels)
    }

    pub(crate) fn export_ctharvester_in(
        &self,
        ctx: &Ctx<'_>,
        out: &Path,
        levels: Option<&[u32]>,
    ) -> Result<ExportReport> {
        let _foreground = self.inner.tiers.enter();
        let wanted = export::wanted_levels(&self.inner.stack, &self.inner.stream.rule, levels)?;
        for &l in &wanted {
            self.count_level(ctx, l);
        }
        let from_cache = wanted
            .iter()
            .map(|&l| {
                let depth = self.inner.levels[l as usize].depth;
                (0..depth)
                    .filter(|&z| self.is_stored(SliceKey::new(l, z)))
                    .count() as u64
            })
            .sum();
        let before = self.stats();
        let voxel = self.inner.voxel.clone();
        let (files, bytes) = export::write_ctharvester(out, &wanted, voxel.as_ref(), |sink| {
            self.each_slice(ctx, &wanted, &mut |level, z, slice| sink(level, z, slice))
        })?;
        let after = self.stats();
        Ok(ExportReport {
            levels: wanted
                .iter()
                .map(|&l| self.inner.levels[l as usize])
                .collect(),
            files,
            bytes,
            source_bytes: after.source_bytes - before.source_bytes,
            generated: after.generated - before.generated,
            from_cache,
            stream: None,
        })
    }

    /// Checks the sources again and drops from every tier exactly the slices made from a source
    /// slice that changed since the pyramid opened (or since the last verification): its name,
    /// size and modification time are read again and, when the pyramid was opened with the
    /// content check ([`PyramidBuilder::with_content_check`]), its whole content is hashed
    /// again. The cache folder's manifest is updated, so other processes see the change too.
    ///
    /// Without the content check, a slice rewritten with the same size and a restored
    /// modification time cannot be told apart; with it, it can.
    ///
    /// # Errors
    /// [`Error::Io`] naming a source file that cannot be read (nothing is dropped then).
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut manifest = self
            .inner
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now = Manifest::of(&self.inner.stack)?;
        if manifest.has_content() {
            now = now.with_content(&self.inner.stack, content_threads())?;
        }
        #[cfg(feature = "object-store")]
        if self.inner.remote.is_some() {
            now = now.portable();
        }
        let changed: Vec<u32> = manifest
            .sources
            .iter()
            .zip(&now.sources)
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .map(|(p, _)| p as u32)
            .collect();
        let levels = self.inner.tiers.fingerprint().levels();
        let mut dropped = std::collections::BTreeSet::new();
        for &p in &changed {
            for level in levels.iter().skip(1) {
                dropped.insert(SliceKey::new(level.level, dependent_slice(level.level, p)));
            }
        }
        if !changed.is_empty() {
            // The new fingerprint first: from now on no tier accepts a blob made from the old
            // sources, even one stored by a request that is still running.
            self.inner.tiers.fingerprint().update(&now);
            for &key in &dropped {
                self.inner.tiers.invalidate(key);
            }
            self.inner.tiers.disk().replace_manifest(&now);
            #[cfg(feature = "object-store")]
            if let Some(remote) = &self.inner.remote
                && let Err(e) = remote.replace_manifest(&now)
            {
                log::warn!("lodcache: {e}");
            }
            *manifest = now;
        }
        Ok(VerifyReport {
            sources: manifest.sources.len() as u64,
            content: manifest.has_content(),
            changed,
            dropped: dropped.len() as u64,
        })
    }

    /// Waits until every slice generated so far is stored in both tiers. Storing happens
    /// behind the requests (see the module docs); call this before reading the tiers'
    /// counters when they must be settled, or before handing the cache folder to another
    /// process. Dropping the last clone of a pyramid flushes too.
    pub fn flush(&self) {
        self.inner.tiers.flush();
        if let Err(e) = self.inner.demand.save() {
            log::warn!("lodcache: request statistics not saved: {e}");
        }
    }

    /// The counters so far (the tiers' counters lag behind requests by the slices still being
    /// stored; see [`Pyramid::flush`]).
    pub fn stats(&self) -> PyramidStats {
        let c = &self.inner.counters;
        PyramidStats {
            memory: self.inner.tiers.memory().stats(),
            disk: self.inner.tiers.disk().stats(),
            generated: c.generated.get(),
            coalesced: c.coalesced.get(),
            stream_builds: c.stream_builds.get(),
            source_slices: c.source_slices.get(),
            source_bytes: c.source_bytes.get(),
            stored_bytes: self.inner.tiers.stored_bytes(),
            generating: Duration::from_nanos(c.generating_ns.get()),
            requests: c.requests.iter().map(Counter::get).collect(),
        }
    }

    /// The one way level 0 is read: source slices `zs` in order, decoded into `out` (reused)
    /// and handed to `each`, counted, checking for cancellation before each.
    fn read_sources(
        &self,
        ctx: &Ctx<'_>,
        zs: std::ops::Range<u32>,
        out: &mut Slice,
        mut each: impl FnMut(u32, &Slice) -> Result<()>,
    ) -> Result<()> {
        let mut reader = self.inner.stack.reader();
        let result = zs.into_iter().try_for_each(|z| {
            ctx.check()?;
            reader.read_into(z, out)?;
            self.inner.counters.source_slices.incr();
            each(z, out)
        });
        self.inner.counters.source_bytes.add(reader.bytes_read());
        result
    }

    /// The stored slice of `key`, from whichever tier has it.
    fn stored(&self, key: SliceKey) -> Option<(Arc<Slice>, Served)> {
        self.inner
            .tiers
            .slice(key)
            .map(|(s, hit)| (s, Served::from_hit(hit)))
    }

    /// A slice of level >= 1: stored, or generated once however many threads ask at once.
    fn level_slice(&self, ctx: &Ctx<'_>, key: SliceKey) -> Result<Arc<Slice>> {
        self.level_slice_served(ctx, key).map(|(s, _)| s)
    }

    /// [`Pyramid::level_slice`], saying where the slice came from.
    fn level_slice_served(&self, ctx: &Ctx<'_>, key: SliceKey) -> Result<(Arc<Slice>, Served)> {
        if let Some(found) = self.stored(key) {
            return Ok(found);
        }
        ctx.check()?;
        let (result, role) = self.inner.slices.join(key, || {
            // It may have been stored between our miss and our flight.
            if let Some((s, hit)) = self.inner.tiers.upper(key) {
                return Ok((s, Served::from_hit(hit)));
            }
            self.generate(ctx, key).map(|s| (s, Served::Generated))
        });
        if role == Role::Waited {
            self.inner.counters.coalesced.incr();
        }
        result
    }

    /// A slice of `level` (>= 1) for generating the level above.
    fn child(&self, ctx: &Ctx<'_>, level: u32, z: u32) -> Result<Arc<Slice>> {
        self.level_slice(ctx, SliceKey::new(level, z))
    }

    fn generate(&self, ctx: &Ctx<'_>, key: SliceKey) -> Result<Arc<Slice>> {
        let started = Instant::now();
        let epoch = self.inner.tiers.fingerprint().epoch();
        let mut out = Slice::zeroed(0, 0, self.sample_type());
        if key.level == 1 {
            // Straight from the two source files, band by band where they allow it.
            let mut reader = PairReducer::new(&self.inner.stack);
            reader.reduce_pair(key.z, &mut out)?;
            let pair = if 2 * key.z + 1 < self.inner.stack.depth() {
                2
            } else {
                1
            };
            self.inner.counters.source_slices.add(pair);
            self.inner.counters.source_bytes.add(reader.bytes_read());
        } else {
            let below = self.inner.levels[key.level as usize - 1];
            let (first, second) = (2 * key.z, 2 * key.z + 1);
            let (a, b) = if second >= below.depth {
                (self.child(ctx, below.level, first)?, None)
            } else if rayon::current_thread_index().is_none()
                && let Some(_helper) = self.inner.helpers.enter()
            {
                // The two halves at once, the second on a plain helper thread (not a rayon
                // worker, so that it joins other requests' flights instead of repeating them).
                // Never from a rayon worker: the worker may be leading, lower in its own
                // stack, a flight that the helper would wait for while the worker waits for
                // the helper.
                let (a, b) = std::thread::scope(|scope| {
                    let helper = scope.spawn(|| self.child(ctx, below.level, second));
                    let a = self.child(ctx, below.level, first);
                    let b = helper.join().unwrap_or_else(|_| {
                        Err(Error::internal(
                            "slice generation",
                            "a helper thread panicked",
                        ))
                    });
                    (a, b)
                });
                (a?, Some(b?))
            } else {
                let a = self.child(ctx, below.level, first)?;
                (a, Some(self.child(ctx, below.level, second)?))
            };
            self.in_pool(|| crate::kernel::reduce_slices(&a, b.as_deref(), &mut out))?;
        }
        let out = Arc::new(out);
        if !ctx.no_store {
            self.inner.tiers.store(key, Arc::clone(&out), epoch);
        }
        self.inner.counters.generated.incr();
        self.inner
            .counters
            .generating_ns
            .add(started.elapsed().as_nanos() as u64);
        Ok(out)
    }

    fn in_pool<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.inner.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    fn fully_stored(&self, level: u32) -> bool {
        let info = self.inner.levels[level as usize];
        (0..info.depth).all(|z| self.is_stored(SliceKey::new(level, z)))
    }

    /// Hands every slice of each level in `wanted` (sorted) to `f`: levels >= 1 from the tiers
    /// when they are fully stored, else from one streaming build that stores what it makes
    /// (in completion order); then level 0, if wanted, decoded from the sources in z order.
    /// Checks for cancellation before each slice and reports progress on this thread.
    fn each_slice(&self, ctx: &Ctx<'_>, wanted: &[u32], f: &mut SliceSink<'_>) -> Result<()> {
        let upper: Vec<u32> = wanted.iter().copied().filter(|&l| l > 0).collect();
        let source_units = if wanted.first() == Some(&0) {
            u64::from(self.inner.stack.depth())
        } else {
            0
        };
        let mut done = 0;
        let mut served = upper.is_empty();
        if let Some(&top) = upper.last()
            && !upper.iter().all(|&l| self.fully_stored(l))
        {
            // Progress of a build counts level-1 slices made (each one pair of source slices).
            let total = u64::from(self.inner.levels[1].depth) + source_units;
            ctx.report(0, total);
            let mut build = || self.stream_build(ctx, top, &upper, total, f);
            // A build that stores nothing is of no use to another call: it runs on its own.
            let (built, role) = if ctx.no_store {
                (build(), Role::Alone)
            } else {
                self.inner.streams.join(top, build)
            };
            // A build we ran handed every slice to f; one we waited for stored them.
            if role != Role::Waited {
                built?;
                served = true;
                done = total - source_units;
            }
        }
        if !served {
            let total = upper
                .iter()
                .map(|&l| u64::from(self.inner.levels[l as usize].depth))
                .sum::<u64>()
                + source_units;
            ctx.report(0, total);
            for &level in &upper {
                for z in 0..self.inner.levels[level as usize].depth {
                    ctx.check()?;
                    f(level, z, &*self.level_slice(ctx, SliceKey::new(level, z))?)?;
                    done += 1;
                    ctx.report(done, total);
                }
            }
        }
        if source_units > 0 {
            let total = done + source_units;
            let mut source = Slice::zeroed(0, 0, self.sample_type());
            self.read_sources(ctx, 0..self.inner.stack.depth(), &mut source, |z, s| {
                f(0, z, s)?;
                done += 1;
                ctx.report(done, total);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// One streaming pass up to level `top`: every produced slice not stored yet is handed to
    /// the storing threads (kept as lent; the stream makes a new buffer in its place), unless
    /// the call stores nothing (then every buffer is reused); slices of
    /// the `wanted` levels also go to `f`. Runs on the calling thread (the stream's sink, and so
    /// `f` and the progress callback, are called on it).
    fn stream_build(
        &self,
        ctx: &Ctx<'_>,
        top: u32,
        wanted: &[u32],
        total: u64,
        f: &mut SliceSink<'_>,
    ) -> Result<()> {
        self.inner.counters.stream_builds.incr();
        let started = Instant::now();
        let options = StreamOptions {
            max_level: Some(top),
            ..self.inner.stream.clone()
        };
        let mut made = 0;
        let epoch = self.inner.tiers.fingerprint().epoch();
        let streamed = stream_shared(&self.inner.stack, &options, |level, z, slice| {
            ctx.check()?;
            let key = SliceKey::new(level, z);
            if ctx.no_store {
                self.inner.counters.generated.incr();
            } else if !self.is_stored(key) {
                // Kept as it is (no copy); the builder makes a new buffer in its place.
                self.inner.tiers.store(key, Arc::clone(slice), epoch);
                self.inner.counters.generated.incr();
            }
            if wanted.contains(&level) {
                f(level, z, slice)?;
            }
            if level == 1 {
                made += 1;
                ctx.report(made, total);
            }
            Ok(())
        });
        self.inner
            .counters
            .generating_ns
            .add(started.elapsed().as_nanos() as u64);
        let streamed = streamed?;
        self.inner
            .counters
            .source_slices
            .add(streamed.source_slices);
        self.inner.counters.source_bytes.add(streamed.source_bytes);
        Ok(())
    }

    /// Whether every slice of `level` is stored (or being stored) in a tier, so that a
    /// whole-level request would not build anything. Level 0 (the source) always is.
    pub fn is_level_stored(&self, level: u32) -> bool {
        level == 0 || (level as usize) < self.inner.levels.len() && self.fully_stored(level)
    }

    /// What shard `shard` of a sharded warm-up builds ([`WarmupOptions::with_shard`]).
    pub fn shard_plan(&self, shard: Shard) -> ShardPlan {
        ShardPlan::new(&self.inner.levels, shard)
    }

    /// Starts building, in the background, what users will ask for (see [`WarmupHandle`]).
    /// The run stops when the returned handle is cancelled or dropped.
    pub fn warm_up(&self, options: WarmupOptions) -> WarmupHandle {
        warmup::start(self, options)
    }

    /// Whether `key` is stored (or being stored) in a tier.
    /// Whether slice `key` is stored (or being stored): with an object store, in the store
    /// (the cache every machine shares: a slice only this machine's folder holds is not
    /// stored for the others), else in any tier.
    fn is_stored(&self, key: SliceKey) -> bool {
        #[cfg(feature = "object-store")]
        if let Some(remote) = &self.inner.remote {
            return remote.contains(key) || self.inner.tiers.is_pending(key);
        }
        self.inner.tiers.contains(key)
    }

    /// Makes and stores slice `key` for a warm-up run (not counted as a request), stopping at
    /// the next slice boundary once `cancel` is set.
    fn warm_slice(&self, key: SliceKey, cancel: &Cancel) -> Result<()> {
        // A slice this machine holds and the store lacks (stored locally while the store was
        // down, say) is copied to the store rather than served locally and left out of it.
        #[cfg(feature = "object-store")]
        if let Some(remote) = &self.inner.remote
            && !remote.contains(key)
            && let Some(blob) = self.inner.tiers.local_blob(key)
        {
            return remote.put(key, &blob);
        }
        let ctx = Ctx {
            cancel: Some(cancel),
            ..Ctx::default()
        };
        self.level_slice(&ctx, key).map(|_| ())
    }

    /// The sample type of every level (the source's).
    pub fn sample_type(&self) -> SampleType {
        self.inner.stack.info().sample_type
    }
}

/// Receives the slices of a whole-level request: `(level, z, slice)`.
type SliceSink<'a> = dyn FnMut(u32, u32, &Slice) -> Result<()> + Send + 'a;

/// Copies `region` of a slice of `info`'s size out of `src`, which holds the slice's rows from
/// row `first` on, into `out` (`region`'s size).
fn copy_rect(info: &LevelInfo, region: Region, first: u32, src: &[u8], out: &mut Slice) {
    let s = info.sample_type.bytes();
    let row = region.width as usize * s;
    for (r, dst) in out
        .pixels_mut()
        .as_bytes_mut()
        .chunks_exact_mut(row)
        .enumerate()
    {
        let y = (region.y - first) as usize + r;
        let start = (y * info.width as usize + region.x as usize) * s;
        dst.copy_from_slice(&src[start..start + row]);
    }
}
