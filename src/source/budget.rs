//! The process-wide budget for the memory that decoding slices takes.
//! (see [`set_decode_budget`]).

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

/// The least default budget: 256 MiB.
pub const MIN_DEFAULT_DECODE_BUDGET: u64 = 256 << 20;

/// The largest default budget: 4 GiB (a 16-bit 16384 x 16384 RGB slice needs 2 GiB).
pub const MAX_DEFAULT_DECODE_BUDGET: u64 = 4 << 30;

/// The default budget where the machine's memory cannot be read: 1 GiB.
const FALLBACK_DECODE_BUDGET: u64 = 1 << 30;

/// Bytes every decode reserves besides what its size says: the decoders' small buffers
/// (inflate windows, Huffman tables, a few rows of a narrow image).
pub const DECODE_OVERHEAD: u64 = 1 << 20;

/// What the budget is doing now, and has done since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudgetStats {
    /// The budget in bytes.
    pub budget: u64,
    /// Bytes reserved now.
    pub in_use: u64,
    /// The most bytes ever reserved at once.
    pub peak: u64,
    /// Reservations waiting now.
    pub waiting: u64,
    /// Reservations that had to wait, in total.
    pub waited: u64,
}

#[derive(Debug)]
struct State {
    /// `None` until set or first used; then the default is computed once.
    budget: Option<u64>,
    in_use: u64,
    peak: u64,
    waiting: u64,
    waited: u64,
    /// Tickets in arrival order: the reservation holding ticket `serving` goes next.
    next_ticket: u64,
    serving: u64,
}

impl State {
    fn budget(&mut self) -> u64 {
        *self.budget.get_or_insert_with(default_decode_budget)
    }
}

/// A byte budget shared by threads: reservations wait in arrival order until they fit.
#[derive(Debug)]
struct Budget {
    state: Mutex<State>,
    /// Signalled whenever bytes are given back, the queue moves or the budget changes.
    changed: Condvar,
}

/// The process-wide decode budget.
static DECODE: Budget = Budget::new();

