//! Request statistics: what users ask for, per level and per slice, with recent use weighing
//! more, kept in the cache folder so that the next run knows (see [`DemandRanking`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geometry::SliceKey;
use crate::store::{CacheFolder, FolderEntry as Entry};

/// Scores halve over this time (see [`DemandRanking`] for why a day).
pub const HALF_LIFE: Duration = Duration::from_secs(24 * 3600);

/// Version of `demand.json`.
const FILE_VERSION: u32 = 1;
const FILE: &str = "demand.json";
const LOCK: &str = "demand.lock";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A count that halves every [`HALF_LIFE`]: `value` as of `at` (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Score {
    value: f64,
    at: f64,
}

impl Score {
    fn at(&self, t: f64) -> f64 {
        let age = (t - self.at).max(0.0);
        self.value * (-age / HALF_LIFE.as_secs_f64()).exp2()
    }

    fn add(&mut self, amount: f64, t: f64) {
        *self = Score {
            value: self.at(t) + amount,
            at: t.max(self.at),
        };
    }

    fn merged(a: Score, b: Score) -> Score {
        let t = a.at.max(b.at);
        Score {
            value: a.at(t) + b.at(t),
            at: t,
        }
    }
}

/// Scores per level and per slice.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    levels: HashMap<u32, Score>,
    slices: HashMap<SliceKey, Score>,
}

impl Tally {
    fn record(&mut self, key: SliceKey, amount: f64, t: f64) {
        self.levels.entry(key.level).or_default().add(amount, t);
        self.slices.entry(key).or_default().add(amount, t);
    }

    fn record_level(&mut self, level: u32, amount: f64, t: f64) {
        self.levels.entry(level).or_default().add(amount, t);
    }

    fn merge(&mut self, other: &Tally) {
        for (l, s) in &other.levels {
            let e = self.levels.entry(*l).or_default();
            *e = Score::merged(*e, *s);
        }
        for (k, s) in &other.slices {
            let e = self.slices.entry(*k).or_default();
            *e = Score::merged(*e, *s);
        }
    }

    fn is_empty(&self) -> bool {
        self.levels.is_empty() && self.slices.is_empty()
    }
}

/// The file's layout.
#[derive(Debug, Serialize, Deserialize)]
struct DemandFile {
    version: u32,
    half_life_s: f64,
    levels: Vec<(u32, Score)>,
    slices: Vec<(u32, u32, Score)>,
}

impl DemandFile {
    fn from_tally(t: &Tally) -> DemandFile {
        let mut levels: Vec<_> = t.levels.iter().map(|(l, s)| (*l, *s)).collect();
        levels.sort_by_key(|e| e.0);
        let mut slices: Vec<_> = t.slices.iter().map(|(k, s)| (k.level, k.z, *s)).collect();
        slices.sort_by_key(|e| (e.0, e.1));
        DemandFile {
            version: FILE_VERSION,
            half_life_s: HALF_LIFE.as_secs_f64(),
            levels,
            slices,
        }
    }

    fn into_tally(self) -> Tally {
        let ok = |s: &Score| s.value.is_finite() && s.value >= 0.0 && s.at.is_finite();
        Tally {
            levels: self.levels.into_iter().filter(|e| ok(&e.1)).collect(),
            slices: self
                .slices
                .into_iter()
                .filter(|e| ok(&e.2))
                .map(|(l, z, s)| (SliceKey::new(l, z), s))
                .collect(),
        }
    }
}

/// A demand file longer than this is not one of ours.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads `demand.json` (never following a link): `Ok(None)` when absent, an error naming the
/// file when unusable.
fn load(folder: &CacheFolder) -> Result<Option<Tally>> {
    let path = folder.path().join(FILE);
    let bytes = match folder.read(None, FILE, MAX_FILE_BYTES) {
        Ok(Entry::File(b)) => b,
        Ok(Entry::Missing) => return Ok(None),
        Ok(Entry::TooLong(n)) => {
            return Err(Error::decode(
                &path,
                format!("{n} bytes, not a demand file"),
            ));
        }
        Ok(Entry::NotRegular(what)) => {
            return Err(Error::decode(&path, format!("{what}, not a demand file")));
        }
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let path = path.as_path();
    let file: DemandFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::decode(path, format!("not a lodcache demand file: {e}")))?;
    if file.version != FILE_VERSION {
        return Err(Error::decode(
            path,
            format!(
                "demand file version {}, this build reads {FILE_VERSION}",
                file.version
            ),
        ));
    }
    Ok(Some(file.into_tally()))
}

/// One level's place in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelDemand {
    /// The level.
    pub level: u32,
    /// Its decayed request count now.
    pub score: f64,
    /// Its share of all levels' scores (0 to 1).
    pub share: f64,
}

