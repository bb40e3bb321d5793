//! The builders: level 1 straight from pairs of source files ([`PairReducer`]), and every
//! level of a stack in one pass over the source slices ([`stream_levels`]).
//!
//! Level 1 is made on reading threads (plain threads, not the rayon pool), a bounded read-ahead
//! ahead of the rest: each reads a pair of source files and reduces it
//! ([`PairReducer::reduce_pair`]: band by band for plain TIFFs, whole slices otherwise), pairs
//! in z order split among the threads. Each level above keeps at most one pending slice
//! waiting for its pair; a completed pair is reduced (on the consumer thread, by the
//! sequential kernel: a level above 1 is an eighth of the work of the one below) into the next
//! level, which may complete a pair there, and so on. At the end each level's lone pending
//! slice becomes its level's last slice (the 2x2 mean), from the bottom up. Every source byte is
//! read once, and memory stays O(levels x slice size) whatever the depth: buffers are recycled,
//! never reallocated per slice. A sink that keeps slices (the pyramid keeps every one it has to
//! store) takes them without a copy; only then is a new buffer made in their place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::geometry::{LevelInfo, LevelRule};
use crate::kernel::reduce_slices_here;
use crate::slice::Slice;
use crate::source::{BAND_BYTES, Band, Stack, StackReader};

pub(crate) mod pool;
mod with_source;
pub(crate) use with_source::{Returned, stream_with_source};

/// Makes level-1 slices straight from pairs of source files, reusing its buffers: one per
/// thread.
///
/// Uncompressed gray TIFFs in strips (what CT reconstruction software writes) and uncompressed
/// 8-bit gray BMPs are not decoded whole: both files of a pair are read a band of rows at a
/// time (64 KiB each, into aligned buffers; a BMP's bottom-up band in one read, its rows put in
/// order in the band) and reduced while the band is in cache. Any other file is decoded whole
/// first. The result is the same byte for byte.
#[derive(Debug)]
pub struct PairReducer<'a> {
    reader: StackReader<'a>,
    /// Whether to try reading pairs by rows: the stack is TIFF or BMP, and no file so far had
    /// to be decoded whole.
    by_rows: bool,
    bands: [Band; 2],
    /// Whole decoded slices, for pairs that cannot be read by rows.
    whole: [Slice; 2],
}

