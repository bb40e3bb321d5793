//! Corruption on disk: a complete cache folder is damaged in every way a disk, a crash, a person
//! or another program can damage it, and a pyramid opened on it must serve every slice of every
//! level equal to a naive pyramid, while its counters say what it found:
//!
//! - damaged blobs (seeded byte flips anywhere in the file, truncations down to 0 bytes,
//!   zero-filled files, another slice's or another level's blob in place, appended garbage,
//!   another format version with the checksum stale or recomputed): each one counted in
//!   `stats().disk.corrupt`, named in a warning, regenerated once, and rewritten, so that the
//!   next open finds a complete, valid folder;
//! - manifest faults: deleted or garbled (every blob discarded, `invalidated` equal to the blob
//!   count; a warning naming the manifest when garbled), or describing another stack (exactly
//!   the blobs that depend on the edited source records discarded, or all of them for another
//!   slice size, level rule or format version);
//! - odd files: a directory where a blob or the manifest should be, a file where a level
//!   folder should be, an unreadable blob (skipped as root, who reads anyway), stray files: no
//!   error, correct slices, and what was found in the warnings.
//!
//! Every scenario starts from a copy of one complete folder, and a summary table (kind,
//! injected, detected, through which counter, slices correct, healed on reopening) is printed
//! (`cargo test --release --test fault_corruption -- --nocapture`). The design guarantees
//! detection of every damaged blob (a checksum over header and payload, checked after the magic,
//! version and every header field), so those counts are asserted exactly; so is the
//! exhaustive check that every single-bit flip and every truncation of a blob is refused by
//! `codec::verify`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Rng, Scan, upper_keys, values};
use lodcache::codec::{self, FORMAT_VERSION, HEADER_LEN};
use lodcache::store::{DiskMode, DiskStats, blob_path};
use lodcache::{
    LevelInfo, Phantom, PyramidStats, Served, SliceKey, WarmupOptions, WarmupOutcome,
    dependent_slice,
};

/// Levels (edge 16) of a 256 x 192 x 64 stack: 128 x 96 x 32, 64 x 48 x 16, 32 x 24 x 8,
/// 16 x 12 x 4.
const SIZE: (u32, u32, u32) = (256, 192, 64);
const EDGE: u32 = 16;
const ALL: usize = 32 + 16 + 8 + 4;
const SEED: u64 = 0xD15C_0B1A_B5EE_D001;

/// One line of the summary table.
struct Row {
    kind: String,
    injected: usize,
    detected: u64,
    via: &'static str,
    /// Slices served equal to the naive pyramid (`None`: not a pyramid scenario).
    correct: Option<usize>,
    healed: String,
}

/// What a pyramid opened on a damaged folder found and did while every slice was read.
struct Reading {
    /// Disk counters right after opening (before any read).
    open: DiskStats,
    /// Blob files left right after opening.
    files_after_open: BTreeSet<SliceKey>,
    /// Every counter after reading every slice (flushed).
    after: PyramidStats,
    warnings: Vec<String>,
    /// Slices equal to the naive pyramid (a wrong one is reported and not counted).
    correct: usize,
}

/// Checks that do not stop the test, so that the table is printed whatever fails; the test
/// fails at the end if any did.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let message = what();
            eprintln!("FAILED: {message}");
            self.0.push(message);
        }
    }

    fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, found: T, expected: T) {
        self.check(found == expected, || {
            format!("{what}: found {found:?}, expected {expected:?}")
        });
    }
}

struct Fixture {
    scan: Scan,
    levels: Vec<LevelInfo>,
    keys: Vec<SliceKey>,
    pristine: PathBuf,
    /// The pristine blob of every key.
    blobs: BTreeMap<SliceKey, Vec<u8>>,
    /// What the blobs are made from.
    fingerprint: lodcache::store::Fingerprint,
}

impl Fixture {
    fn new() -> Fixture {
        let scan = Scan::new(Phantom::new(SIZE.0, SIZE.1, SIZE.2).with_seed(2718), EDGE);
        let pristine = scan.path("pristine");
        let pyr = scan.open_at(&pristine);
        let levels = pyr.levels().to_vec();
        let fingerprint = pyr.tiers().fingerprint().clone();
        let outcome = pyr.warm_up(WarmupOptions::default()).wait();
        assert!(
            matches!(outcome, WarmupOutcome::Completed(_)),
            "{outcome:?}"
        );
        drop(pyr);
        let keys = upper_keys(&levels);
        assert_eq!(keys.len(), ALL);
        assert_eq!(scan.naive().len(), levels.len());
        let blobs = keys
            .iter()
            .map(|k| (*k, std::fs::read(blob_path(&pristine, *k)).unwrap()))
            .collect();
        Fixture {
            scan,
            levels,
            keys,
            pristine,
            blobs,
            fingerprint,
        }
    }