/// What users ask for, most requested first: per level and per slice, with recent use
/// weighing more, kept in the cache folder so that the next run knows.
///
/// # Decay
/// Every request adds 1 to its level's and its slice's score, and scores halve every
/// [`HALF_LIFE`] (24 hours): a session yesterday counts half as much as one now, last week's
/// about a hundredth. CT scans are studied over days (a user comes back to the same fossil the
/// next morning, at the levels they settled on), so a day keeps that habit while letting a
/// change of habit win within a couple of sessions; an hour would forget overnight, a month
/// would take weeks to follow a new workflow. Scores are stored as value-at-time pairs and
/// decayed when read, so nothing runs in the background.
///
/// # Persistence and merging
/// `demand.json` in the cache folder, written atomically. Each process keeps the requests it
/// saw since its last save apart from what it loaded; saving re-reads the file under an
/// exclusive lock (`demand.lock`), adds those requests to it and writes the sum, so two
/// processes that share a cache folder both count and neither count is lost or doubled. A file
/// that cannot be read or parsed, or of another format, is ignored with a warning and
/// replaced at the next save.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DemandRanking {
    /// Levels with any request, highest score first.
    pub levels: Vec<LevelDemand>,
    /// The most requested slices (at most 20), highest score first.
    pub slices: Vec<(SliceKey, f64)>,
}

#[derive(Debug, Default)]
struct State {
    /// What was loaded from the file (or written to it) last.
    base: Tally,
    /// Requests seen since then.
    fresh: Tally,
    /// Requests being saved right now (still counted by readers).
    saving: Tally,
}

/// Request statistics of one pyramid. `Send + Sync`.
#[derive(Debug)]
pub(crate) struct Demand {
    state: Mutex<State>,
    folder: Option<CacheFolder>,
    warnings: Mutex<Vec<String>>,
}