impl<'a> PairReducer<'a> {
    /// A reducer of `stack`'s pairs.
    pub fn new(stack: &'a Stack) -> PairReducer<'a> {
        let ext = stack.extension().to_ascii_lowercase();
        let ty = stack.info().sample_type;
        PairReducer {
            reader: stack.reader(),
            by_rows: matches!(ext.as_str(), "tif" | "tiff" | "bmp"),
            bands: [Band::default(), Band::default()],
            whole: [Slice::zeroed(0, 0, ty), Slice::zeroed(0, 0, ty)],
        }
    }

    /// Makes slice `z` of level 1 into `out` (reusing its allocation): the 2x2x2 reduction of
    /// source slices `2z` and `2z + 1`, or of `2z` alone when it is the last (see
    /// [`crate::kernel`]), on this thread.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `z` out of range; the decoding errors of either file.
    pub fn reduce_pair(&mut self, z: u32, out: &mut Slice) -> Result<()> {
        let depth = self.reader.stack().depth();
        let first = z.checked_mul(2).filter(|&f| f < depth).ok_or_else(|| {
            Error::invalid(
                "level-1 slice",
                format!("{z} is outside 0..{}", depth.div_ceil(2)),
            )
        })?;
        let second = (first + 1 < depth).then_some(first + 1);
        if self.by_rows && self.reduce_by_rows(first, second, out)? {
            return Ok(());
        }
        let [a, b] = &mut self.whole;
        self.reader.read_into(first, a)?;
        if let Some(second) = second {
            self.reader.read_into(second, b)?;
        }
        reduce_slices_here(a, second.map(|_| &*b), out)
    }

    /// [`PairReducer::reduce_pair`] by bands of rows; `false` (nothing done) when a file is
    /// not plain enough for it.
    fn reduce_by_rows(&mut self, first: u32, second: Option<u32>, out: &mut Slice) -> Result<bool> {
        let info = self.reader.stack().info();
        let Some(mut a) = self.reader.rows(first)? else {
            self.by_rows = false;
            return Ok(false);
        };
        let mut b = match second {
            Some(s) => match self.reader.rows(s)? {
                Some(rows) => Some(rows),
                None => {
                    self.by_rows = false;
                    return Ok(false);
                }
            },
            None => None,
        };
        let (width, height) = (info.width as usize, info.height as usize);
        out.reshape(info.width / 2, info.height / 2, info.sample_type);
        let row_bytes = width * info.sample_type.bytes();
        let band = (BAND_BYTES / row_bytes.max(1)).max(2) & !1;
        let out_row = width / 2;
        let in_rows = height / 2 * 2;
        let [band_a, band_b] = &mut self.bands;
        let mut y = 0;
        while y < in_rows && out_row > 0 {
            let n = band.min(in_rows - y);
            let bytes_a = band_a.bytes(n * row_bytes);
            a.read(y as u32, n as u32, bytes_a)?;
            let bytes_b = match &mut b {
                Some(b) => {
                    let bytes = band_b.bytes(n * row_bytes);
                    b.read(y as u32, n as u32, bytes)?;
                    Some(&*bytes)
                }
                None => None,
            };
            let rows_out = y / 2 * out_row..(y + n) / 2 * out_row;
            crate::kernel::reduce_bytes(bytes_a, bytes_b, width, n, out, rows_out);
            y += n;
        }
        self.reader.count_read(a.file_len());
        if let Some(b) = &b {
            self.reader.count_read(b.file_len());
        }
        Ok(true)
    }

    /// Decodes source slice `z` whole into `out`, with this reducer's reader (see
    /// [`StackReader::read_into`]).
    ///
    /// # Errors
    /// As [`StackReader::read_into`].
    pub fn read_into(&mut self, z: u32, out: &mut Slice) -> Result<()> {
        self.reader.read_into(z, out)
    }

    /// Bytes of source files read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }
}

/// Settings of a streaming build.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Which levels exist. Default: [`LevelRule::default`] (edge 500).
    pub rule: LevelRule,
    /// Stop after this level (levels above are not computed). Default: the rule's last level.
    pub max_level: Option<u32>,
    /// Threads reading source pairs into level-1 slices ahead of the rest. Each holds at most
    /// two level-1 slices (three when alone) and, for files that are not read by rows, two
    /// decoded source slices. Default: the number of cores, at most 4.
    pub decode_threads: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        StreamOptions {
            rule: LevelRule::default(),
            max_level: None,
            decode_threads: cores.clamp(1, 4),
        }
    }
}

/// What a streaming build did.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Source slices decoded.
    pub source_slices: u64,
    /// Bytes of source files read.
    pub source_bytes: u64,
    /// Slices produced per level (index 0 is always 0: the source is not produced).
    pub produced: Vec<u64>,
    /// Level-1 slice buffers the reading threads started with: bounded by the thread count,
    /// whatever the depth. When the sink keeps no slice, these are all there are (every buffer
    /// is recycled); a kept slice's place is taken by a new buffer, not counted here.
    pub source_buffers: usize,
    /// Buffers of levels 2 and up allocated by the cascade: at most two per level when the
    /// sink keeps no slice, plus one for each slice of those levels it keeps.
    pub level_buffers: usize,
    /// Time the consumer waited for level-1 slices (read-ahead too slow when large).
    pub waited: Duration,
    /// Time spent in the kernel above level 1 (level 1 is made on the reading threads).
    pub kernel: Duration,
    /// Time spent in the sink (the caller's handling of produced slices).
    pub sink: Duration,
    /// Wall time of the whole build.
    pub elapsed: Duration,
}