    /// The working folder, made equal to the complete one again for the next scenario (by
    /// rewriting only what differs: creating thousands of files is slow on some file systems).
    fn scenario(&self, name: &str) -> PathBuf {
        let work = self.scan.path("work");
        restore(&self.pristine, &work);
        assert!(
            blob_files(&work, &self.keys).len() == ALL,
            "{name}: the folder was not restored"
        );
        work
    }

    fn check(&self, what: &str, key: SliceKey, slice: &lodcache::Slice) -> bool {
        let want = &self.scan.naive()[key.level as usize];
        (slice.width() as usize, slice.height() as usize) == (want.width, want.height)
            && values(slice) == want.slices[key.z as usize]
            || {
                eprintln!("{what}: {key} differs from the naive pyramid");
                false
            }
    }

    /// Opens a pyramid on `cache` and reads every slice of every level, in a seeded random
    /// order, comparing each with the naive pyramid.
    fn serve_all(&self, what: &str, cache: &Path, seed: u64) -> Reading {
        let pyr = self.scan.open_at(cache);
        let open = pyr.stats().disk;
        let files_after_open = blob_files(cache, &self.keys);
        let mut order = self.keys.clone();
        Rng(seed).shuffle(&mut order);
        let mut correct = 0;
        for key in order {
            let slice = pyr
                .slice(key.level, key.z)
                .unwrap_or_else(|e| panic!("{what}: {key}: {e}"));
            correct += usize::from(self.check(what, key, &slice));
        }
        pyr.flush();
        let after = pyr.stats();
        let warnings = pyr.warnings();
        Reading {
            open,
            files_after_open,
            after,
            warnings,
            correct,
        }
    }

    /// Reopens `cache` and reads every slice: "yes" when every one comes from disk, valid and
    /// correct, with nothing invalidated; otherwise what was found.
    fn healed(&self, what: &str, cache: &Path) -> String {
        let pyr = self.scan.open_at(cache);
        let open = pyr.stats().disk;
        let mut from_disk = 0;
        for key in &self.keys {
            let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
            assert!(
                self.check(what, *key, &slice),
                "{what}: reopened: {key} is wrong"
            );
            from_disk += usize::from(served == Served::Disk);
        }
        let s = pyr.stats();
        if open.invalidated == 0 && from_disk == ALL && s.disk.corrupt == 0 && s.generated == 0 {
            "yes".into()
        } else {
            format!(
                "no: {from_disk} from disk, {} made, {} invalidated, {} corrupt",
                s.generated, open.invalidated, s.disk.corrupt
            )
        }
    }
}