impl Demand {
    /// Statistics kept in memory only.
    pub(crate) fn in_memory() -> Demand {
        Demand {
            state: Mutex::new(State::default()),
            folder: None,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Statistics loaded from and saved to `dir/demand.json`. An unusable file is ignored with
    /// a warning ([`Demand::warnings`]).
    pub(crate) fn open(dir: &Path) -> Demand {
        let folder = match CacheFolder::open(dir, false) {
            Ok(f) => f,
            Err(e) => {
                let demand = Demand::in_memory();
                demand.warn(format!(
                    "cache folder {dir:?} cannot be opened for request statistics ({e})"
                ));
                return demand;
            }
        };
        let loaded = load(&folder);
        let demand = Demand {
            folder: Some(folder),
            ..Demand::in_memory()
        };
        match loaded {
            Ok(Some(base)) => demand.lock().base = base,
            Ok(None) => {}
            Err(e) => demand.warn(format!("{e}; starting without request history")),
        }
        demand
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn warn(&self, message: String) {
        log::warn!("lodcache: {message}");
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
    }

    /// Warnings (an ignored demand file, a failed save).
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts one request for slice `key`.
    pub(crate) fn record(&self, key: SliceKey) {
        self.lock().fresh.record(key, 1.0, now_secs());
    }

    /// Counts one request for the whole of `level` (a volume, a section or an export), worth
    /// `weight` slice requests.
    pub(crate) fn record_level(&self, level: u32, weight: f64) {
        self.lock().fresh.record_level(level, weight, now_secs());
    }

    /// The decayed score of `level` now.
    pub(crate) fn level_score(&self, level: u32) -> f64 {
        let t = now_secs();
        let state = self.lock();
        let get = |tally: &Tally| tally.levels.get(&level).map_or(0.0, |s| s.at(t));
        get(&state.base) + get(&state.fresh) + get(&state.saving)
    }

    /// The ranking now: levels by score, and the most requested slices, of levels below
    /// `level_count` only (requests for levels a pyramid's rule does not have stay counted,
    /// unshown).
    pub(crate) fn ranking(&self, level_count: u32) -> DemandRanking {
        let t = now_secs();
        let all = {
            let state = self.lock();
            let mut all = state.base.clone();
            all.merge(&state.fresh);
            all.merge(&state.saving);
            all
        };
        let mut levels: Vec<LevelDemand> = all
            .levels
            .iter()
            .map(|(l, s)| LevelDemand {
                level: *l,
                score: s.at(t),
                share: 0.0,
            })
            .filter(|d| d.score > 0.0 && d.level < level_count)
            .collect();
        let total: f64 = levels.iter().map(|d| d.score).sum();
        for d in &mut levels {
            d.share = d.score / total;
        }
        levels.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.level.cmp(&b.level)));
        let mut slices: Vec<(SliceKey, f64)> = all
            .slices
            .iter()
            .filter(|(k, _)| k.level < level_count)
            .map(|(k, s)| (*k, s.at(t)))
            .collect();
        slices.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        slices.truncate(20);
        DemandRanking { levels, slices }
    }

    /// Adds the requests seen since the last save to the file (merging with what other
    /// processes saved meanwhile, under a lock) and writes it atomically. Does nothing for
    /// in-memory statistics or when nothing new was counted.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when it cannot be locked or written (the requests stay
    /// counted and are saved next time).
    pub(crate) fn save(&self) -> Result<()> {
        let Some(folder) = &self.folder else {
            return Ok(());
        };
        let fresh = {
            let mut state = self.lock();
            if state.fresh.is_empty() || !state.saving.is_empty() {
                // Nothing new, or another thread is saving: its save or the next one counts.
                return Ok(());
            }
            let fresh = std::mem::take(&mut state.fresh);
            state.saving = fresh.clone();
            fresh
        };
        let result = self.save_locked(folder, &fresh);
        let mut state = self.lock();
        let saved = std::mem::take(&mut state.saving);
        match result {
            Ok(written) => {
                state.base = written;
                Ok(())
            }
            Err(e) => {
                // Keep the requests for the next save.
                state.fresh.merge(&saved);
                Err(e)
            }
        }
    }

    fn save_locked(&self, folder: &CacheFolder, fresh: &Tally) -> Result<Tally> {
        let lock_path = folder.path().join(LOCK);
        let lock = folder
            .lock_file(LOCK)
            .map_err(|e| Error::io("opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| Error::io("locking", &lock_path, e))?;
        let path = folder.path().join(FILE);
        let mut on_disk = match load(folder) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                self.warn(format!("{e}; replacing it"));
                Tally::default()
            }
        };
        on_disk.merge(fresh);
        let bytes = serde_json::to_vec(&DemandFile::from_tally(&on_disk))
            .map_err(|e| Error::internal("demand statistics", e.to_string()))?;
        folder
            .write_atomic(None, FILE, &bytes)
            .map_err(|e| Error::io("writing", &path, e))?;
        // The lock is released when the file is closed.
        drop(lock);
        Ok(on_disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_halve_every_half_life() {
        let mut s = Score::default();
        s.add(8.0, 1000.0);
        let h = HALF_LIFE.as_secs_f64();
        assert!((s.at(1000.0 + h) - 4.0).abs() < 1e-9);
        assert!((s.at(1000.0 + 3.0 * h) - 1.0).abs() < 1e-9);
        s.add(1.0, 1000.0 + h);
        assert!((s.at(1000.0 + h) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn ranking_orders_levels_and_slices() {
        let d = Demand::in_memory();
        for _ in 0..10 {
            d.record(SliceKey::new(2, 3));
        }
        d.record(SliceKey::new(1, 0));
        d.record_level(3, 4.0);
        let r = d.ranking(u32::MAX);
        let order: Vec<u32> = r.levels.iter().map(|l| l.level).collect();
        assert_eq!(order, [2, 3, 1]);
        assert!((r.levels.iter().map(|l| l.share).sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(r.slices[0].0, SliceKey::new(2, 3));
        assert!(d.level_score(2) > 9.99);
        // A rule with levels 0 to 1 sees level 1 only, as the whole of the demand.
        let r = d.ranking(2);
        assert_eq!(r.levels.iter().map(|l| l.level).collect::<Vec<_>>(), [1]);
        assert!((r.levels[0].share - 1.0).abs() < 1e-9);
        assert_eq!(r.slices, [(SliceKey::new(1, 0), r.levels[0].score)]);
    }

    #[test]
    fn saves_merge_across_processes_without_loss_or_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let a = Demand::open(dir.path());
        let b = Demand::open(dir.path());
        for _ in 0..5 {
            a.record(SliceKey::new(1, 0));
        }
        for _ in 0..3 {
            b.record(SliceKey::new(1, 0));
        }
        b.record(SliceKey::new(2, 0));
        a.save().unwrap();
        b.save().unwrap();
        a.record(SliceKey::new(1, 1));
        a.save().unwrap();
        let c = Demand::open(dir.path());
        assert!(
            (c.level_score(1) - 9.0).abs() < 1e-3,
            "{}",
            c.level_score(1)
        );
        assert!((c.level_score(2) - 1.0).abs() < 1e-3);
        // Saving again with nothing new changes nothing.
        c.save().unwrap();
        assert!((Demand::open(dir.path()).level_score(1) - 9.0).abs() < 1e-3);
    }

    #[test]
    fn a_corrupt_or_foreign_demand_file_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{ garbage").unwrap();
        let d = Demand::open(dir.path());
        assert_eq!(d.ranking(u32::MAX), DemandRanking::default());
        assert!(
            d.warnings()[0].contains("demand.json"),
            "{:?}",
            d.warnings()
        );
        d.record(SliceKey::new(1, 0));
        d.save().unwrap();
        assert!((Demand::open(dir.path()).level_score(1) - 1.0).abs() < 1e-3);

        std::fs::write(
            dir.path().join(FILE),
            br#"{"version":99,"half_life_s":1,"levels":[],"slices":[]}"#,
        )
        .unwrap();
        let d = Demand::open(dir.path());
        assert!(d.warnings()[0].contains("version 99"), "{:?}", d.warnings());
    }
}