/// The pairing state of a build: at most one pending slice per level.
#[derive(Debug)]
pub(crate) struct Cascade {
    levels: Vec<LevelInfo>,
    top: usize,
    pending: Vec<Option<Arc<Slice>>>,
    next_z: Vec<u32>,
    spare: Vec<Vec<Slice>>,
    produced: Vec<u64>,
    allocated: usize,
    /// Level-1 slices handed back so far (they come back in z order).
    recycled: u32,
    kernel: Duration,
    sink: Duration,
}

/// Receives each produced slice: (level, z, slice). A sink may keep the slice (clone the
/// `Arc`); the cascade then makes a new buffer in its place.
pub(crate) type Sink<'a> = dyn FnMut(u32, u32, &Arc<Slice>) -> Result<()> + 'a;

impl Cascade {
    /// A cascade producing levels 1..=top of `levels` (level 0 first).
    pub(crate) fn new(levels: Vec<LevelInfo>, top: usize) -> Cascade {
        let n = levels.len();
        Cascade {
            levels,
            top,
            pending: (0..n).map(|_| None).collect(),
            next_z: vec![0; n],
            spare: (0..n).map(|_| Vec::new()).collect(),
            produced: vec![0; n],
            allocated: 0,
            recycled: 0,
            kernel: Duration::ZERO,
            sink: Duration::ZERO,
        }
    }

    fn buffer(&mut self, level: usize) -> Slice {
        self.spare[level].pop().unwrap_or_else(|| {
            self.allocated += 1;
            let info = &self.levels[level];
            pool::take_slice(info.sample_type, info.slice_bytes())
        })
    }

    /// Hands every buffer the cascade still holds to the process's pool (at the end of a
    /// build).
    pub(crate) fn keep_buffers(&mut self) {
        for slice in self.pending.iter_mut().filter_map(Option::take) {
            if let Ok(slice) = Arc::try_unwrap(slice) {
                pool::give_slice(slice);
            }
        }
        for spare in &mut self.spare {
            spare.drain(..).for_each(pool::give_slice);
        }
    }

    /// Hands a consumed level-`level` slice back: level-1 buffers (the reading threads') to
    /// `recycle`, others to spare. A slice the sink kept stays with it; a level-1 thread then
    /// gets an empty buffer, which it fills (allocates) when it needs one.
    fn release(&mut self, level: usize, slice: Arc<Slice>, recycle: &mut Vec<Slice>) {
        let slice = Arc::try_unwrap(slice).ok();
        if level == 1 {
            let ty = self.levels[level].sample_type;
            recycle.push(slice.unwrap_or_else(|| Slice::zeroed(0, 0, ty)));
        } else if let Some(slice) = slice {
            self.spare[level].push(slice);
        }
    }

    /// Gives a buffer of `level` back for the cascade's reuse.
    pub(crate) fn give_spare(&mut self, level: usize, slice: Slice) {
        if let Some(spare) = self.spare.get_mut(level) {
            spare.push(slice);
        }
    }

    /// Slices produced so far, per level.
    pub(crate) fn produced(&self) -> &[u64] {
        &self.produced
    }

    /// Buffers allocated by the cascade so far.
    pub(crate) fn allocated(&self) -> usize {
        self.allocated
    }

    /// Takes the next slice of `level` (< top); pairs it with the pending one.
    fn feed(
        &mut self,
        level: usize,
        slice: Arc<Slice>,
        sink: &mut Sink<'_>,
        recycle: &mut Vec<Slice>,
    ) -> Result<()> {
        let Some(first) = self.pending[level].take() else {
            self.pending[level] = Some(slice);
            return Ok(());
        };
        let mut out = self.buffer(level + 1);
        let t = Instant::now();
        let reduced = reduce_slices_here(&first, Some(&slice), &mut out);
        self.kernel += t.elapsed();
        self.release(level, first, recycle);
        self.release(level, slice, recycle);
        reduced?;
        self.emit(level + 1, out, sink, recycle)
    }