/// Makes the folder `to` a copy of `from`: what differs is rewritten, what is extra removed.
fn restore(from: &Path, to: &Path) {
    if to.exists() && !to.is_dir() {
        std::fs::remove_file(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(to).unwrap().flatten() {
        let path = entry.path();
        let source = from.join(entry.file_name());
        let extra = !source.exists() || source.is_dir() != path.is_dir();
        if extra && path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else if extra {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            restore(&path, &target);
        } else {
            let want = std::fs::read(&path).unwrap();
            if std::fs::read(&target).ok().as_ref() != Some(&want) {
                // Removed first: it may be unreadable, or not a file.
                let _ = std::fs::remove_file(&target);
                std::fs::write(&target, &want).unwrap();
            }
        }
    }
}

/// The keys whose blob files exist in `cache`.
fn blob_files(cache: &Path, keys: &[SliceKey]) -> BTreeSet<SliceKey> {
    keys.iter()
        .copied()
        .filter(|k| blob_path(cache, *k).is_file())
        .collect()
}

/// Bytes of the blob files of `keys` in `cache`.
fn bytes_on_disk(cache: &Path, keys: &[SliceKey]) -> u64 {
    keys.iter()
        .filter_map(|k| std::fs::metadata(blob_path(cache, *k)).ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// The checksum as the blob format documents it: XXH3-64 of the payload, used as the seed of
/// XXH3-64 over header bytes 0..60.
fn checksum(blob: &[u8]) -> u64 {
    let payload = xxhash_rust::xxh3::xxh3_64(&blob[HEADER_LEN..]);
    xxhash_rust::xxh3::xxh3_64_with_seed(&blob[..60], payload)
}

fn set_checksum(blob: &mut [u8]) {
    let sum = checksum(blob);
    blob[60..68].copy_from_slice(&sum.to_le_bytes());
}

/// A way to damage one blob: from the fixture, the key and its pristine bytes, the bytes to
/// write in its place.
type Damage<'a> = &'a dyn Fn(&Fixture, &mut Rng, usize, SliceKey, &[u8]) -> Vec<u8>;

/// Damages `n` seeded random blobs of a fresh folder with `damage` (given the index of each),
/// reads everything, and checks what the design guarantees: each damaged blob counted as
/// corrupt exactly once, named in a warning, regenerated exactly once, and rewritten.
fn blob_faults(
    fx: &Fixture,
    checks: &mut Checks,
    rows: &mut Vec<Row>,
    kind: &str,
    n: usize,
    seed: u64,
    damage: Damage<'_>,
) {
    let cache = fx.scenario(kind);
    let mut rng = Rng(seed);
    let mut keys = fx.keys.clone();
    rng.shuffle(&mut keys);
    keys.truncate(n);
    for (i, key) in keys.iter().enumerate() {
        let bytes = damage(fx, &mut rng, i, *key, &fx.blobs[key]);
        assert_ne!(bytes, fx.blobs[key], "{kind}: {key} not damaged");
        std::fs::write(blob_path(&cache, *key), bytes).unwrap();
    }
    let r = fx.serve_all(kind, &cache, seed ^ 1);
    let d = r.after.disk;
    checks.equal(
        &format!("{kind}: blobs found on open"),
        r.open.blobs,
        ALL as u64,
    );
    checks.equal(&format!("{kind}: invalidated"), r.open.invalidated, 0);
    checks.equal(&format!("{kind}: corrupt"), d.corrupt, n as u64);
    checks.equal(&format!("{kind}: disk misses"), d.misses, n as u64);
    checks.equal(&format!("{kind}: disk hits"), d.hits, (ALL - n) as u64);
    checks.equal(&format!("{kind}: slices made"), r.after.generated, n as u64);
    checks.equal(&format!("{kind}: write errors"), d.write_errors, 0);
    let damaged_warnings = r
        .warnings
        .iter()
        .filter(|w| w.contains("damaged cache blob"))
        .count();
    checks.equal(&format!("{kind}: damage warnings"), damaged_warnings, n);
    for key in &keys {
        let path = blob_path(&cache, *key).display().to_string();
        checks.check(r.warnings.iter().any(|w| w.contains(&path)), || {
            format!("{kind}: no warning names {path}: {:?}", r.warnings)
        });
    }
    checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
    // The rewritten blobs are known again, at their new sizes.
    checks.equal(&format!("{kind}: blobs known"), d.blobs, ALL as u64);
    checks.equal(
        &format!("{kind}: bytes known"),
        d.bytes,
        bytes_on_disk(&cache, &fx.keys),
    );
    let healed = fx.healed(kind, &cache);
    checks.equal(&format!("{kind}: healed"), healed.as_str(), "yes");
    rows.push(Row {
        kind: kind.into(),
        injected: n,
        detected: d.corrupt,
        via: "disk.corrupt",
        correct: Some(r.correct),
        healed,
    });
}

#[test]
fn every_fault_on_disk_is_detected_and_every_slice_stays_correct() {
    let fx = Fixture::new();
    let mut checks = Checks::default();
    let mut rows = Vec::new();

    // The documented checksum is the one the blobs carry (so that a recomputed one is valid).
    for (key, blob) in &fx.blobs {
        assert_eq!(
            checksum(blob).to_le_bytes(),
            blob[60..68],
            "{key}: the checksum is not as documented"
        );
    }

    // ---- Damaged blobs ------------------------------------------------------------------
    for round in 0..3u64 {
        let seed = SEED + round;
        blob_faults(
            &fx,
            &mut checks,
            &mut rows,
            &format!("byte flip, round {round}"),
            10,
            seed,
            &|_, rng, _, _, pristine| {
                let mut b = pristine.to_vec();
                let at = rng.below(b.len());
                b[at] ^= 1 + rng.below(255) as u8;
                b
            },
        );
    }
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "byte flip in the header",
        10,
        SEED + 10,
        &|_, rng, _, _, pristine| {
            let mut b = pristine.to_vec();
            let at = rng.below(HEADER_LEN);
            b[at] ^= 1 + rng.below(255) as u8;
            b
        },
    );
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "truncation (0, 1, 3, 4, 30, 67, 68, random, len - 1 bytes)",
        9,
        SEED + 20,
        &|_, rng, i, _, pristine| {
            let len = pristine.len();
            let keep = match i {
                0 => 0,
                1 => 1,
                2 => 3,
                3 => 4,
                4 => 30,
                5 => HEADER_LEN - 1,
                6 => HEADER_LEN,
                7 => HEADER_LEN + 1 + rng.below(len - HEADER_LEN - 2),
                _ => len - 1,
            };
            pristine[..keep].to_vec()
        },
    );
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "zero-filled, original length",
        5,
        SEED + 30,
        &|_, _, _, _, pristine| vec![0; pristine.len()],
    );
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "another slice's blob (same level)",
        5,
        SEED + 40,
        &|fx, rng, _, key, _| {
            let depth = fx.levels[key.level as usize].depth;
            let other = (key.z + 1 + rng.below(depth as usize - 1) as u32) % depth;
            fx.blobs[&SliceKey::new(key.level, other)].clone()
        },
    );
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "another level's blob",
        5,
        SEED + 50,
        &|fx, rng, _, key, _| {
            let level = if key.level == 1 { 2 } else { key.level - 1 };
            let depth = fx.levels[level as usize].depth;
            fx.blobs[&SliceKey::new(level, rng.below(depth as usize) as u32)].clone()
        },
    );
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "appended garbage (1, 16, 4096 bytes, the blob twice)",
        4,
        SEED + 60,
        &|_, rng, i, _, pristine| {
            let mut b = pristine.to_vec();
            match i {
                0 => b.push(0),
                1 => b.extend((0..16).map(|_| rng.next() as u8)),
                2 => b.extend(std::iter::repeat_n(0u8, 4096)),
                _ => b.extend_from_slice(pristine),
            }
            b
        },
    );
    for (kind, seed, resum) in [
        (
            "format versions before and after this one, and 65535 (checksum stale)",
            SEED + 70,
            false,
        ),
        (
            "format versions before and after this one, and 65535 (checksum recomputed)",
            SEED + 80,
            true,
        ),
    ] {
        blob_faults(
            &fx,
            &mut checks,
            &mut rows,
            kind,
            3,
            seed,
            &|_, _, i, _, pristine| {
                let mut b = pristine.to_vec();
                let version: u16 = [FORMAT_VERSION - 1, FORMAT_VERSION + 1, u16::MAX][i];
                b[4..6].copy_from_slice(&version.to_le_bytes());
                if resum {
                    set_checksum(&mut b);
                }
                b
            },
        );
    }
    // All of those at once, on different blobs.
    blob_faults(
        &fx,
        &mut checks,
        &mut rows,
        "all of the above at once",
        8,
        SEED + 90,
        &|fx, rng, i, key, pristine| {
            let mut b = pristine.to_vec();
            match i {
                0 => {
                    let at = rng.below(b.len());
                    b[at] ^= 0x80;
                }
                1 => b.truncate(rng.below(b.len())),
                2 => b.fill(0),
                3 => {
                    let depth = fx.levels[key.level as usize].depth;
                    b = fx.blobs[&SliceKey::new(key.level, (key.z + 1) % depth)].clone();
                }
                4 => {
                    let level = if key.level == 1 { 2 } else { key.level - 1 };
                    b = fx.blobs[&SliceKey::new(level, 0)].clone();
                }
                5 => b.extend_from_slice(b"garbage"),
                6 => b[4] ^= 0x03,
                _ => {
                    b[4] ^= 0x03;
                    set_checksum(&mut b);
                }
            }
            b
        },
    );

    // ---- The manifest -------------------------------------------------------------------
    manifest_faults(&fx, &mut checks, &mut rows);

    // ---- Odd files ----------------------------------------------------------------------
    odd_files(&fx, &mut checks, &mut rows);

    // ---- Every single-bit flip and every truncation, straight through the codec ----------
    codec_exhaustive(&fx, &mut checks, &mut rows);

    println!(
        "\n{:<58} {:>8} {:>8}  {:<26} {:>7}  healed on reopening",
        "fault", "injected", "detected", "via", "correct"
    );
    for r in &rows {
        println!(
            "{:<58} {:>8} {:>8}  {:<26} {:>7}  {}",
            r.kind,
            r.injected,
            r.detected,
            r.via,
            r.correct.map_or("-".into(), |c| format!("{c}/{ALL}")),
            r.healed
        );
    }
    let injected: usize = rows
        .iter()
        .filter(|r| r.via == "disk.corrupt")
        .map(|r| r.injected)
        .sum();
    println!("{injected} damaged blobs injected through the pyramid, all counted as corrupt");
    assert!(
        checks.0.is_empty(),
        "{} checks failed:\n{}",
        checks.0.len(),
        checks.0.join("\n")
    );
}

