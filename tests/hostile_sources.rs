//! Hostile sources: slice files and folder entries that used to give wrong pixels, hang the
//! reader or take unbounded memory, with exit code 0.
//!
//! - A JPEG cut anywhere, or missing its end-of-image marker, is a decoding error naming it
//!   (it used to decode with the missing part filled in gray).
//! - An entry named like a slice that is not a regular file (folder, FIFO, socket, link to a
//!   device, dangling or looping link) is an error naming it, at open and again at read time
//!   without hanging on a FIFO (it used to be skipped as a gap, shifting every later slice);
//!   links to regular files are slices; names that are not UTF-8 are refused by name.
//! - Decoding stays within the process-wide decode budget: a stack of PNG bombs decoded on 8
//!   threads at once stays under the budget plus a constant (measured in a child process, which
//!   can set the budget without touching the other tests), decodes that do not fit together
//!   wait instead of failing, and a slice larger than the whole budget is refused naming the
//!   file, both sizes and the option that raises the budget.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    assert_names, jpeg_encoded, noise8, peak_rss, png_encoded, smooth8, this_test, tiny_tiff, u8s,
    within, write,
};
use image::ExtendedColorType;
use lodcache::{
    Error, PairReducer, SampleType, Slice, Stack, StackPattern, decode_budget, decode_budget_stats,
    reserve_decode_memory, set_decode_budget,
};

/// How long an operation that must not hang may take: generous, it is milliseconds of work.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Whether the error is about `path`: it carries it and its text names it.
#[track_caller]
fn assert_about(err: &Error, path: &Path, what: &str) {
    let carried = match err {
        Error::Decode { path: p, .. }
        | Error::BadSliceEntry { path: p, .. }
        | Error::OverDecodeBudget { path: p, .. }
        | Error::Io { path: p, .. } => p == path,
        _ => false,
    };
    assert!(
        carried,
        "{what}: expected an error about {}, got {err:?}",
        path.display()
    );
    assert_names(err, path);
}

// ---------------------------------------------------------------------------------------------
// JPEG cut short
// ---------------------------------------------------------------------------------------------

/// Four 8-bit JPEG slices `s0001.jpg`.. of `w` x `h` (gray or RGB) in a fresh folder; returns
/// the folder and the bytes of each slice.
fn jpeg_stack(w: u32, h: u32, rgb: bool) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for z in 1..=4u64 {
        let gray: Vec<u8> = smooth8(w, h)
            .iter()
            .zip(noise8(w, h, z))
            .map(|(&s, n)| s / 2 + n / 4)
            .collect();
        let bytes = if rgb {
            let rgb: Vec<u8> = gray.iter().flat_map(|&g| [g, g / 2, 255 - g]).collect();
            jpeg_encoded(w, h, &rgb, ExtendedColorType::Rgb8, 90)
        } else {
            jpeg_encoded(w, h, &gray, ExtendedColorType::L8, 90)
        };
        write(tmp.path(), &format!("s{z:04}.jpg"), &bytes);
        files.push(bytes);
    }
    (tmp, files)
}

/// Cuts the second slice at every offset in `cuts` and checks that reading it alone and
/// through the level-1 pair both fail naming it; returns how many cuts were tried.
fn assert_every_cut_refused(dir: &Path, full: &[u8], cuts: impl Iterator<Item = usize>) -> usize {
    let path = dir.join("s0002.jpg");
    let stack = Stack::open(dir).unwrap();
    let mut reader = PairReducer::new(&stack);
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut tried = 0;
    for cut in cuts {
        std::fs::write(&path, &full[..cut]).unwrap();
        let what = format!("cut at {cut} of {}", full.len());
        match stack.read_slice(1) {
            Ok(_) => panic!("{what}: decoded"),
            Err(e) => assert_about(&e, &path, &what),
        }
        match reader.reduce_pair(0, &mut out) {
            Ok(()) => panic!("{what}: level-1 slice 0 made"),
            Err(e) => assert_about(&e, &path, &what),
        }
        tried += 1;
    }
    tried
}

