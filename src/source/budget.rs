//! The process-wide budget for the memory that decoding slices takes.
//!
//! A slice file can claim far more memory than it holds: a 200 KB PNG of zeros inflates to
//! 200 MB of samples, and a stack of such files decoded on eight threads at once would take
//! eight times that. So every decode reserves, before it allocates anything large, the bytes
//! its working memory will need, and gives them back when it is done:
//!
//! - the decoded slice (the caller's output buffer),
//! - the decoder's own buffer when the file holds more than one gray channel (RGB, RGBA,
//!   gray + alpha, planar TIFF): all channels of the whole image,
//! - the compressed file when the decoder needs it whole (JPEG, JPEG-in-TIFF), and JPEG's
//!   coefficient buffers for progressive and multi-scan files,
//! - an allowance for the decoders' row buffers: a few rows plus [`DECODE_OVERHEAD`].
//!
//! A decode that does not fit next to those already running waits (first come, first served,
//! on a condition variable: no polling) until enough is given back; one that needs more than
//! the whole budget is refused with [`Error::OverDecodeBudget`], naming the file and both
//! sizes, before anything is allocated.
//!
//! Not counted: a decoded slice once its decode has returned (it is the caller's, e.g. a
//! pyramid's cached slices, which its memory budget counts), and memory below the allowance
//! above (headers, tag tables, small tables). So the memory that decoding holds at any
//! moment is at most the budget plus, per thread, the slices it has decoded and still holds.
//!
//! # Default
//! A quarter of the machine's memory (the smaller of `MemTotal` in `/proc/meminfo` and the
//! cgroup v2 `memory.max` of this process), at least [`MIN_DEFAULT_DECODE_BUDGET`] (256 MiB)
//! and at most [`MAX_DEFAULT_DECODE_BUDGET`] (4 GiB); 1 GiB where neither can be read.
//! [`set_decode_budget`] changes it for the whole process (the `lodcache` tool's
//! `--decode-budget SIZE`).

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

static STATE: Mutex<State> = Mutex::new(State {
    budget: None,
    in_use: 0,
    peak: 0,
    waiting: 0,
    waited: 0,
    next_ticket: 0,
    serving: 0,
});

/// Signalled whenever bytes are given back, the queue moves or the budget changes.
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    // The state is a handful of counters, each updated in one step: a panic elsewhere while
    // the lock was held cannot leave them half-done.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes of memory reserved for one decode; given back when dropped.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the reservation is dropped"]
pub struct DecodeReservation {
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
        state().in_use -= self.bytes;
        CHANGED.notify_all();
    }
}

/// Reserves `bytes` of the decode budget for work on `path`, waiting until they fit next to
/// the reservations already held (in arrival order). Decoding reserves what it needs by
/// itself; this is for callers that hold large decoded buffers of their own and want them
/// counted.
///
/// Never call it while holding another reservation on the same thread: a second reservation
/// that has to wait for the first would wait forever.
///
/// # Errors
/// [`Error::OverDecodeBudget`] naming `path`, `bytes` and the budget when `bytes` is more
/// than the whole budget (also when the budget is lowered below it while waiting).
pub fn reserve_decode_memory(path: &Path, bytes: u64) -> Result<DecodeReservation> {
    if bytes == 0 {
        return Ok(DecodeReservation { bytes: 0 });
    }
    let over = |budget| Error::OverDecodeBudget {
        path: path.to_path_buf(),
        needed: bytes,
        budget,
    };
    let mut s = state();
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
                s.serving += 1;
                if waited {
                    s.waiting -= 1;
                }
                drop(s);
                CHANGED.notify_all();
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
        s = CHANGED.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
    if waited {
        s.waiting -= 1;
    }
    s.serving += 1;
    s.in_use += bytes;
    s.peak = s.peak.max(s.in_use);
    drop(s);
    // The next in line may fit too.
    CHANGED.notify_all();
    Ok(DecodeReservation { bytes })
}

/// Sets the process-wide decode budget in bytes (see the module docs). Reservations already
/// held are kept; waiting ones are looked at again at once. Default:
/// [`default_decode_budget`].
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
    state().budget = Some(bytes);
    CHANGED.notify_all();
    Ok(())
}

/// The process-wide decode budget in bytes.
pub fn decode_budget() -> u64 {
    state().budget()
}

/// What the decode budget is doing.
pub fn decode_budget_stats() -> DecodeBudgetStats {
    let mut s = state();
    DecodeBudgetStats {
        budget: s.budget(),
        in_use: s.in_use,
        peak: s.peak,
        waiting: s.waiting,
        waited: s.waited,
    }
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