    /// Takes the next slice of `level`: hands it to the sink, then pairs it for the level above.
    pub(crate) fn emit(
        &mut self,
        level: usize,
        out: Slice,
        sink: &mut Sink<'_>,
        recycle: &mut Vec<Slice>,
    ) -> Result<()> {
        let z = self.next_z[level];
        self.next_z[level] += 1;
        self.produced[level] += 1;
        let out = Arc::new(out);
        let t = Instant::now();
        let sunk = sink(level as u32, z, &out);
        self.sink += t.elapsed();
        sunk?;
        if level < self.top {
            self.feed(level, out, sink, recycle)
        } else {
            self.release(level, out, recycle);
            Ok(())
        }
    }

    /// Turns every lone pending slice into its level's last slice, bottom level first.
    pub(crate) fn finish(&mut self, sink: &mut Sink<'_>, recycle: &mut Vec<Slice>) -> Result<()> {
        for level in 0..self.top {
            if let Some(lone) = self.pending[level].take() {
                let mut out = self.buffer(level + 1);
                let t = Instant::now();
                let reduced = reduce_slices_here(&lone, None, &mut out);
                self.kernel += t.elapsed();
                self.release(level, lone, recycle);
                reduced?;
                self.emit(level + 1, out, sink, recycle)?;
            }
        }
        Ok(())
    }
}

/// Builds levels 1..=max of `stack` in one pass and hands every produced slice to `sink` as
/// `(level, z, slice)`, in the order they complete. The slice is lent: copy what you keep.
///
/// # Errors
/// The first decoding error (naming the file), a kernel error, or the sink's first error;
/// the build stops there and its threads are joined before returning.
pub fn stream_levels(
    stack: &Stack,
    options: &StreamOptions,
    mut sink: impl FnMut(u32, u32, &Slice) -> Result<()>,
) -> Result<StreamStats> {
    stream_shared(stack, options, |level, z, slice| sink(level, z, slice))
}

impl StreamOptions {
    /// The highest level a build with these options makes, of a stack with `count` levels:
    /// `max_level`, else the last.
    fn top_level(&self, count: usize) -> Result<usize> {
        let last = count - 1;
        match self.max_level {
            Some(m) if m as usize > last => Err(Error::invalid(
                "max level",
                format!(
                    "{m} but this stack has levels 0..={last} under {:?}",
                    self.rule
                ),
            )),
            Some(m) => Ok(m as usize),
            None => Ok(last),
        }
    }
}