#[test]
fn a_gray_jpeg_cut_at_any_offset_is_an_error_naming_it() {
    let (tmp, files) = jpeg_stack(40, 24, false);
    let full = &files[1];
    let tried = assert_every_cut_refused(tmp.path(), full, 0..full.len());
    assert_eq!(tried, full.len());
}

#[test]
fn a_colour_jpeg_cut_at_any_offset_is_an_error_naming_it() {
    let (tmp, files) = jpeg_stack(56, 40, true);
    let full = &files[1];
    assert_every_cut_refused(tmp.path(), full, 0..full.len());
}

#[test]
fn a_jpeg_without_its_end_of_image_marker_is_an_error_saying_so() {
    let (tmp, files) = jpeg_stack(40, 24, false);
    let full = &files[1];
    assert_eq!(&full[full.len() - 2..], &[0xFF, 0xD9]);
    let path = write(tmp.path(), "s0002.jpg", &full[..full.len() - 2]);
    let stack = Stack::open(tmp.path()).unwrap();
    let err = stack.read_slice(1).unwrap_err();
    assert_about(&err, &path, "no EOI");
    assert!(err.to_string().contains("end-of-image"), "{err}");
}

#[test]
fn bytes_after_the_end_of_image_marker_change_nothing() {
    let (tmp, files) = jpeg_stack(40, 24, false);
    let stack = Stack::open(tmp.path()).unwrap();
    let clean = u8s(&stack.read_slice(1).unwrap());
    let mut padded = files[1].clone();
    padded.extend_from_slice(&[0u8; 100]);
    padded.extend_from_slice(b"trailer");
    write(tmp.path(), "s0002.jpg", &padded);
    assert_eq!(u8s(&stack.read_slice(1).unwrap()), clean);
    // Whole files decode as `image` decodes them (strict or lenient, a whole file is the same
    // image), the padded one included.
    for (z, bytes) in files.iter().enumerate() {
        let want: Vec<u64> = image::load_from_memory(bytes)
            .unwrap()
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(u64::from)
            .collect();
        assert_eq!(u8s(&stack.read_slice(z as u32).unwrap()), want, "slice {z}");
    }
}

// ---------------------------------------------------------------------------------------------
// Entries that are not regular files
// ---------------------------------------------------------------------------------------------

/// Five 6 x 4 8-bit TIFF slices `s0001.tif`..`s0005.tif`, each of its own value.
fn tiff_stack() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for z in 1..=5u8 {
        write(
            tmp.path(),
            &format!("s{z:04}.tif"),
            &common::tiff8(6, 4, &[z * 10; 24]),
        );
    }
    tmp
}

/// The kinds of entry a slice's name can hold instead of a regular file.
#[cfg(unix)]
const NOT_FILES: [&str; 7] = [
    "folder",
    "FIFO",
    "socket",
    "link to /dev/zero",
    "dangling link",
    "looping link",
    "link to a folder",
];

/// Puts an entry of `kind` (one of [`NOT_FILES`]) at `path`, replacing what is there.
#[cfg(unix)]
fn make_entry(path: &Path, kind: &str) {
    use std::os::unix::fs::symlink;
    if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir(path).unwrap();
    } else if path.symlink_metadata().is_ok() {
        std::fs::remove_file(path).unwrap();
    }
    match kind {
        "folder" => std::fs::create_dir(path).unwrap(),
        "FIFO" => {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
            let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            assert_eq!(rc, 0, "mkfifo {}", path.display());
        }
        "socket" => {
            std::os::unix::net::UnixListener::bind(path).unwrap();
        }
        "link to /dev/zero" => symlink("/dev/zero", path).unwrap(),
        "dangling link" => symlink(path.with_extension("missing"), path).unwrap(),
        "looping link" => symlink(path, path).unwrap(),
        "link to a folder" => symlink(std::env::temp_dir(), path).unwrap(),
        other => panic!("unknown kind {other}"),
    }
}

