//! Soak: eight threads ask one pyramid for random slices, regions, sections and volumes of
//! random levels while a warm-up runs beside them (restarted whenever it ends), with a memory
//! budget of a third of all blobs and a disk budget of two thirds, so that both tiers evict and
//! slices are made again and again. Every answer equals an independent naive pyramid; the
//! memory tier, sampled every millisecond, never holds more than its budget; the process's peak
//! resident memory stays within a stated bound; the books add up at the end.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, Volume as Naive, phantom_volume, status_bytes, values};
use lodcache::{Axis, Phantom, Pyramid, Served, WarmupOptions, WarmupOutcome};

/// 256 x 256 x 64 16-bit at edge 16: levels 128 x 128 x 32, 64 x 64 x 16, 32 x 32 x 8 and
/// 16 x 16 x 4 above the source.
const SIZE: (u32, u32, u32) = (256, 256, 64);
const EDGE: u32 = 16;
const THREADS: u64 = 8;
const REQUESTS_PER_THREAD: u64 = 400;
/// Volumes and sections are asked of levels from this one up (the small ones).
const SMALL_LEVELS_FROM: u32 = 2;
/// Room in the peak-memory bound for the allocator, thread stacks and the rayon pool.
const SLACK_BYTES: u64 = 64 << 20;
/// Source slices each thread may hold at once (a request decodes two at a time; the streaming
/// builder a few per decoder thread; buffers are recycled through a spare pool).
const SOURCE_SLICES_PER_THREAD: u64 = 8;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Sets the flag when dropped, so that the helper threads stop even if a request thread
/// panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Per-kind request counts and where slice requests were served from.
#[derive(Default)]
struct Tally {
    slices: AtomicU64,
    regions: AtomicU64,
    sections: AtomicU64,
    volumes: AtomicU64,
    /// memory, disk, generated, source
    served: [AtomicU64; 4],
}

fn served_index(s: Served) -> usize {
    match s {
        Served::Memory => 0,
        Served::Disk => 1,
        Served::Generated => 2,
        _ => 3,
    }
}