impl Budget {
    const fn new() -> Budget {
        Budget {
            state: Mutex::new(State {
                budget: None,
                in_use: 0,
                peak: 0,
                waiting: 0,
                waited: 0,
                next_ticket: 0,
                serving: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a handful of counters, each updated in one step: a panic elsewhere
        // while the lock was held cannot leave them half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reserve(&'static self, path: &Path, bytes: u64) -> Result<DecodeReservation> {
        if bytes == 0 {
            return Ok(DecodeReservation {
                budget: self,
                bytes,
            });
        }
        let over = |budget| Error::OverDecodeBudget {
            path: path.to_path_buf(),
            needed: bytes,
            budget,
        };
        let mut s = self.lock();
        let budget = s.budget();
        if bytes > budget {
            return Err(over(budget));
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        let mut waited = false;
        loop {
            if s.serving == ticket {
                let budget = s.budget();
                if bytes > budget {
                    // Lowered while this one waited: refused, and the next in line goes.
                    s.serving += 1;
                    if waited {
                        s.waiting -= 1;
                    }
                    drop(s);
                    self.changed.notify_all();
                    return Err(over(budget));
                }
                if s.in_use + bytes <= budget {
                    break;
                }
            }
            if !waited {
                waited = true;
                s.waiting += 1;
                s.waited += 1;
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if waited {
            s.waiting -= 1;
        }
        s.serving += 1;
        s.in_use += bytes;
        s.peak = s.peak.max(s.in_use);
        drop(s);
        // The next in line may fit too.
        self.changed.notify_all();
        Ok(DecodeReservation {
            budget: self,
            bytes,
        })
    }

    fn set(&self, bytes: u64) {
        self.lock().budget = Some(bytes);
        self.changed.notify_all();
    }

    fn stats(&self) -> DecodeBudgetStats {
        let mut s = self.lock();
        DecodeBudgetStats {
            budget: s.budget(),
            in_use: s.in_use,
            peak: s.peak,
            waiting: s.waiting,
            waited: s.waited,
        }
    }
}

/// Bytes of memory reserved for one decode; given back when dropped.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the reservation is dropped"]
pub struct DecodeReservation {
    budget: &'static Budget,
    bytes: u64,
}

impl DecodeReservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for DecodeReservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.budget.lock().in_use -= self.bytes;
        self.budget.changed.notify_all();
    }
}

/// Reserves `bytes` of the decode budget for work on `path`, waiting until they fit next to
/// the reservations already held (in arrival order, so a large one is not overtaken forever
/// by small ones). Decoding reserves what it needs by itself; this is for callers that hold
/// large decoded buffers of their own and want them counted.
///
/// Never call it while holding another reservation on the same thread: a second reservation
/// that has to wait for the first would wait forever.
///
/// # Errors
/// [`Error::OverDecodeBudget`] naming `path`, `bytes` and the budget when `bytes` is more
/// than the whole budget (also when the budget is lowered below it while waiting).
pub fn reserve_decode_memory(path: impl AsRef<Path>, bytes: u64) -> Result<DecodeReservation> {
    DECODE.reserve(path.as_ref(), bytes)
}

/// Sets the process-wide decode budget in bytes. Reservations already held are kept; waiting
/// ones are looked at again at once. Default: [`default_decode_budget`].
///
/// # The budget
/// A slice file can claim far more memory than it holds: a 200 KB PNG of zeros inflates to
/// 200 MB of samples, and a stack of such files decoded on eight threads at once would take
/// eight times that. So every decode reserves, before it allocates anything large, the bytes
/// its working memory will need, and gives them back when it is done:
///
/// - the decoded slice (the caller's output buffer),
/// - the decoder's own buffer when the file holds more than one gray channel (RGB, RGBA,
///   gray + alpha, planar TIFF): all channels of the whole image,
/// - the compressed file when the decoder needs it whole (JPEG, JPEG-in-TIFF), and JPEG's
///   coefficient buffers for progressive and multi-scan files,
/// - an allowance for the decoders' row buffers: a few rows plus [`DECODE_OVERHEAD`].
///
/// A decode that does not fit next to those already running waits (first come, first served,
/// on a condition variable: no polling) until enough is given back; one that needs more than
/// the whole budget is refused with [`Error::OverDecodeBudget`], naming the file and both
/// sizes, before anything is allocated.
///
/// Not counted: a decoded slice once its decode has returned (it is the caller's, e.g. a
/// pyramid's cached slices, which its memory budget counts), and memory below the allowance
/// above (headers, tag tables, small tables). So the memory that decoding holds at any
/// moment is at most the budget plus, per thread, the slices it has decoded and still holds.
///
/// # Default
/// A quarter of the machine's memory (the smaller of `MemTotal` in `/proc/meminfo` and the
/// cgroup v2 `memory.max` of this process), at least [`MIN_DEFAULT_DECODE_BUDGET`] (256 MiB)
/// and at most [`MAX_DEFAULT_DECODE_BUDGET`] (4 GiB); 1 GiB where neither can be read.
/// This function changes it for the whole process (the `lodcache` tool's
/// `--decode-budget SIZE`).
///
/// # Errors
/// [`Error::InvalidArgument`] for 0.
pub fn set_decode_budget(bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Err(Error::invalid(
            "decode budget",
            "0 bytes: no slice could be decoded",
        ));
    }
    DECODE.set(bytes);
    Ok(())
}

/// The process-wide decode budget in bytes.
pub fn decode_budget() -> u64 {
    DECODE.lock().budget()
}

/// What the decode budget is doing.
pub fn decode_budget_stats() -> DecodeBudgetStats {
    DECODE.stats()
}

/// The budget used until [`set_decode_budget`] is called: a quarter of the machine's memory,
/// clamped to [`MIN_DEFAULT_DECODE_BUDGET`]..=[`MAX_DEFAULT_DECODE_BUDGET`] (module docs).
pub fn default_decode_budget() -> u64 {
    machine_memory().map_or(FALLBACK_DECODE_BUDGET, |m| {
        (m / 4).clamp(MIN_DEFAULT_DECODE_BUDGET, MAX_DEFAULT_DECODE_BUDGET)
    })
}

/// The memory this process may use: `MemTotal`, or the cgroup limit when that is smaller.
fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_total(&s));
    match (total, cgroup_limit()) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` of `/proc/meminfo` text, in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The cgroup v2 `memory.max` of this process, when it is a number.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let dir = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let path = format!("/sys/fs/cgroup{}/memory.max", dir.trim_end_matches('/'));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// A budget of its own (leaked: reservations refer to it for `'static`).
    fn budget(bytes: u64) -> &'static Budget {
        let b: &'static Budget = Box::leak(Box::new(Budget::new()));
        b.set(bytes);
        b
    }

