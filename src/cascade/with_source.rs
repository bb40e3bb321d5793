//! The streaming build that also hands out the source slices (level 0): for conversions that
//! write every level, level 0 included, in one pass over the source files.
//!
//! Reading threads decode both slices of a pair whole (a conversion needs every source sample,
//! so there is nothing to gain from reading by bands), reduce them into the level-1 slice on
//! the same thread, and send the three in z order. The consumer hands the two source slices
//! to the sink, then the level-1 slice to the cascade, which makes the levels above as
//! [`super::stream_levels`] does. Buffers the sink keeps come back through [`Returned`]
//! when it is done with them and are reused, so the pass touches fresh memory only for what
//! is held at once (the sink's own holdings, the read-ahead, one pending slice per level).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use super::{Cascade, StreamOptions, StreamStats};
use crate::error::{Error, Result};
use crate::kernel::reduce_slices_here;
use crate::slice::Slice;
use crate::source::Stack;

/// Buffers a sink is done with, given back for reuse: `(level, slice)`.
pub(crate) type Returned = RefCell<Vec<(u32, Slice)>>;

/// What a reading thread sends: pair `z`'s source slices and its level-1 slice.
type Pair = (u32, Result<(Slice, Option<Slice>, Slice)>);

/// A pool of buffers shared by the reading threads.
#[derive(Debug, Default)]
struct Pool {
    source: Mutex<Vec<Slice>>,
    level1: Mutex<Vec<Slice>>,
}

impl Pool {
    fn take(list: &Mutex<Vec<Slice>>, ty: crate::SampleType) -> Slice {
        list.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Slice::zeroed(0, 0, ty))
    }

    fn put(list: &Mutex<Vec<Slice>>, s: Slice) {
        list.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }
}

/// Builds levels 1..=max of `stack` in one pass and hands every slice of every level, level
/// 0 included, to `sink` as `(level, z, slice)`: source slices in z order, each level's
/// slices in z order, levels interleaved in completion order. The sink may keep a slice (clone
/// the `Arc`) and give its buffer back through `returned` once it has dropped its clones.
///
/// # Errors
/// The first decoding error (naming the file), a kernel error, or the sink's first error; the
/// build stops there and its threads are joined before returning.
pub(crate) fn stream_with_source(
    stack: &Stack,
    options: &StreamOptions,
    returned: &Returned,
    mut sink: impl FnMut(u32, u32, &Arc<Slice>) -> Result<()>,
) -> Result<StreamStats> {
    let started = Instant::now();
    let levels = stack.levels(&options.rule)?;
    let top = options.top_level(levels.len())?;
    let mut stats = StreamStats {
        produced: vec![0; levels.len()],
        ..StreamStats::default()
    };
    let depth = stack.depth();
    let pairs = depth.div_ceil(2);
    let threads = options.decode_threads.clamp(1, 16);
    let ty = stack.info().sample_type;
    let stop = AtomicBool::new(false);
    let pool = Pool::default();
    let mut cascade = Cascade::new(levels, top);

    let outcome = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Pair>(threads);
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let tx = tx.clone();
            let (stop, pool) = (&stop, &pool);
            handles.push(scope.spawn(move || {
                let mut reader = stack.reader();
                for z in (t as u32..pairs).step_by(threads) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = (|| {
                        let mut a = Pool::take(&pool.source, ty);
                        reader.read_into(2 * z, &mut a)?;
                        let b = if 2 * z + 1 < depth {
                            let mut b = Pool::take(&pool.source, ty);
                            reader.read_into(2 * z + 1, &mut b)?;
                            Some(b)
                        } else {
                            None
                        };
                        let mut out = Pool::take(&pool.level1, ty);
                        if top > 0 {
                            reduce_slices_here(&a, b.as_ref(), &mut out)?;
                        }
                        Ok((a, b, out))
                    })();
                    let failed = result.is_err();
                    if tx.send((z, result)).is_err() || failed {
                        break;
                    }
                }
                reader.bytes_read()
            }));
        }
        drop(tx);

        let mut run = || -> Result<()> {
            let mut early: BTreeMap<u32, (Slice, Option<Slice>, Slice)> = BTreeMap::new();
            let mut recycle = Vec::new();
            let mut sunk = |level: u32, z: u32, s: &Arc<Slice>, stats: &mut StreamStats| {
                let t = Instant::now();
                let r = sink(level, z, s);
                stats.sink += t.elapsed();
                r
            };
            for z in 0..pairs {
                let (a, b, level1) = loop {
                    if let Some(p) = early.remove(&z) {
                        break p;
                    }
                    let wait = Instant::now();
                    let received = rx.recv();
                    stats.waited += wait.elapsed();
                    match received {
                        Ok((got, result)) => {
                            let p = result?;
                            if got == z {
                                break p;
                            }
                            early.insert(got, p);
                        }
                        Err(_) => {
                            return Err(Error::internal(
                                "stream",
                                format!("reading threads stopped before source pair {z}"),
                            ));
                        }
                    }
                };
                for (i, s) in std::iter::once(a).chain(b).enumerate() {
                    stats.source_slices += 1;
                    let s = Arc::new(s);
                    sunk(0, 2 * z + i as u32, &s, &mut stats)?;
                    if let Ok(s) = Arc::try_unwrap(s) {
                        Pool::put(&pool.source, s);
                    }
                }
                if top > 0 {
                    let mut sink_here = |l, z, s: &Arc<Slice>| sunk(l, z, s, &mut stats);
                    cascade.emit(1, level1, &mut sink_here, &mut recycle)?;
                } else {
                    Pool::put(&pool.level1, level1);
                }
                give_back(&mut cascade, &pool, &mut recycle, returned);
            }
            let mut sink_here = |l, z, s: &Arc<Slice>| sunk(l, z, s, &mut stats);
            cascade.finish(&mut sink_here, &mut recycle)?;
            give_back(&mut cascade, &pool, &mut recycle, returned);
            Ok(())
        };
        let outcome = run();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        for h in handles {
            match h.join() {
                Ok(bytes) => stats.source_bytes += bytes,
                Err(_) => return Err(Error::internal("stream", "a reading thread panicked")),
            }
        }
        outcome
    });
    outcome?;
    stats.level_buffers = cascade.allocated;
    stats.produced = std::mem::take(&mut cascade.produced);
    stats.kernel = cascade.kernel;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Puts every buffer that came back where it is reused: source and level-1 buffers to the
/// reading threads, the others to the cascade's spares.
fn give_back(cascade: &mut Cascade, pool: &Pool, recycle: &mut Vec<Slice>, returned: &Returned) {
    // A level-1 slice the sink still held when the cascade was done with it comes back as an
    // empty placeholder (the sink returns the buffer itself later): pooled, a placeholder
    // would be taken instead of a kept buffer and filled with fresh memory.
    for s in recycle.drain(..).filter(|s| s.capacity_bytes() > 0) {
        Pool::put(&pool.level1, s);
    }
    for (level, s) in returned.borrow_mut().drain(..) {
        match level {
            0 => Pool::put(&pool.source, s),
            1 => Pool::put(&pool.level1, s),
            l => {
                if let Some(spare) = cascade.spare.get_mut(l as usize) {
                    spare.push(s);
                }
            }
        }
    }
}