/// The words the error about an entry of `kind` must use.
#[cfg(unix)]
fn described_as(kind: &str) -> &'static str {
    match kind {
        "folder" => "is a folder",
        "FIFO" => "FIFO",
        "socket" => "socket",
        "link to /dev/zero" => "character device",
        "dangling link" => "dangling",
        "looping link" => "cannot be followed",
        "link to a folder" => "link to a folder",
        _ => unreachable!(),
    }
}

#[cfg(unix)]
#[test]
fn an_entry_named_like_a_slice_that_is_not_a_regular_file_is_an_error_naming_it() {
    for kind in NOT_FILES {
        let tmp = tiff_stack();
        let bad = tmp.path().join("s0003.tif");
        make_entry(&bad, kind);
        let dir = tmp.path().to_path_buf();
        let pattern = StackPattern {
            prefix: "s".to_string(),
            extension: "tif".to_string(),
            indices: 1..=5,
            index_width: Some(4),
        };
        let (detected, by_pattern) = within(HANG_LIMIT, kind, move || {
            (
                Stack::open(&dir).map(|s| s.depth()),
                Stack::open_pattern(&dir, &pattern).map(|s| s.depth()),
            )
        });
        for (how, result) in [("detected", detected), ("by pattern", by_pattern)] {
            let err = match result {
                Ok(depth) => panic!("{kind}, {how}: opened with {depth} slices"),
                Err(e) => e,
            };
            assert!(
                matches!(&err, Error::BadSliceEntry { path, .. } if *path == bad),
                "{kind}, {how}: {err:?}"
            );
            assert_names(&err, &bad);
            assert!(
                err.to_string().contains(described_as(kind)),
                "{kind}, {how}: {err}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn a_bad_entry_past_the_last_slice_is_an_error_too_and_other_groups_are_ignored() {
    let tmp = tiff_stack();
    // Entries of another name group are not the stack's business.
    make_entry(&tmp.path().join("other0001.tif"), "FIFO");
    make_entry(&tmp.path().join("other0002.tif"), "dangling link");
    assert_eq!(Stack::open(tmp.path()).unwrap().depth(), 5);
    // One named like the slice after the last is.
    let bad = tmp.path().join("s0006.tif");
    make_entry(&bad, "folder");
    let err = Stack::open(tmp.path()).unwrap_err();
    assert_about(&err, &bad, "folder after the last slice");
}

#[cfg(unix)]
#[test]
fn links_to_regular_files_inside_or_outside_the_folder_are_slices() {
    let tmp = tiff_stack();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = write(
        elsewhere.path(),
        "real.tif",
        &common::tiff8(6, 4, &[77; 24]),
    );
    let inside = write(
        tmp.path(),
        ".hidden-real.tif",
        &common::tiff8(6, 4, &[88; 24]),
    );
    for (name, target) in [("s0002.tif", &outside), ("s0004.tif", &inside)] {
        std::fs::remove_file(tmp.path().join(name)).unwrap();
        std::os::unix::fs::symlink(target, tmp.path().join(name)).unwrap();
    }
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.depth(), 5);
    let firsts: Vec<u64> = (0..5)
        .map(|z| u8s(&stack.read_slice(z).unwrap())[0])
        .collect();
    assert_eq!(firsts, [10, 77, 30, 88, 50]);
}

#[cfg(unix)]
#[test]
fn a_slice_swapped_for_another_kind_of_entry_after_opening_is_refused_without_hanging() {
    for kind in NOT_FILES {
        let tmp = tiff_stack();
        let stack = Stack::open(tmp.path()).unwrap();
        let bad = tmp.path().join("s0003.tif");
        make_entry(&bad, kind);
        let (alone, pair) = within(HANG_LIMIT, kind, move || {
            let mut out = Slice::zeroed(0, 0, SampleType::U8);
            (
                stack.read_slice(2).map(|_| ()),
                PairReducer::new(&stack).reduce_pair(1, &mut out),
            )
        });
        for (how, result) in [("read alone", alone), ("read as a pair", pair)] {
            let err = result.expect_err(&format!("{kind}, {how}: decoded"));
            assert_about(&err, &bad, &format!("{kind}, {how}"));
            // A dangling link cannot be opened at all (an I/O error naming it); everything
            // that can be opened is told apart by the opened handle.
            if !kind.contains("dangling") && !kind.contains("looping") && kind != "socket" {
                assert!(
                    matches!(&err, Error::BadSliceEntry { .. }),
                    "{kind}, {how}: {err:?}"
                );
                // The opened handle is the link's target.
                let words = described_as(kind).trim_start_matches("link to ");
                assert!(err.to_string().contains(words), "{kind}, {how}: {err}");
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_are_refused_by_name_unless_another_group_is_the_stack() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let name = |i: u32| {
        let mut b = b"scan\xe9_".to_vec();
        b.extend_from_slice(format!("{i:04}.tif").as_bytes());
        OsStr::from_bytes(&b).to_owned()
    };
    // A stack whose names are Latin-1: refused, naming its first file.
    let tmp = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        std::fs::write(tmp.path().join(name(i)), tiny_tiff()).unwrap();
    }
    let first = tmp.path().join(name(1));
    let err = Stack::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::BadSliceEntry { path, .. } if *path == first),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("UTF-8"), "{text}");
    assert!(text.contains(r"scan\xE9_0001.tif"), "{text}");
    // Beside a larger UTF-8 stack they are another group, ignored like any other.
    for i in 1..=4 {
        write(tmp.path(), &format!("good{i:04}.tif"), &tiny_tiff());
    }
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "good");
    assert_eq!(stack.depth(), 4);
    // A pattern (UTF-8 by type) never matches them.
    let err = Stack::open_pattern(
        tmp.path(),
        &StackPattern {
            prefix: "scan".to_string(),
            extension: "tif".to_string(),
            indices: 1..=3,
            index_width: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoImages { .. }), "{err:?}");
}

#[test]
fn names_with_control_characters_are_escaped_in_errors() {
    // A name holding a newline and a terminal escape must not print a fake line.
    let tmp = tempfile::tempdir().unwrap();
    let prefix = "evil\n\u{1b}[2Kfake: ";
    for z in 1..=3 {
        write(tmp.path(), &format!("{prefix}{z:04}.tif"), &tiny_tiff());
    }
    let bad = tmp.path().join(format!("{prefix}0004.tif"));
    std::fs::create_dir(&bad).unwrap();
    let err = Stack::open(tmp.path()).unwrap_err();
    assert!(matches!(&err, Error::BadSliceEntry { .. }), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains(r"evil\n\u{1b}[2Kfake: 0004.tif"), "{text}");
    // What an explicit pattern looked for is quoted the same way.
    let err = Stack::open_pattern(
        tmp.path(),
        &StackPattern {
            prefix: "x\n\u{1b}[1m".to_string(),
            extension: "tif".to_string(),
            indices: 1..=3,
            index_width: None,
        },
    )
    .unwrap_err();
    let Error::NoImages { looked_for, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        !looked_for.contains('\n') && !looked_for.contains('\u{1b}'),
        "{looked_for:?}"
    );
    assert!(
        looked_for.contains(r"x\n\u{1b}[1m<index>.tif"),
        "{looked_for}"
    );
}

// ---------------------------------------------------------------------------------------------
// The decode budget
// ---------------------------------------------------------------------------------------------

/// Selects what [`child_process_entry`] does in a child process.
const CHILD_MODE: &str = "LODCACHE_HOSTILE_SOURCES_CHILD";
/// The stack folder the child works on.
const CHILD_DIR: &str = "LODCACHE_HOSTILE_SOURCES_DIR";

/// Sides of the PNG bombs: 16-bit RGB, so a decode needs 96 MiB for image's buffer of all
/// channels plus 32 MiB of gray output, from a file of about 100 KB.
const BOMB_SIDE: u32 = 4096;
/// What one bomb's decode needs, at least.
const BOMB_NEEDS: u64 = (BOMB_SIDE as u64 * BOMB_SIDE as u64) * (6 + 2);
/// Slices in the bomb stack, all decoded at once on their own threads.
const BOMBS: u32 = 8;
/// The budget the bomb child sets: room for two bombs at a time, not three.
const BOMB_BUDGET: u64 = 300 << 20;
/// How far above the budget the child's peak resident memory may go: the test harness, the
/// library's code and stacks, and the decoded slices between their decode and their drop.
const RESIDENT_CONSTANT: u64 = 80 << 20;

/// A folder of `n` 16-bit RGB PNGs of zeros, `BOMB_SIDE` pixels square.
fn bomb_stack(n: u32) -> tempfile::TempDir {
    let side = BOMB_SIDE;
    let zeros = vec![0u8; side as usize * side as usize * 6];
    let png = png_encoded(side, side, &zeros, ExtendedColorType::Rgb16);
    drop(zeros);
    assert!(png.len() < 1 << 20, "a bomb is {} bytes", png.len());
    let tmp = tempfile::tempdir().unwrap();
    for z in 1..=n {
        write(tmp.path(), &format!("b{z:04}.png"), &png);
    }
    tmp
}

/// Runs [`child_process_entry`] in a child process in `mode` on the stack in `dir`; returns
/// what it printed as `key=value` pairs.
fn run_child(mode: &str, dir: &Path) -> Vec<(String, u64)> {
    let out = this_test("child_process_entry")
        .arg("--test-threads=1")
        .env(CHILD_MODE, mode)
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        // libtest's "test child_process_entry ... " may start the first line.
        .filter_map(|l| l.split_once("child: ").map(|(_, kv)| kv))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

fn value(pairs: &[(String, u64)], key: &str) -> u64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("child printed no {key}: {pairs:?}"))
        .1
}