/// One random request, checked against the naive pyramid; a mismatch or error is returned as
/// text (threads must not panic while the helpers run).
fn request(pyr: &Pyramid, naive: &[Naive], rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let levels = naive.len() as u32;
    let kind = rng.below_u32(100);
    if kind < 60 {
        let level = rng.below_u32(levels);
        let v = &naive[level as usize];
        let z = rng.below_u32(v.slices.len() as u32);
        let (slice, served) = pyr
            .slice_served(level, z)
            .map_err(|e| format!("slice {level}/{z}: {e}"))?;
        tally.slices.fetch_add(1, Ordering::Relaxed);
        tally.served[served_index(served)].fetch_add(1, Ordering::Relaxed);
        if (slice.width() as usize, slice.height() as usize) != (v.width, v.height)
            || values(&slice) != v.slices[z as usize]
        {
            return Err(format!("slice {level}/{z} ({served:?}) differs"));
        }
    } else if kind < 80 {
        let level = rng.below_u32(levels);
        let v = &naive[level as usize];
        let z = rng.below_u32(v.slices.len() as u32);
        let (w, h) = (
            1 + rng.below_u32(v.width as u32),
            1 + rng.below_u32(v.height as u32),
        );
        let (x, y) = (
            rng.below_u32(v.width as u32 - w + 1),
            rng.below_u32(v.height as u32 - h + 1),
        );
        let got = pyr
            .region(level, z, lodcache::Region::new(x, y, w, h))
            .map_err(|e| format!("region {level}/{z} {w}x{h}@{x},{y}: {e}"))?;
        tally.regions.fetch_add(1, Ordering::Relaxed);
        let src = &v.slices[z as usize];
        let want: Vec<u32> = (y..y + h)
            .flat_map(|r| {
                let at = r as usize * v.width + x as usize;
                src[at..at + w as usize].iter().copied()
            })
            .collect();
        if (got.width(), got.height()) != (w, h) || values(&got) != want {
            return Err(format!("region {level}/{z} {w}x{h}@{x},{y} differs"));
        }
    } else if kind < 92 {
        let level = SMALL_LEVELS_FROM + rng.below_u32(levels - SMALL_LEVELS_FROM);
        let v = &naive[level as usize];
        let axis = [Axis::X, Axis::Y, Axis::Z][rng.below_u32(3) as usize];
        let extent = match axis {
            Axis::X => v.width,
            Axis::Y => v.height,
            Axis::Z => v.slices.len(),
        } as u32;
        let index = rng.below_u32(extent);
        let got = pyr
            .section(level, axis, index)
            .map_err(|e| format!("section {level} {axis:?} {index}: {e}"))?;
        tally.sections.fetch_add(1, Ordering::Relaxed);
        let i = index as usize;
        let want: Vec<u32> = match axis {
            Axis::X => v
                .slices
                .iter()
                .flat_map(|s| (0..v.height).map(move |y| s[y * v.width + i]))
                .collect(),
            Axis::Y => v
                .slices
                .iter()
                .flat_map(|s| s[i * v.width..(i + 1) * v.width].iter().copied())
                .collect(),
            Axis::Z => v.slices[i].clone(),
        };
        if values(&got) != want {
            return Err(format!("section {level} {axis:?} {index} differs"));
        }
    } else {
        let level = SMALL_LEVELS_FROM + rng.below_u32(levels - SMALL_LEVELS_FROM);
        let v = &naive[level as usize];
        let got = pyr
            .volume(level)
            .map_err(|e| format!("volume {level}: {e}"))?;
        tally.volumes.fetch_add(1, Ordering::Relaxed);
        let want: Vec<u32> = v.slices.concat();
        let got: Vec<u32> = match got.pixels() {
            lodcache::Pixels::U16(p) => p.iter().map(|&s| u32::from(s)).collect(),
            other => return Err(format!("volume {level}: {:?} samples", other.sample_type())),
        };
        if got != want {
            return Err(format!("volume {level} differs"));
        }
    }
    Ok(())
}