/// The manifest as JSON.
fn manifest_json(cache: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(cache.join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(cache: &Path, manifest: &serde_json::Value) {
    std::fs::write(
        cache.join("manifest.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}

/// The blobs that depend on source slices `sources`: slice `p >> n` of each level `n`.
fn dependents(fx: &Fixture, sources: &[u32]) -> BTreeSet<SliceKey> {
    sources
        .iter()
        .flat_map(|&p| {
            fx.levels[1..]
                .iter()
                .map(move |l| SliceKey::new(l.level, dependent_slice(l.level, p)))
        })
        .filter(|k| k.z < fx.levels[k.level as usize].depth)
        .collect()
}

fn manifest_faults(fx: &Fixture, checks: &mut Checks, rows: &mut Vec<Row>) {
    let all: BTreeSet<SliceKey> = fx.keys.iter().copied().collect();
    let mut rng = Rng(SEED + 100);
    let mut random_sources = |n: usize| -> Vec<u32> {
        let mut p: Vec<u32> = (0..SIZE.2).collect();
        rng.shuffle(&mut p);
        p.truncate(n);
        p
    };
    let edited_sizes = random_sources(3);
    let edited_mtime = random_sources(1);
    let renamed = random_sources(1);

    // (kind, edit, blobs expected to be discarded, a warning naming the manifest expected)
    type Edit<'a> = Box<dyn Fn(&Path) + 'a>;
    let garble = |bytes: Vec<u8>| -> Edit<'_> {
        Box::new(move |cache: &Path| std::fs::write(cache.join("manifest.json"), &bytes).unwrap())
    };
    let edit_json = |f: Box<dyn Fn(&mut serde_json::Value)>| -> Edit<'_> {
        Box::new(move |cache: &Path| {
            let mut m = manifest_json(cache);
            f(&mut m);
            write_manifest(cache, &m);
        })
    };
    let pristine_manifest = std::fs::read(fx.pristine.join("manifest.json")).unwrap();
    let mut noise = vec![0u8; 700];
    let mut r2 = Rng(SEED + 101);
    noise.iter_mut().for_each(|b| *b = r2.next() as u8);
    let sizes = edited_sizes.clone();
    let mtime = edited_mtime[0];
    let name = renamed[0];
    let cases: Vec<(String, Edit<'_>, BTreeSet<SliceKey>, bool)> = vec![
        (
            "manifest deleted".into(),
            Box::new(|cache: &Path| std::fs::remove_file(cache.join("manifest.json")).unwrap()),
            all.clone(),
            false,
        ),
        (
            "manifest garbled: cut in half".into(),
            garble(pristine_manifest[..pristine_manifest.len() / 2].to_vec()),
            all.clone(),
            true,
        ),
        (
            "manifest garbled: random bytes".into(),
            garble(noise),
            all.clone(),
            true,
        ),
        (
            "manifest garbled: empty file".into(),
            garble(Vec::new()),
            all.clone(),
            true,
        ),
        (
            "manifest garbled: JSON null".into(),
            garble(b"null".to_vec()),
            all.clone(),
            true,
        ),
        (
            "manifest garbled: a field of the wrong type".into(),
            edit_json(Box::new(|m| m["width"] = "wide".into())),
            all.clone(),
            true,
        ),
        (
            format!("another stack: sizes of sources {sizes:?} edited"),
            edit_json(Box::new(move |m| {
                for &p in &sizes {
                    let size = m["sources"][p as usize]["size"].as_u64().unwrap();
                    m["sources"][p as usize]["size"] = (size + 1).into();
                }
            })),
            dependents(fx, &edited_sizes),
            false,
        ),
        (
            format!("another stack: mtime of source {mtime} edited"),
            edit_json(Box::new(move |m| {
                m["sources"][mtime as usize]["mtime_ns"] = 12345.into();
            })),
            dependents(fx, &edited_mtime),
            false,
        ),
        (
            format!("another stack: source {name} renamed"),
            edit_json(Box::new(move |m| {
                m["sources"][name as usize]["name"] = "other.tif".into();
            })),
            dependents(fx, &renamed),
            false,
        ),
        (
            "another stack: one source fewer (the last)".into(),
            edit_json(Box::new(|m| {
                m["sources"].as_array_mut().unwrap().pop();
            })),
            dependents(fx, &[SIZE.2 - 1]),
            false,
        ),
        (
            "another stack: slice width edited".into(),
            edit_json(Box::new(|m| m["width"] = (SIZE.0 + 2).into())),
            all.clone(),
            false,
        ),
        (
            // The level rule is not part of what blobs depend on: a manifest written under
            // another edge (by an older lodcache, which recorded it) keeps every blob.
            "the level rule's edge recorded in the manifest".into(),
            edit_json(Box::new(|m| m["edge"] = (EDGE * 2).into())),
            BTreeSet::new(),
            false,
        ),
        (
            "another blob format version in the manifest".into(),
            edit_json(Box::new(|m| {
                let v = m["format_version"].as_u64().unwrap();
                m["format_version"] = (v + 1).into();
            })),
            all.clone(),
            false,
        ),
    ];
    for (kind, edit, discarded, warned) in cases {
        let cache = fx.scenario(&kind);
        edit(&cache);
        let r = fx.serve_all(&kind, &cache, SEED + 102);
        let n = discarded.len() as u64;
        checks.equal(&format!("{kind}: invalidated"), r.open.invalidated, n);
        checks.equal(
            &format!("{kind}: blobs left on open"),
            r.open.blobs,
            (ALL - discarded.len()) as u64,
        );
        let expected_left: BTreeSet<SliceKey> = all.difference(&discarded).copied().collect();
        checks.equal(
            &format!("{kind}: blob files left on open"),
            &r.files_after_open,
            &expected_left,
        );
        checks.equal(&format!("{kind}: slices made"), r.after.generated, n);
        checks.equal(&format!("{kind}: corrupt"), r.after.disk.corrupt, 0);
        checks.equal(&format!("{kind}: mode"), r.open.mode, DiskMode::ReadWrite);
        let names = r.warnings.iter().any(|w| w.contains("manifest.json"));
        checks.equal(
            &format!("{kind}: a warning names the manifest"),
            names,
            warned,
        );
        checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
        checks.equal(
            &format!("{kind}: blobs known"),
            r.after.disk.blobs,
            ALL as u64,
        );
        checks.equal(
            &format!("{kind}: bytes known"),
            r.after.disk.bytes,
            bytes_on_disk(&cache, &fx.keys),
        );
        let healed = fx.healed(&kind, &cache);
        checks.equal(&format!("{kind}: healed"), healed.as_str(), "yes");
        rows.push(Row {
            kind,
            injected: discarded.len(),
            detected: r.open.invalidated,
            via: if warned {
                "disk.invalidated + warning"
            } else {
                "disk.invalidated"
            },
            correct: Some(r.correct),
            healed,
        });
    }
}

/// Whether this process can read a file whatever its permissions (root).
fn reads_anything(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    readable
}

fn odd_files(fx: &Fixture, checks: &mut Checks, rows: &mut Vec<Row>) {
    // A directory where a blob should be: not a blob (not counted), a read and a write that
    // fail with warnings naming it; the slice is made and served from memory.
    let kind = "a directory where a blob should be";
    let cache = fx.scenario(kind);
    let key = SliceKey::new(2, 5);
    let path = blob_path(&cache, key);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside.txt"), b"x").unwrap();
    let r = fx.serve_all(kind, &cache, SEED + 200);
    let named = path.display().to_string();
    let warned = r.warnings.iter().filter(|w| w.contains(&named)).count() as u64;
    checks.equal(
        &format!("{kind}: blobs found"),
        r.open.blobs,
        ALL as u64 - 1,
    );
    // Read as a miss (counted: not a blob file), and left alone: lodcache cannot tell it made
    // what the folder holds.
    checks.equal(&format!("{kind}: corrupt"), r.after.disk.corrupt, 1);
    checks.equal(&format!("{kind}: slices made"), r.after.generated, 1);
    checks.check(warned >= 1, || {
        format!("{kind}: no warning names it: {:?}", r.warnings)
    });
    checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
    let healed = fx.healed(kind, &cache);
    checks.check(path.join("inside.txt").is_file(), || {
        format!("{kind}: the directory's contents were touched")
    });
    rows.push(Row {
        kind: kind.into(),
        injected: 1,
        detected: warned,
        via: "warnings (read, write)",
        correct: Some(r.correct),
        healed: format!(
            "{healed} (write errors {}: the directory stays)",
            r.after.disk.write_errors
        ),
    });

    // A directory where the manifest should be: it can be neither read nor replaced, so the
    // blobs cannot be trusted and the folder cannot be used; the pyramid caches in memory.
    let kind = "a directory where the manifest should be";
    let cache = fx.scenario(kind);
    let manifest = cache.join("manifest.json");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::create_dir(&manifest).unwrap();
    let r = fx.serve_all(kind, &cache, SEED + 204);
    let warned = r
        .warnings
        .iter()
        .filter(|w| w.contains("manifest.json"))
        .count() as u64;
    checks.check(warned >= 1, || {
        format!("{kind}: no warning names the manifest: {:?}", r.warnings)
    });
    checks.equal(&format!("{kind}: corrupt"), r.after.disk.corrupt, 0);
    checks.equal(
        &format!("{kind}: slices made"),
        r.after.generated,
        ALL as u64,
    );
    checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
    let healed = fx.healed(kind, &cache);
    println!(
        "{kind}: mode {:?}, {} blobs invalidated on open, {} left; warnings: {:?}",
        r.open.mode,
        r.open.invalidated,
        r.files_after_open.len(),
        r.warnings
    );
    rows.push(Row {
        kind: kind.into(),
        injected: 1,
        detected: warned,
        via: "warnings",
        correct: Some(r.correct),
        healed: format!(
            "{healed} (mode {:?}, {} blobs discarded)",
            r.open.mode, r.open.invalidated
        ),
    });

    // A file where a level folder should be.
    let kind = "a file where a level folder should be (level 3)";
    let cache = fx.scenario(kind);
    let level_dir = cache.join("3");
    std::fs::remove_dir_all(&level_dir).unwrap();
    std::fs::write(&level_dir, b"not a folder").unwrap();
    let r = fx.serve_all(kind, &cache, SEED + 201);
    let depth = fx.levels[3].depth as u64;
    let named = level_dir.display().to_string();
    let warned = r.warnings.iter().filter(|w| w.contains(&named)).count() as u64;
    checks.equal(
        &format!("{kind}: blobs found"),
        r.open.blobs,
        ALL as u64 - depth,
    );
    checks.equal(&format!("{kind}: slices made"), r.after.generated, depth);
    checks.check(warned >= 1, || {
        format!("{kind}: no warning names it: {:?}", r.warnings)
    });
    checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
    let healed = fx.healed(kind, &cache);
    rows.push(Row {
        kind: kind.into(),
        injected: depth as usize,
        detected: warned,
        via: "warnings",
        correct: Some(r.correct),
        healed: format!("{healed} (write errors {})", r.after.disk.write_errors),
    });

    // An unreadable blob: a read error (warned), then rewritten in place.
    let kind = "an unreadable blob (mode 000)";
    if reads_anything(fx.scan.tmp.path()) {
        println!("SKIPPED: {kind}: this process reads files whatever their mode (root)");
        rows.push(Row {
            kind: kind.into(),
            injected: 0,
            detected: 0,
            via: "skipped: running as root",
            correct: None,
            healed: "-".into(),
        });
    } else {
        use std::os::unix::fs::PermissionsExt;
        let cache = fx.scenario(kind);
        let key = SliceKey::new(1, 7);
        let path = blob_path(&cache, key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let r = fx.serve_all(kind, &cache, SEED + 202);
        let named = path.display().to_string();
        let warned = r.warnings.iter().filter(|w| w.contains(&named)).count() as u64;
        checks.equal(&format!("{kind}: slices made"), r.after.generated, 1);
        checks.check(warned >= 1, || {
            format!("{kind}: no warning names it: {:?}", r.warnings)
        });
        checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
        let healed = fx.healed(kind, &cache);
        checks.equal(&format!("{kind}: healed"), healed.as_str(), "yes");
        rows.push(Row {
            kind: kind.into(),
            injected: 1,
            detected: warned,
            via: "warnings",
            correct: Some(r.correct),
            healed,
        });
    }

    // Stray files: ignored or removed, never an error, never counted as blobs.
    let kind = "stray files";
    let cache = fx.scenario(kind);
    let strays = [
        "notes.txt",
        "1/abc.blob",
        "1/000003.blob.bak",
        "1/000003.txt",
        "1/999999.blob",
        "0/000000.blob",
        "5/000000.blob",
        "99/000000.blob",
        "abc/000000.blob",
        "1/000002.blob.tmp-99999999-0-0",
    ];
    for s in strays {
        let path = cache.join(s);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"stray").unwrap();
    }
    let r = fx.serve_all(kind, &cache, SEED + 203);
    // "5/000000.blob" names a slice the stack has (level 5, beyond the rule's levels): counted
    // like any blob, checked when read. The rest name no slice of the stack.
    checks.equal(
        &format!("{kind}: blobs found"),
        r.open.blobs,
        ALL as u64 + 1,
    );
    checks.equal(&format!("{kind}: invalidated"), r.open.invalidated, 0);
    checks.equal(&format!("{kind}: corrupt"), r.after.disk.corrupt, 0);
    checks.equal(&format!("{kind}: slices made"), r.after.generated, 0);
    checks.check(r.warnings.is_empty(), || {
        format!("{kind}: warnings: {:?}", r.warnings)
    });
    checks.equal(&format!("{kind}: correct slices"), r.correct, ALL);
    let (kept, removed): (Vec<&str>, Vec<&str>) =
        strays.iter().partition(|s| cache.join(s).exists());
    let healed = fx.healed(kind, &cache);
    checks.equal(&format!("{kind}: healed"), healed.as_str(), "yes");
    println!("stray files ignored: {kept:?}; removed on open: {removed:?}");
    rows.push(Row {
        kind: kind.into(),
        injected: strays.len(),
        detected: removed.len() as u64,
        via: "removed on open (rest kept)",
        correct: Some(r.correct),
        healed,
    });
}

/// Every single-bit flip of whole blobs of levels 4 and 3, a seeded sample of flips of a
/// level-1 blob, and every truncation of the level-4 blob, through `codec::verify`: all refused.
fn codec_exhaustive(fx: &Fixture, checks: &mut Checks, rows: &mut Vec<Row>) {
    let mut rng = Rng(SEED + 300);
    let mut flips = 0usize;
    let mut refused = 0u64;
    let try_flip = |key: SliceKey, bit: usize, flips: &mut usize, refused: &mut u64| {
        let mut b = fx.blobs[&key].clone();
        b[bit / 8] ^= 1 << (bit % 8);
        *flips += 1;
        *refused += u64::from(codec::verify(&b, &fx.fingerprint.id(key).unwrap()).is_err());
    };
    for key in [SliceKey::new(4, 3), SliceKey::new(3, 5)] {
        for bit in 0..fx.blobs[&key].len() * 8 {
            try_flip(key, bit, &mut flips, &mut refused);
        }
    }
    let big = SliceKey::new(1, 17);
    let bits = fx.blobs[&big].len() * 8;
    for _ in 0..20_000 {
        try_flip(big, rng.below(bits), &mut flips, &mut refused);
    }
    checks.equal(
        "single-bit flips refused by codec::verify",
        refused,
        flips as u64,
    );
    rows.push(Row {
        kind: "single-bit flips: every bit of 2 blobs, 20000 of a 3rd".into(),
        injected: flips,
        detected: refused,
        via: "codec::verify is Err",
        correct: None,
        healed: "-".into(),
    });

    let key = SliceKey::new(4, 3);
    let blob = &fx.blobs[&key];
    let id = fx.fingerprint.id(key).unwrap();
    let refused = (0..blob.len())
        .filter(|&n| codec::verify(&blob[..n], &id).is_err())
        .count();
    checks.equal("truncations refused by codec::verify", refused, blob.len());
    // And the untouched blob passes, so that these refusals mean something.
    checks.check(codec::verify(blob, &id).is_ok(), || {
        "the pristine blob is refused".into()
    });
    rows.push(Row {
        kind: "truncation at every length of a blob".into(),
        injected: blob.len(),
        detected: refused as u64,
        via: "codec::verify is Err",
        correct: None,
        healed: "-".into(),
    });
}
