//! Hostile input: slice files whose headers claim absurd sizes are refused, naming the file,
//! before anything is allocated (the process's peak memory rises by less than 100 MiB), whether
//! such a file is the first slice or a later one requested through a `Pyramid`; a folder of
//! 10,000 files that are not slices is scanned quickly and reported as holding no images; names
//! with spaces, Unicode and long prefixes work end to end (discovery, slices of every level, the
//! default cache folder inside the stack, reopening, export).
//!
//! The files claiming huge sizes are written by hand (`tests/common`: TIFF, BMP, PNG with a real CRC), so
//! that no encoder's own checks stand between them and lodcache. The tests run one at a time
//! (see [`alone`]) because they measure the process's peak memory.
//!
//! Tiny files claiming a plausible size (1 GiB, under the 4 GiB per-slice limit) are refused
//! without touching that memory: uncompressed TIFF and BMP because their rows do not fit in the
//! file, PNG and deflate TIFF because deflate cannot expand a few bytes that far.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{
    Volume as Naive, bmp_claiming, crc32, phantom_volume, png_claiming, read_tiff, status_bytes,
    tiff_claiming, values,
};
use lodcache::{
    Axis, Error, Phantom, Pyramid, Served, Stack, WarmupOptions, WarmupOutcome, ctharvester_path,
};

/// How much the peak memory may rise while a hostile file is handled: far below what any of
/// the claimed sizes would take (a million by a million pixels is at least 1 TB).
const PEAK_RISE_LIMIT_KIB: u64 = 100 << 10;

/// How long refusing one hostile file may take: it is microseconds of work; this bound only
/// catches something that reads or allocates what the header claims, on a noisy 2-core VM.
const REFUSAL_TIME_LIMIT: Duration = Duration::from_secs(5);