#[test]
fn eight_threads_and_a_restarting_warm_up_get_exact_answers_within_the_memory_budget() {
    let started = Instant::now();
    let rss_at_start = status_bytes("VmRSS:");
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("scan");
    let (w, h, d) = SIZE;
    let phantom = Phantom::new(w, h, d).with_seed(21);
    phantom.write(&stack).unwrap();
    let naive = phantom_volume(&phantom).pyramid(EDGE as usize);
    assert_eq!(naive.len(), 5, "levels 0..=4");
    let reference_bytes: u64 = naive
        .iter()
        .flat_map(|v| &v.slices)
        .map(|s| (s.capacity() * 4 + std::mem::size_of::<Vec<u32>>()) as u64)
        .sum();
    let blob_count: u64 = naive[1..].iter().map(|v| v.slices.len() as u64).sum();

    // Every blob's bytes: a memory-only pyramid that keeps everything, filled in one pass.
    let all_blobs = {
        let all = Pyramid::builder(&stack)
            .with_edge(EDGE)
            .with_disk_cache(false)
            .with_memory_budget(u64::MAX)
            .build()
            .unwrap();
        all.volume(naive.len() as u32 - 1).unwrap();
        all.flush();
        let m = all.memory().stats();
        assert_eq!(m.entries, blob_count);
        m.bytes
    };
    let budget = all_blobs / 3;
    let disk_budget = all_blobs * 2 / 3;
    let pyr = Pyramid::builder(&stack)
        .with_edge(EDGE)
        .with_cache_dir(tmp.path().join("cache"))
        .with_memory_budget(budget)
        .with_disk_budget(disk_budget)
        .build()
        .unwrap();
    let source_slice = u64::from(w * h) * 2;
    let working = (THREADS + 1) * SOURCE_SLICES_PER_THREAD * source_slice;
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let setup = started.elapsed();

    let stop = AtomicBool::new(false);
    let peak_bytes = AtomicU64::new(0);
    let samples = AtomicU64::new(0);
    let peak_rss = AtomicU64::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let tally = Tally::default();
    let (mut runs, mut completed, mut cancelled, mut budget_reached, mut warm_made) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let soak = Instant::now();
    std::thread::scope(|scope| {
        // The sampler: the memory tier's bytes every millisecond, the resident size every 5.
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak_bytes.fetch_max(pyr.memory().bytes(), Ordering::Relaxed);
                if n.is_multiple_of(5)
                    && let Some(rss) = status_bytes("VmRSS:")
                {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            samples.store(n, Ordering::Relaxed);
        });
        // The warm-up, restarted whenever it ends, with options in turn, each run bounded in
        // time: everything, the two smallest levels, a byte budget, by demand (the last two
        // on two threads). A run makes slices only in the requests' pauses (foreground first).
        scope.spawn(|| {
            let last = naive.len() as u32 - 1;
            while !stop.load(Ordering::Relaxed) {
                let options = match runs % 4 {
                    0 => WarmupOptions::default(),
                    1 => WarmupOptions::default().with_levels([last, last - 1]),
                    2 => WarmupOptions::default()
                        .with_byte_budget(all_blobs / 8)
                        .with_threads(2),
                    _ => WarmupOptions::default().with_threads(2),
                }
                .with_time_budget(Duration::from_millis(if runs == 0 { 30 } else { 300 }));
                let handle = pyr.warm_up(options);
                while !handle.is_finished() && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let outcome = handle.wait();
                runs += 1;
                warm_made += outcome.report().levels.iter().map(|l| l.made).sum::<u64>();
                match outcome {
                    WarmupOutcome::Completed(_) => completed += 1,
                    WarmupOutcome::Cancelled(_) => cancelled += 1,
                    WarmupOutcome::BudgetReached(_) => budget_reached += 1,
                    other => failures
                        .lock()
                        .unwrap()
                        .push(format!("warm-up ended as {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let _stop = StopOnDrop(&stop);
        std::thread::scope(|requests| {
            for t in 0..THREADS {
                let (pyr, naive, tally, failures) = (&pyr, &naive, &tally, &failures);
                requests.spawn(move || {
                    let mut rng = Rng(0x50A4 + t);
                    for i in 0..REQUESTS_PER_THREAD {
                        if let Err(e) = request(pyr, naive, &mut rng, tally) {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("thread {t} request {i}: {e}"));
                        }
                        // Now and then a pause, in which the warm-up may make a slice.
                        if rng.below_u32(10) == 0 {
                            std::thread::sleep(Duration::from_millis(u64::from(rng.below_u32(3))));
                        }
                    }
                });
            }
        });
    });
    let soak_time = soak.elapsed();
    // Left alone, a warm-up makes every slice still missing.
    let last_run = match pyr.warm_up(WarmupOptions::default()).wait() {
        WarmupOutcome::Completed(report) => report,
        other => panic!("the warm-up after the soak did not complete: {other:?}"),
    };
    let p = last_run.progress;
    assert_eq!(p.done + p.already_stored, blob_count, "{p:?}");
    pyr.flush();
    let peak_hwm = status_bytes("VmHWM:");

    // Afterwards every slice of every stored level is still right, and the books add up.
    for (level, v) in naive.iter().enumerate().skip(1) {
        for (z, want) in v.slices.iter().enumerate() {
            let got = pyr.slice(level as u32, z as u32).unwrap();
            assert!(values(&got) == *want, "after the soak: {level}/{z} differs");
        }
    }
    pyr.flush();
    let stats = pyr.stats();
    let failures = failures.into_inner().unwrap();
    let peak_bytes = peak_bytes.into_inner();
    let samples = samples.into_inner();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let served: Vec<u64> = tally.served.iter().map(load).collect();
    let requests =
        load(&tally.slices) + load(&tally.regions) + load(&tally.sections) + load(&tally.volumes);

    println!(
        "soak: {THREADS} threads x {REQUESTS_PER_THREAD} requests in {soak_time:?} (setup {setup:?})"
    );
    println!(
        "  requests: {} slices (memory {}, disk {}, generated {}, source {}), {} regions, \
         {} sections, {} volumes",
        load(&tally.slices),
        served[0],
        served[1],
        served[2],
        served[3],
        load(&tally.regions),
        load(&tally.sections),
        load(&tally.volumes)
    );
    println!(
        "  memory tier: budget {budget} B ({} blobs, {all_blobs} B in all), peak {peak_bytes} B \
         over {samples} samples; hits {}, misses {}, insertions {}, evictions {}",
        blob_count,
        stats.memory.hits,
        stats.memory.misses,
        stats.memory.insertions,
        stats.memory.evictions
    );
    println!(
        "  disk tier: budget {disk_budget} B, now {} B; hits {}, misses {}, writes {}, \
         evictions {}, corrupt {}, write errors {}",
        stats.disk.bytes,
        stats.disk.hits,
        stats.disk.misses,
        stats.disk.writes,
        stats.disk.evictions,
        stats.disk.corrupt,
        stats.disk.write_errors
    );
    println!(
        "  generated {}, coalesced {}, stream builds {}, source slices {}; warm-up: {runs} runs \
         ({completed} completed, {budget_reached} out of budget, {cancelled} cancelled), \
         {warm_made} slices made; \
         then a quiet run made {} of {blob_count} slices in {:?}",
        stats.generated,
        stats.coalesced,
        stats.stream_builds,
        stats.source_slices,
        p.done,
        p.elapsed
    );

    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert_eq!(requests, THREADS * REQUESTS_PER_THREAD);
    for (what, n) in [
        ("regions", load(&tally.regions)),
        ("sections", load(&tally.sections)),
        ("volumes", load(&tally.volumes)),
    ] {
        assert!(n > 0, "no {what} were asked for");
    }
    assert!(
        peak_bytes <= budget,
        "the memory tier held {peak_bytes} B, over its budget of {budget} B"
    );
    assert!(samples >= 50, "only {samples} samples of the memory tier");
    assert!(pyr.memory().bytes() <= budget);
    assert!(
        stats.memory.evictions > 0 && stats.disk.evictions > 0,
        "the budgets never pressed: {stats:?}"
    );
    assert!(stats.disk.bytes <= disk_budget, "disk tier over its budget");
    assert_eq!((stats.disk.corrupt, stats.disk.write_errors), (0, 0));
    assert!(runs >= 2, "the warm-up was not restarted");
    assert_eq!(completed + budget_reached + cancelled, runs);
    assert!(pyr.warnings().is_empty(), "{:?}", pyr.warnings());

    // Resident memory: what the process held before the test, plus the test's own reference
    // pyramid, plus the memory budget, plus a few source slices per thread, plus slack.
    match (rss_at_start, peak_hwm) {
        (Some(start), Some(hwm)) => {
            let peak = if hwm_reset {
                hwm
            } else {
                load(&peak_rss).max(start)
            };
            let bound = start + reference_bytes + budget + working + SLACK_BYTES;
            println!(
                "  resident: {:.1} MiB at start, peak {:.1} MiB ({}); bound {:.1} MiB = start + \
                 reference {:.1} + budget {:.2} + {} x {SOURCE_SLICES_PER_THREAD} source slices \
                 {:.1} + slack {:.0}",
                mib(start),
                mib(peak),
                if hwm_reset {
                    "VmHWM after a reset"
                } else {
                    "VmRSS sampled every 5 ms"
                },
                mib(bound),
                mib(reference_bytes),
                mib(budget),
                THREADS + 1,
                mib(working),
                mib(SLACK_BYTES)
            );
            assert!(
                peak <= bound,
                "peak resident memory {:.1} MiB over the bound of {:.1} MiB",
                mib(peak),
                mib(bound)
            );
        }
        _ => println!("  resident: not measurable here (no /proc/self/status)"),
    }
    println!("  total {:?}", started.elapsed());
}