/// [`stream_levels`] handing out each slice as an `Arc` the sink may keep (no copy).
pub(crate) fn stream_shared(
    stack: &Stack,
    options: &StreamOptions,
    mut sink: impl FnMut(u32, u32, &Arc<Slice>) -> Result<()>,
) -> Result<StreamStats> {
    let started = Instant::now();
    let levels = stack.levels(&options.rule)?;
    let top = options.top_level(levels.len())?;
    let mut stats = StreamStats {
        produced: vec![0; levels.len()],
        ..StreamStats::default()
    };
    if top == 0 {
        stats.elapsed = started.elapsed();
        return Ok(stats);
    }
    let pairs = stack.depth().div_ceil(2);
    let threads = options.decode_threads.clamp(1, 16);
    let per_thread = if threads == 1 { 3 } else { 2 };
    let stop = AtomicBool::new(false);
    let mut cascade = Cascade::new(levels, top);

    let outcome = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(u32, Result<Slice>)>(threads * per_thread);
        let mut free_tx = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let (ftx, frx) = mpsc::channel::<Slice>();
            free_tx.push(ftx);
            let tx = tx.clone();
            let stop = &stop;
            let ty = stack.info().sample_type;
            let want = cascade.levels[1].slice_bytes();
            handles.push(scope.spawn(move || {
                let mut reader = PairReducer::new(stack);
                let mut allocated = 0;
                for z in (t as u32..pairs).step_by(threads) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut buf = match frx.try_recv() {
                        Ok(b) => b,
                        Err(_) if allocated < per_thread => {
                            allocated += 1;
                            pool::take_slice(ty, want)
                        }
                        Err(_) => match frx.recv() {
                            Ok(b) => b,
                            Err(_) => break,
                        },
                    };
                    let result = reader.reduce_pair(z, &mut buf).map(|()| buf);
                    let failed = result.is_err();
                    if tx.send((z, result)).is_err() || failed {
                        break;
                    }
                }
                (reader.bytes_read(), allocated, frx)
            }));
        }
        drop(tx);

        let mut run = || -> Result<()> {
            let mut early: BTreeMap<u32, Slice> = BTreeMap::new();
            let mut recycle = Vec::new();
            for z in 0..pairs {
                let slice = loop {
                    if let Some(s) = early.remove(&z) {
                        break s;
                    }
                    let wait = Instant::now();
                    let received = rx.recv();
                    stats.waited += wait.elapsed();
                    match received {
                        Ok((got, result)) => {
                            let s = result?;
                            if got == z {
                                break s;
                            }
                            early.insert(got, s);
                        }
                        Err(_) => {
                            return Err(Error::internal(
                                "stream",
                                format!("reading threads stopped before level-1 slice {z}"),
                            ));
                        }
                    }
                };
                stats.source_slices += if 2 * z + 1 < stack.depth() { 2 } else { 1 };
                cascade.emit(1, slice, &mut sink, &mut recycle)?;
                // Level-1 slices come back in the order they were made: each buffer goes back
                // to the thread that made it, which keeps every thread within its own buffer
                // count (a thread that has finished just drops it).
                for b in recycle.drain(..) {
                    let owner = cascade.recycled as usize % threads;
                    cascade.recycled += 1;
                    if let Err(mpsc::SendError(b)) = free_tx[owner].send(b) {
                        // That thread has finished: the buffer is kept for the next build.
                        pool::give_slice(b);
                    }
                }
            }
            cascade.finish(&mut sink, &mut recycle)
        };
        let outcome = run();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        drop(free_tx);
        for h in handles {
            match h.join() {
                Ok((bytes, buffers, returned)) => {
                    stats.source_bytes += bytes;
                    stats.source_buffers += buffers;
                    returned.try_iter().for_each(pool::give_slice);
                }
                Err(_) => {
                    return Err(Error::internal("stream", "a reading thread panicked"));
                }
            }
        }
        outcome
    });
    cascade.keep_buffers();
    outcome?;
    stats.level_buffers = cascade.allocated;
    stats.produced = cascade.produced;
    stats.kernel = cascade.kernel;
    stats.sink = cascade.sink;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Phantom;

    #[test]
    fn a_sink_that_keeps_slices_gets_the_same_pyramid_and_they_stay_intact() {
        let dir = tempfile::tempdir().unwrap();
        Phantom::new(70, 66, 21)
            .with_seed(5)
            .write(dir.path())
            .unwrap();
        let stack = Stack::open(dir.path()).unwrap();
        for threads in [1, 3] {
            let options = StreamOptions {
                rule: LevelRule::default().with_edge(8),
                decode_threads: threads,
                ..StreamOptions::default()
            };
            let mut copies = BTreeMap::new();
            stream_levels(&stack, &options, |level, z, slice| {
                copies.insert((level, z), slice.clone());
                Ok(())
            })
            .unwrap();
            // Keep every other slice without copying it: the cascade must make new buffers in
            // their place instead of writing into them.
            let mut kept = BTreeMap::new();
            let stats = stream_shared(&stack, &options, |level, z, slice| {
                if (level + z) % 2 == 0 {
                    kept.insert((level, z), Arc::clone(slice));
                }
                Ok(())
            })
            .unwrap();
            assert!(kept.len() >= 9, "{threads} threads: kept {}", kept.len());
            for (key, slice) in &kept {
                assert_eq!(**slice, copies[key], "{threads} threads: slice {key:?}");
            }
            assert_eq!(stats.produced.iter().sum::<u64>(), copies.len() as u64);
        }
    }
}