static ALONE: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file: a peak-memory measurement must not see another test's
/// allocations.
fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Peak memory
// ---------------------------------------------------------------------------------------------

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`), or `None` without `/proc`.
fn status_kib(field: &str) -> Option<u64> {
    status_bytes(field).map(|b| b >> 10)
}

/// Watches how far the process's peak resident memory (VmHWM) rises from now on.
struct PeakWatch {
    /// The resident size when the watch started.
    start_kib: u64,
    /// The peak when the watch started (after resetting it, where that is allowed).
    peak_before_kib: u64,
    /// Whether VmHWM could be reset to the current size (`/proc/self/clear_refs`).
    reset: bool,
}

impl PeakWatch {
    fn start() -> Option<PeakWatch> {
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        Some(PeakWatch {
            start_kib: status_kib("VmRSS:")?,
            peak_before_kib: status_kib("VmHWM:")?,
            reset,
        })
    }

    /// KiB the peak rose above the resident size at the start. Without a reset only a rise
    /// above the earlier peak can be seen, so this is then a lower bound.
    fn rise_kib(&self) -> u64 {
        let now = status_kib("VmHWM:").unwrap_or(0);
        if self.reset {
            now.saturating_sub(self.start_kib)
        } else {
            now.saturating_sub(self.peak_before_kib)
        }
    }

    #[track_caller]
    fn assert_small(&self, what: &str) {
        let rise = self.rise_kib();
        assert!(
            rise <= PEAK_RISE_LIMIT_KIB,
            "{what}: the peak resident memory rose by {} MiB (limit {} MiB)",
            rise >> 10,
            PEAK_RISE_LIMIT_KIB >> 10
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written files
// ---------------------------------------------------------------------------------------------

#[test]
fn the_hand_written_png_chunks_carry_correct_crcs() {
    // Known values: the CRC of "IEND" ends every PNG; "123456789" is the standard check value.
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let png = png_claiming(3, 2, 8, 0);
    // Signature, then IHDR: length 13, type, 13 data bytes, CRC.
    assert_eq!(&png[8..16], b"\0\0\0\x0dIHDR");
    let crc = u32::from_be_bytes(png[29..33].try_into().unwrap());
    assert_eq!(crc, crc32(&png[12..29]));
}

/// The absurd files of every format, each with the name its format would carry.
fn absurd_files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    const M: u32 = 1_000_000;
    vec![
        ("8-bit TIFF", "tif", tiff_claiming(M, M, 8, 1)),
        ("16-bit TIFF", "tif", tiff_claiming(M, M, 16, 1)),
        ("16-bit deflate TIFF", "tif", tiff_claiming(M, M, 16, 8)),
        ("8-bit BMP", "bmp", bmp_claiming(M, M as i32, 8)),
        ("top-down 8-bit BMP", "bmp", bmp_claiming(M, -(M as i32), 8)),
        ("24-bit BMP", "bmp", bmp_claiming(M, M as i32, 24)),
        ("16-bit gray PNG", "png", png_claiming(M, M, 16, 0)),
        ("8-bit gray PNG", "png", png_claiming(M, M, 8, 0)),
        ("16-bit RGBA PNG", "png", png_claiming(M, M, 16, 6)),
        (
            "PNG at the format's largest size",
            "png",
            png_claiming(0x7FFF_FFFF, 0x7FFF_FFFF, 16, 6),
        ),
    ]
}

/// Asserts a refusal naming `path`: too large, undecodable, or (for a later slice) not the
/// first slice's size, which lodcache checks before allocating too.
#[track_caller]
fn assert_refused(err: &Error, path: &Path, later_slice: bool, what: &str) {
    let named = match err {
        Error::TooLarge { path: p, .. } | Error::Decode { path: p, .. } => p == path,
        Error::SizeMismatch { path: p, .. } if later_slice => p == path,
        _ => false,
    };
    assert!(
        named,
        "{what}: expected a refusal naming {}, got {err:?}",
        path.display()
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{what}: the message does not name the file: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Absurd headers
// ---------------------------------------------------------------------------------------------

#[test]
fn absurd_dimensions_in_the_first_slice_are_refused_quickly_without_allocating() {
    let _alone = alone();
    for (what, ext, bytes) in absurd_files() {
        assert!(bytes.len() < 2_000, "{what}: {} bytes", bytes.len());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(format!("s0001.{ext}"));
        std::fs::write(&path, &bytes).unwrap();
        // A second slice like it changes nothing: the first decides the stack's size.
        std::fs::write(tmp.path().join(format!("s0002.{ext}")), &bytes).unwrap();

        let watch = PeakWatch::start();
        let started = Instant::now();
        let err = Stack::open(tmp.path()).unwrap_err();
        assert_refused(&err, &path, false, what);
        let err = Pyramid::builder(tmp.path())
            .with_cache_dir(tmp.path().join("cache"))
            .build()
            .unwrap_err();
        assert_refused(&err, &path, false, what);
        let took = started.elapsed();
        assert!(took < REFUSAL_TIME_LIMIT, "{what}: refused after {took:?}");
        if let Some(w) = &watch {
            w.assert_small(what);
        }
        eprintln!(
            "{what:>34}: refused in {took:?} as {}; peak rose {} KiB",
            variant(&err),
            watch.as_ref().map_or(0, PeakWatch::rise_kib)
        );
    }
}

fn variant(err: &Error) -> &'static str {
    match err {
        Error::TooLarge { .. } => "TooLarge",
        Error::Decode { .. } => "Decode",
        Error::SizeMismatch { .. } => "SizeMismatch",
        _ => "another error",
    }
}

/// A phantom stack of `phantom_<z:05>.tif` files in `dir`, and its naive pyramid at `edge`.
fn phantom_stack(dir: &Path, phantom: &Phantom, edge: usize) -> Vec<Naive> {
    phantom.write(dir).unwrap();
    phantom_volume(phantom).pyramid(edge)
}

#[track_caller]
fn assert_slice_eq(got: &lodcache::Slice, want: &[u32], what: &str) {
    assert!(
        values(got) == want,
        "{what}: differs from the naive pyramid"
    );
}

#[test]
fn absurd_dimensions_in_a_later_slice_fail_only_the_requests_that_need_it() {
    let _alone = alone();
    // 64 x 48 x 8 at edge 16: levels 64 x 48 x 8, 32 x 24 x 4, 16 x 12 x 2. Source slice 3 is
    // replaced; it feeds slice 1 of level 1 and slice 0 of level 2. The format is told by
    // content, so every hostile file keeps the stack's name.
    let phantom = Phantom::new(64, 48, 8).with_seed(5);
    for (what, _, bytes) in absurd_files() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("scan");
        let naive = phantom_stack(&stack, &phantom, 16);
        let bad = stack.join(Phantom::file_name(3));
        std::fs::write(&bad, &bytes).unwrap();

        let watch = PeakWatch::start();
        let started = Instant::now();
        let pyr = Pyramid::builder(&stack)
            .with_edge(16)
            .with_cache_dir(tmp.path().join("cache"))
            .build()
            .unwrap();
        assert_eq!(pyr.levels().len(), 3);
        let errors = [
            pyr.slice(0, 3).unwrap_err(),
            pyr.slice(1, 1).unwrap_err(),
            pyr.slice(2, 0).unwrap_err(),
            pyr.region(1, 1, lodcache::Region::new(2, 2, 8, 8))
                .unwrap_err(),
            pyr.section(2, Axis::X, 3).unwrap_err(),
            pyr.volume(1).unwrap_err(),
            // A failed request caches nothing and leaves no flight behind: asking again fails
            // the same way.
            pyr.slice(1, 1).unwrap_err(),
        ];
        for err in &errors {
            assert_refused(err, &bad, true, what);
        }
        let out = tmp.path().join("export");
        let err = pyr.export_ctharvester(&out, None).unwrap_err();
        assert_refused(&err, &bad, true, what);
        assert!(
            !out.join("1").exists() && !out.join("2").exists(),
            "{what}: a failed export left level folders"
        );
        match pyr.warm_up(WarmupOptions::default()).wait() {
            WarmupOutcome::Failed { error, .. } => assert_refused(&error, &bad, true, what),
            other => panic!("{what}: the warm-up did not fail: {other:?}"),
        }
        // Everything that does not need the bad file is served, and right.
        for z in [0, 1, 2, 4, 5, 6, 7] {
            assert_slice_eq(
                &pyr.slice(0, z).unwrap(),
                &naive[0].slices[z as usize],
                what,
            );
        }
        for z in [0, 2, 3] {
            assert_slice_eq(
                &pyr.slice(1, z).unwrap(),
                &naive[1].slices[z as usize],
                what,
            );
        }
        assert_slice_eq(&pyr.slice(2, 1).unwrap(), &naive[2].slices[1], what);
        let took = started.elapsed();
        assert!(took < REFUSAL_TIME_LIMIT, "{what}: took {took:?}");
        if let Some(w) = &watch {
            w.assert_small(what);
        }
        pyr.flush();
        let stats = pyr.stats();
        assert_eq!(stats.disk.corrupt, 0, "{what}");
        assert_eq!(stats.disk.write_errors, 0, "{what}");
        eprintln!(
            "{what:>34}: later slice refused as {}; peak rose {} KiB; {took:?}",
            variant(&errors[0]),
            watch.as_ref().map_or(0, PeakWatch::rise_kib)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Plausible sizes in tiny files
// ---------------------------------------------------------------------------------------------

/// What reading a one-file stack claiming a plausible size did.
struct Claim {
    what: &'static str,
    error: String,
    took: Duration,
    rise_kib: u64,
}

/// Opens the one-file stack of `bytes` (its header is within the 4 GiB limit, so the open
/// succeeds) and reads its slice, which must fail naming the file.
fn read_tiny_claim(what: &'static str, ext: &str, bytes: &[u8]) -> Claim {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("s0001.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let watch = PeakWatch::start();
    let started = Instant::now();
    let stack = Stack::open(tmp.path()).unwrap();
    let err = stack.read_slice(0).unwrap_err();
    let took = started.elapsed();
    assert_refused(&err, &path, false, what);
    let rise_kib = watch.as_ref().map_or(0, PeakWatch::rise_kib);
    eprintln!(
        "{what:>30}: {} bytes, refused in {took:?}, peak rose {} MiB: {err}",
        bytes.len(),
        rise_kib >> 10
    );
    Claim {
        what,
        error: err.to_string(),
        took,
        rise_kib,
    }
}

/// Asserts that every claim was refused quickly without the peak memory rising by anything
/// like the claimed size, listing every one that was not.
#[track_caller]
fn assert_untouched(claims: &[Claim]) {
    let bad: Vec<String> = claims
        .iter()
        .filter(|c| c.rise_kib > PEAK_RISE_LIMIT_KIB || c.took > REFUSAL_TIME_LIMIT)
        .map(|c| format!("{}: peak +{} MiB in {:?}", c.what, c.rise_kib >> 10, c.took))
        .collect();
    assert!(
        bad.is_empty(),
        "refused only after touching the claimed memory (limit +{} MiB, {:?}): {bad:#?}",
        PEAK_RISE_LIMIT_KIB >> 10,
        REFUSAL_TIME_LIMIT
    );
}

#[test]
fn uncompressed_tiff_claiming_a_gigabyte_in_a_tiny_file_fails_without_touching_it() {
    let _alone = alone();
    // 32768 x 32768 8-bit: 1 GiB of samples, under the 4 GiB limit, in a 138-byte file.
    let claim = read_tiny_claim(
        "raw 8-bit TIFF, 1 GiB",
        "tif",
        &tiff_claiming(32_768, 32_768, 8, 1),
    );
    assert!(claim.error.contains("truncated"), "{}", claim.error);
    assert_untouched(&[claim]);
}

/// Uncompressed BMP rows take a known number of bytes, so a file shorter than its header
/// claims is refused before anything is allocated, as uncompressed TIFF is above.
#[test]
fn uncompressed_bmp_claiming_a_gigabyte_in_a_tiny_file_fails_without_touching_it() {
    let _alone = alone();
    assert_untouched(&[
        read_tiny_claim("8-bit BMP, 1 GiB", "bmp", &bmp_claiming(32_768, 32_768, 8)),
        read_tiny_claim(
            "top-down 8-bit BMP, 1 GiB",
            "bmp",
            &bmp_claiming(32_768, -32_768, 8),
        ),
        read_tiny_claim(
            "24-bit BMP, 1 GiB",
            "bmp",
            &bmp_claiming(16_384, 16_384, 24),
        ),
    ]);
}

/// Deflate cannot expand data more than 1032 to 1, so a PNG or deflate TIFF of a few dozen
/// bytes cannot hold a gigabyte of samples: refused before the claimed size is allocated.
#[test]
fn compressed_files_claiming_a_gigabyte_in_a_few_bytes_fail_without_touching_it() {
    let _alone = alone();
    assert_untouched(&[
        read_tiny_claim(
            "deflate 16-bit TIFF, 1 GiB",
            "tif",
            &tiff_claiming(23_170, 23_170, 16, 8),
        ),
        read_tiny_claim(
            "16-bit PNG, 1 GiB",
            "png",
            &png_claiming(23_170, 23_170, 16, 0),
        ),
        read_tiny_claim(
            "8-bit PNG, 1 GiB",
            "png",
            &png_claiming(32_768, 32_768, 8, 0),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// A folder of clutter
// ---------------------------------------------------------------------------------------------

/// Bound on scanning the 10,000-entry folder: generous, because speed targets belong in the
/// benchmarks; this only catches something that opens or reads every file.
const SCAN_TIME_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn ten_thousand_files_that_are_not_slices_are_scanned_quickly_as_no_images() {
    let _alone = alone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clutter");
    std::fs::create_dir(&dir).unwrap();
    let note = b"reconstruction notes: nothing to see here\n";
    // Hard links to one file where the file system has them: creating 10,000 files with
    // contents took seconds on a busy VM, and the scan never opens them anyway.
    let original = tmp.path().join("note.txt");
    std::fs::write(&original, note).unwrap();
    for i in 1..=10_000 {
        let name = dir.join(format!("note_{i:05}.txt"));
        if std::fs::hard_link(&original, &name).is_err() {
            std::fs::write(&name, note).unwrap();
        }
    }
    // Hidden files, named like slices or not, and the usual litter of scanners and desktops.
    for i in 1..=40 {
        std::fs::write(dir.join(format!(".s{i:04}.tif")), b"II*\0").unwrap();
    }
    for name in [
        "Thumbs.db",
        "desktop.ini",
        ".DS_Store",
        "scan_spr.bmp",
        "scan.log",
    ] {
        std::fs::write(dir.join(name), note).unwrap();
    }
    // Folders: a cache folder full of slice-like names, a sub-folder with a real stack (no
    // recursion), and a folder named like a slice.
    std::fs::create_dir_all(dir.join(".lodcache").join("1")).unwrap();
    for i in 0..20 {
        std::fs::write(dir.join(".lodcache").join(format!("{i:06}.tif")), b"II*\0").unwrap();
    }
    Phantom::new(8, 8, 2).write(dir.join("sub")).unwrap();
    std::fs::create_dir(dir.join("s0001.tif")).unwrap();
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries, 10_000 + 40 + 5 + 3);

    let started = Instant::now();
    let err = Stack::open(&dir).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::NoImages { dir: d, .. } if *d == dir),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&dir.display().to_string()), "{text}");
    // Says how much was there, so a user sees the folder was not empty.
    assert!(
        text.contains(&format!("{entries} other entries were ignored")),
        "{text}"
    );
    let started = Instant::now();
    let err = Pyramid::open(&dir).unwrap_err();
    let took_pyramid = started.elapsed();
    assert!(matches!(&err, Error::NoImages { .. }), "{err:?}");
    assert!(
        !dir.join(".lodcache").join("manifest.json").exists(),
        "a folder without a stack got a cache manifest"
    );

    // The same clutter around a real stack: the stack is found, and only it.
    let phantom = Phantom::new(24, 20, 5).with_seed(9);
    let staging = tmp.path().join("staging");
    phantom.write(&staging).unwrap();
    for z in 0..5 {
        std::fs::rename(
            staging.join(Phantom::file_name(z)),
            dir.join(format!("slice_{:04}.tif", z + 1)),
        )
        .unwrap();
    }
    let started = Instant::now();
    let stack = Stack::open(&dir).unwrap();
    let took_found = started.elapsed();
    assert_eq!(stack.prefix(), "slice_");
    assert_eq!(stack.depth(), 5);
    assert!(stack.gaps().is_empty());
    let pyr = Pyramid::builder(&dir)
        .with_edge(8)
        .with_cache_dir(tmp.path().join("cache"))
        .build()
        .unwrap();
    let naive = phantom_volume(&phantom).pyramid(8);
    for (level, want) in naive.iter().enumerate() {
        for (z, want) in want.slices.iter().enumerate() {
            assert_slice_eq(&pyr.slice(level as u32, z as u32).unwrap(), want, "clutter");
        }
    }
    eprintln!(
        "{entries} entries: NoImages from Stack::open in {took:?}, from Pyramid::open in \
         {took_pyramid:?}; with a 5-slice stack among them found in {took_found:?}"
    );
    for t in [took, took_pyramid, took_found] {
        assert!(t < SCAN_TIME_LIMIT, "scanning took {t:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Writes `phantom` as `<prefix><z:05>.tif` into `dir` (renamed from the phantom's own names,
/// so that no writer appends anything to the long names).
fn write_named(phantom: &Phantom, staging: &Path, dir: &Path, prefix: &str) -> Vec<PathBuf> {
    phantom.write(staging).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    (0..phantom.depth())
        .map(|z| {
            let path = dir.join(format!("{prefix}{z:05}.tif"));
            std::fs::rename(staging.join(Phantom::file_name(z)), &path).unwrap();
            path
        })
        .collect()
}

#[test]
fn names_with_spaces_unicode_and_long_prefixes_work_end_to_end() {
    let _alone = alone();
    // Names of ~200 bytes and of exactly 255 bytes (the usual file-name limit), with
    // multi-byte characters.
    let pad = |s: String, len: usize| format!("{s}{}", "_".repeat(len - s.len()));
    let prefix_200 = cut(&"längé Ü 東京 scan-".repeat(20), 200);
    let prefix_246 = pad(cut(&"Ü 東京 scan ".repeat(30), 246), 246);
    let folder_255 = pad(cut(&"Проба 測試 folder ".repeat(30), 255), 255);
    assert_eq!(prefix_246.len() + "00000.tif".len(), 255);
    let cases: Vec<(String, String)> = vec![
        ("scan é 東京 ".into(), "scan é 東京 ".into()),
        ("long names".into(), prefix_200.clone()),
        (folder_255.clone(), prefix_246.clone()),
        (
            "run 2024.05.17 (copy) #3".into(),
            "run 2024.05.17 scan v2 (copy) #3 ".into(),
        ),
        ("🦴 femur".into(), "🦴femur_".into()),
    ];
    // 40 x 36 x 6 at edge 8: 40 x 36 x 6, 20 x 18 x 3, 10 x 9 x 2, 5 x 4 x 1.
    let phantom = Phantom::new(40, 36, 6).with_seed(13);
    let naive = phantom_volume(&phantom).pyramid(8);
    assert_eq!(naive.len(), 4);
    let blobs = 3 + 2 + 1;
    for (folder, prefix) in &cases {
        let what = format!("folder {folder:?}, prefix {prefix:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(folder);
        let files = write_named(&phantom, &tmp.path().join("staging"), &dir, prefix);

        let stack = Stack::open(&dir).unwrap();
        assert_eq!(stack.prefix(), prefix, "{what}");
        assert_eq!(
            stack.files().iter().map(|f| &f.path).collect::<Vec<_>>(),
            files.iter().collect::<Vec<_>>(),
            "{what}"
        );

        // The default cache folder: inside the stack.
        let pyr = Pyramid::builder(&dir).with_edge(8).build().unwrap();
        assert_eq!(pyr.disk().dir(), dir.join(".lodcache"), "{what}");
        assert!(pyr.warnings().is_empty(), "{what}: {:?}", pyr.warnings());
        for (level, want) in naive.iter().enumerate() {
            for (z, want) in want.slices.iter().enumerate() {
                let got = pyr.slice(level as u32, z as u32).unwrap();
                assert_slice_eq(&got, want, &format!("{what}: level {level} slice {z}"));
            }
        }
        pyr.flush();
        let disk = pyr.stats().disk;
        assert_eq!((disk.writes, disk.write_errors), (blobs, 0), "{what}");
        drop(pyr);

        // Reopened: the cache folder is not mistaken for slices, and serves every level.
        assert_eq!(Stack::open(&dir).unwrap().depth(), 6, "{what}");
        let pyr = Pyramid::builder(&dir).with_edge(8).build().unwrap();
        assert!(pyr.warnings().is_empty(), "{what}: {:?}", pyr.warnings());
        for (level, want) in naive.iter().enumerate().skip(1) {
            for (z, want) in want.slices.iter().enumerate() {
                let (got, served) = pyr.slice_served(level as u32, z as u32).unwrap();
                assert_eq!(served, Served::Disk, "{what}: level {level} slice {z}");
                assert_slice_eq(&got, want, &format!("{what}: reopened {level}/{z}"));
            }
        }

        // Export beside the stack, into a folder with the same kind of name.
        let out = tmp.path().join(cut(&format!("export {folder}"), 255));
        let report = pyr.export_ctharvester(&out, None).unwrap();
        assert_eq!(report.files, blobs, "{what}");
        assert_eq!(
            report.source_bytes, 0,
            "{what}: the export did not use the cache"
        );
        for (level, vol) in naive.iter().enumerate().skip(1) {
            for (z, want) in vol.slices.iter().enumerate() {
                let (w, h, bits, got) = read_tiff(&ctharvester_path(&out, level as u32, z as u32));
                assert_eq!((w, h, bits), (vol.width, vol.height, 16), "{what}");
                assert!(got == *want, "{what}: exported {level}/{z} differs");
            }
        }
        eprintln!(
            "ok: {} bytes of folder name, {} bytes per file name: {what}",
            folder.len(),
            prefix.len() + 9
        );
    }
}