    /// Waits until `n` reservations wait on `b` (bounded: a hang fails the test).
    fn until_waiting(b: &Budget, n: u64) {
        let since = Instant::now();
        while b.stats().waiting != n {
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "never {n} waiting"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts a thread reserving `bytes` of `b` that reports `(tag, outcome)` once it has it
    /// (and keeps it until `release` says so).
    fn reserver(
        b: &'static Budget,
        bytes: u64,
        tag: &'static str,
        done: mpsc::Sender<(&'static str, Result<u64>)>,
        release: mpsc::Receiver<()>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let r = b.reserve(Path::new(tag), bytes);
            let bytes = r
                .as_ref()
                .map(DecodeReservation::bytes)
                .map_err(|e| Error::invalid("test", e.to_string()));
            done.send((tag, bytes)).unwrap();
            let _ = release.recv();
            drop(r);
        })
    }

    #[test]
    fn a_large_reservation_is_not_overtaken_by_small_ones() {
        let b = budget(100);
        let held = b.reserve(Path::new("held"), 60).unwrap();
        let (done_tx, done) = mpsc::channel();
        let (release_big, rx) = mpsc::channel();
        let big = reserver(b, 80, "big", done_tx.clone(), rx);
        until_waiting(b, 1);
        // 10 would fit beside the 60 held, but the 80 asked first.
        let (release_small, rx) = mpsc::channel();
        let small = reserver(b, 10, "small", done_tx, rx);
        until_waiting(b, 2);
        assert!(done.try_recv().is_err());
        assert_eq!(b.stats().in_use, 60);
        // Once the 60 are given back, both fit (80 + 10).
        drop(held);
        let next = || done.recv_timeout(Duration::from_secs(20)).unwrap().0;
        let mut served = [next(), next()];
        served.sort_unstable();
        assert_eq!(served, ["big", "small"]);
        assert_eq!(b.stats().in_use, 90);
        release_big.send(()).unwrap();
        release_small.send(()).unwrap();
        big.join().unwrap();
        small.join().unwrap();
        let stats = b.stats();
        assert_eq!(
            (stats.in_use, stats.waiting, stats.waited, stats.peak),
            (0, 0, 2, 90)
        );
    }

    #[test]
    fn a_waiting_reservation_is_refused_when_the_budget_drops_below_it_and_served_when_it_rises() {
        let b = budget(100);
        let held = b.reserve(Path::new("held"), 60).unwrap();
        let (done_tx, done) = mpsc::channel();
        let (release, rx) = mpsc::channel();
        let t = reserver(b, 80, "big", done_tx.clone(), rx);
        until_waiting(b, 1);
        b.set(70);
        let (tag, outcome) = done.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(tag, "big");
        let text = outcome.unwrap_err().to_string();
        assert!(
            text.contains("80 bytes") && text.contains("70 bytes"),
            "{text}"
        );
        drop(release);
        t.join().unwrap();
        // Raising the budget lets a waiting one through without any release.
        let (release, rx) = mpsc::channel();
        let t = reserver(b, 30, "later", done_tx, rx);
        until_waiting(b, 1);
        b.set(90);
        let (_, outcome) = done.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(outcome.unwrap(), 30);
        drop(held);
        drop(release);
        t.join().unwrap();
        assert_eq!(b.stats().in_use, 0);
        // Nothing is ever needed for nothing, even when the budget is taken.
        let all = b.reserve(Path::new("all"), 90).unwrap();
        assert_eq!(b.reserve(Path::new("none"), 0).unwrap().bytes(), 0);
        drop(all);
    }

    #[test]
    fn more_than_the_whole_budget_is_refused_at_once_naming_both_sizes() {
        let b = budget(1 << 20);
        let err = b.reserve(Path::new("big.png"), 3 << 20).unwrap_err();
        assert!(
            matches!(&err, Error::OverDecodeBudget { needed, budget, .. }
                if *needed == 3 << 20 && *budget == 1 << 20),
            "{err:?}"
        );
        assert_eq!(b.stats().waited, 0);
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       24575376 kB\nMemFree:        22000000 kB\n";
        assert_eq!(meminfo_total(text), Some(24_575_376 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn the_default_is_within_its_bounds() {
        let d = default_decode_budget();
        assert!(
            (MIN_DEFAULT_DECODE_BUDGET..=MAX_DEFAULT_DECODE_BUDGET).contains(&d)
                || d == FALLBACK_DECODE_BUDGET,
            "{d}"
        );
    }
}