/// The entry point of the child processes of the budget tests: does nothing in a normal test
/// run; with [`CHILD_MODE`] set it sets the process-wide budget and decodes (see the modes).
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    match mode.as_str() {
        "bombs" => child_bombs(&dir),
        "over" => child_over(&dir),
        "wait" => child_wait(&dir),
        other => panic!("unknown child mode {other}"),
    }
}

/// Decodes every bomb of the stack at once, each on its own thread.
fn child_bombs(dir: &Path) {
    set_decode_budget(BOMB_BUDGET).unwrap();
    let stack = Stack::open(dir).unwrap();
    let start = std::sync::Barrier::new(stack.depth() as usize);
    let zeros = std::thread::scope(|s| {
        let handles: Vec<_> = (0..stack.depth())
            .map(|z| {
                let (stack, start) = (&stack, &start);
                s.spawn(move || {
                    start.wait();
                    let slice = stack.read_slice(z).unwrap();
                    slice.samples::<u16>().unwrap().iter().all(|&v| v == 0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&all_zero| all_zero)
            .count()
    });
    let stats = decode_budget_stats();
    println!("child: zero_slices={zeros}");
    println!("child: peak_resident={}", peak_rss());
    println!("child: budget={}", stats.budget);
    println!("child: peak_reserved={}", stats.peak);
    println!("child: waited={}", stats.waited);
    println!("child: in_use={}", stats.in_use);
}

/// Reads one bomb under a budget smaller than its decode needs.
fn child_over(dir: &Path) {
    set_decode_budget(64 << 20).unwrap();
    let stack = Stack::open(dir).unwrap();
    let path = stack.files()[0].path.clone();
    let err = stack.read_slice(0).unwrap_err();
    let Error::OverDecodeBudget {
        path: p,
        needed,
        budget,
    } = &err
    else {
        panic!("expected OverDecodeBudget, got {err:?}");
    };
    assert_eq!(p, &path);
    assert_eq!(*budget, 64 << 20);
    let text = err.to_string();
    for part in [
        format!("{}", path.display()),
        needed.to_string(),
        budget.to_string(),
        "--decode-budget".to_string(),
    ] {
        assert!(text.contains(&part), "{text:?} does not say {part}");
    }
    println!("child: needed={needed}");
    println!("child: peak_resident={}", peak_rss());
}

/// Holds most of the budget, starts a decode that does not fit beside it, checks that it
/// waits, then lets it go.
fn child_wait(dir: &Path) {
    set_decode_budget(200 << 20).unwrap();
    let stack = Stack::open(dir).unwrap();
    let path = stack.files()[0].path.clone();
    let held = reserve_decode_memory(&path, 100 << 20).unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let result = stack.read_slice(0).map(|s| s.width());
        tx.send(result.is_ok()).unwrap();
        result
    });
    let since = Instant::now();
    while decode_budget_stats().waiting == 0 {
        assert!(since.elapsed() < HANG_LIMIT, "the decode never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Waiting, not failed and not decoding: nothing more reserved, nothing sent.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        rx.try_recv().is_err(),
        "the decode ended while it could not fit"
    );
    let stats = decode_budget_stats();
    assert_eq!((stats.in_use, stats.waiting), (100 << 20, 1));
    drop(held);
    let ok = rx
        .recv_timeout(HANG_LIMIT)
        .expect("the decode never resumed");
    assert!(ok, "{:?}", reader.join().unwrap());
    println!("child: waited={}", decode_budget_stats().waited);
    println!("child: width={}", reader.join().unwrap().unwrap());
}

#[test]
fn a_stack_of_png_bombs_decoded_on_eight_threads_stays_within_the_decode_budget() {
    let tmp = bomb_stack(BOMBS);
    let got = run_child("bombs", tmp.path());
    assert_eq!(value(&got, "zero_slices"), u64::from(BOMBS), "{got:?}");
    assert_eq!(value(&got, "budget"), BOMB_BUDGET);
    assert!(value(&got, "peak_reserved") <= BOMB_BUDGET, "{got:?}");
    assert!(
        value(&got, "peak_reserved") >= BOMB_NEEDS,
        "a decode reserved less than it uses: {got:?}"
    );
    // Eight decodes of which two fit at a time: some waited.
    assert!(value(&got, "waited") > 0, "{got:?}");
    assert_eq!(value(&got, "in_use"), 0, "{got:?}");
    let peak = value(&got, "peak_resident");
    assert!(
        peak <= BOMB_BUDGET + RESIDENT_CONSTANT,
        "peak resident memory {} MiB, above the budget of {} MiB + {} MiB (without the budget \
         the eight decodes take {} MiB at once)",
        peak >> 20,
        BOMB_BUDGET >> 20,
        RESIDENT_CONSTANT >> 20,
        (u64::from(BOMBS) * BOMB_NEEDS) >> 20
    );
}

#[test]
fn a_slice_larger_than_the_whole_budget_is_refused_naming_the_file_both_sizes_and_the_option() {
    let tmp = bomb_stack(1);
    let got = run_child("over", tmp.path());
    assert!(value(&got, "needed") >= BOMB_NEEDS, "{got:?}");
    // Refused before allocating: nothing like the 128 MiB it needs was touched.
    assert!(value(&got, "peak_resident") < 64 << 20, "{got:?}");
}

#[test]
fn decodes_that_fit_alone_but_not_together_wait_instead_of_failing() {
    let tmp = bomb_stack(1);
    let got = run_child("wait", tmp.path());
    assert_eq!(value(&got, "width"), u64::from(BOMB_SIDE));
    assert_eq!(value(&got, "waited"), 1);
}

#[test]
fn a_zero_budget_is_refused() {
    let before = decode_budget();
    let err = set_decode_budget(0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert_eq!(decode_budget(), before);
}

#[test]
fn a_tiny_png_claiming_a_quarter_gigabyte_is_refused_before_allocating() {
    // Deflate expands at most 1032 to 1: a few dozen bytes cannot hold 16000 x 16000 pixels.
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "s0001.png",
        &common::png_claiming(16_000, 16_000, 8, 0),
    );
    let stack = Stack::open(tmp.path()).unwrap();
    let err = stack.read_slice(0).unwrap_err();
    assert_about(&err, &path, "PNG claiming 256 MB");
    assert!(err.to_string().contains("expand to at most"), "{err}");
}
