//! One call's options (`Pyramid::request`): cancellation stops whole-level work at a slice
//! boundary and keeps what was made, progress is reported on the calling thread and ends at its
//! total, previews are not counted as demand; the small API conveniences (`coarsest`,
//! `level_count`, `Volume::samples`, `Error::kind`) and quoted file names in errors.

mod common;

use std::sync::Mutex;

use common::{Scan, values};
use lodcache::{Cancel, Error, ErrorKind, Phantom, Progress, Pyramid, SampleType};

/// A phantom stack `w` x `h` x `d` opened with edge 16.
fn fixture(w: u32, h: u32, d: u32) -> Scan {
    Scan::new(Phantom::new(w, h, d).with_seed(11), 16)
}

#[test]
fn a_cancelled_volume_stops_at_a_slice_boundary_and_keeps_what_it_made() {
    let scan = fixture(96, 80, 40);
    let naive = scan.naive();
    let pyr = scan.open();
    let cancel = Cancel::new();
    let seen = Mutex::new(Vec::new());
    let on_progress = |p: Progress| {
        seen.lock().unwrap().push(p);
        if p.done == 3 {
            cancel.cancel();
        }
    };
    let result = pyr
        .request()
        .with_cancel(&cancel)
        .with_progress(&on_progress)
        .volume(3);
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    let seen = seen.into_inner().unwrap();
    // Stopped at the next level-1 slice: the stream never reached the end of the sources.
    assert_eq!(seen.last().unwrap().done, 3, "{seen:?}");
    let read_when_cancelled = pyr.stats().source_slices;
    assert!(read_when_cancelled < 40, "read {read_when_cancelled} of 40");
    pyr.flush();
    // What was made before the cancel is stored and served; the rest is made on the next call.
    assert!(pyr.stats().generated >= 3);
    let volume = pyr.volume(3).unwrap();
    for z in 0..volume.depth() {
        assert_eq!(
            values(&volume.slice(z).unwrap()),
            naive[3].slices[z as usize],
            "slice {z}"
        );
    }
}

#[test]
fn a_cancelled_slice_request_is_an_error_and_later_requests_work() {
    let scan = fixture(64, 64, 16);
    let naive = scan.naive();
    let pyr = scan.open();
    let cancel = Cancel::new();
    cancel.cancel();
    let err = pyr.request().with_cancel(&cancel).slice(2, 1).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(pyr.stats().generated, 0);
    assert_eq!(values(&pyr.slice(2, 1).unwrap()), naive[2].slices[1]);
    // A guard cancels when dropped.
    let cancel = Cancel::new();
    drop(cancel.cancel_on_drop());
    assert!(cancel.is_cancelled());
    let kept = Cancel::new();
    kept.cancel_on_drop().disarm();
    assert!(!kept.is_cancelled());
}

#[test]
fn progress_is_reported_on_the_calling_thread_and_ends_at_its_total() {
    let scan = fixture(64, 48, 21);
    let pyr = scan.open();
    let caller = std::thread::current().id();
    let reports = Mutex::new(Vec::new());
    let on_progress = |p: Progress| {
        assert_eq!(std::thread::current().id(), caller);
        reports.lock().unwrap().push(p);
    };
    // First a build (progress in level-1 slices), then the same from the cache (in slices
    // handed out), then an export with level 0 (source slices too).
    for (what, run) in [("build", 0), ("cached", 1), ("section", 2), ("export", 3)] {
        reports.lock().unwrap().clear();
        let r = pyr.request().with_progress(&on_progress);
        match run {
            0 | 1 => drop(r.volume(2).unwrap()),
            2 => drop(r.section(1, lodcache::Axis::Y, 3).unwrap()),
            _ => drop(
                r.export_ctharvester(scan.path("out"), Some(&[1, 2]))
                    .unwrap(),
            ),
        }
        let reports = reports.lock().unwrap();
        let last = reports.last().unwrap();
        assert_eq!(last.done, last.total, "{what}: {reports:?}");
        assert!(last.total > 0, "{what}");
        assert!(
            reports.windows(2).all(|w| w[0].done <= w[1].done),
            "{what}: not monotonic: {reports:?}"
        );
        assert_eq!(reports[0].done, 0, "{what}: {reports:?}");
    }
}

#[test]
fn preview_requests_are_not_counted_as_demand() {
    let scan = fixture(64, 64, 8);
    let pyr = scan.open();
    for z in 0..4 {
        pyr.request().without_demand().slice(2, z % 2).unwrap();
    }
    pyr.request().without_demand().volume(2).unwrap();
    assert!(
        pyr.demand()
            .levels
            .iter()
            .all(|d| d.level != 2 || d.score == 0.0)
    );
    pyr.slice(0, 3).unwrap();
    assert_eq!(pyr.demand().levels[0].level, 0);
    // The request counters still count every call.
    assert_eq!(pyr.stats().requests[2], 5);
}

#[test]
fn conveniences_coarsest_level_count_and_typed_volumes() {
    let scan = fixture(64, 40, 9);
    let naive = scan.naive();
    let pyr = scan.open();
    assert_eq!(pyr.level_count(), 3);
    assert_eq!(pyr.coarsest(), pyr.levels()[2]);
    let v = pyr.volume(2).unwrap();
    let samples = v.samples::<u16>().unwrap();
    assert!(v.samples::<u8>().is_none());
    let flat: Vec<u32> = naive[2].slices.concat();
    assert_eq!(
        samples.iter().map(|&s| u32::from(s)).collect::<Vec<_>>(),
        flat
    );
    // A stack not above the edge has level 0 only.
    let small = Pyramid::builder(&scan.stack)
        .with_edge(100)
        .with_disk_cache(false)
        .build()
        .unwrap();
    assert_eq!(small.level_count(), 1);
    assert_eq!(small.coarsest().level, 0);
}

#[test]
fn file_names_in_errors_are_quoted_with_control_characters_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = "scan\nerror: forged line \u{1b}[31m";
    for z in 0..3u32 {
        let (w, h) = if z == 2 { (8, 9) } else { (8, 8) };
        let dir = tmp.path().join(format!("f{z}"));
        Phantom::new(w, h, 1)
            .with_sample_type(SampleType::U8)
            .write(&dir)
            .unwrap();
        let written = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::rename(&written, tmp.path().join(format!("{prefix}{z:04}.tif"))).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
    let pyr = Pyramid::builder(tmp.path())
        .with_disk_cache(false)
        .build()
        .unwrap();
    let err = pyr.slice(0, 2).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data);
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("\\n") && text.contains("\\u{1b}"), "{text}");
}

#[test]
fn a_call_without_storing_keeps_nothing_and_makes_the_same_pyramid() {
    let scan = fixture(96, 80, 40);
    let naive = scan.naive();
    let pyr = scan.open();
    let out = scan.path("out");
    let report = pyr
        .request()
        .without_storing()
        .export_ctharvester(&out, None)
        .unwrap();
    assert!(report.generated > 0 && report.from_cache == 0);
    let volume = pyr.request().without_storing().volume(2).unwrap();
    let slice = pyr.request().without_storing().slice(3, 1).unwrap();
    pyr.flush();
    // Nothing was kept in any tier, and nothing is waiting to be.
    let stats = pyr.stats();
    assert_eq!(stats.memory.entries, 0, "{stats:?}");
    assert_eq!(stats.disk.writes, 0, "{stats:?}");
    assert_eq!(stats.stored_bytes, 0, "{stats:?}");
    assert!((1..pyr.level_count()).all(|l| !pyr.is_level_stored(l)));
    // The same pixels as a call that stores.
    for level in 1..pyr.level_count() {
        let (files, _) = common::read_tiff_dir(&out.join(level.to_string()));
        assert_eq!(files.slices, naive[level as usize].slices, "level {level}");
    }
    for z in 0..volume.depth() {
        assert_eq!(
            values(&volume.slice(z).unwrap()),
            naive[2].slices[z as usize]
        );
    }
    assert_eq!(values(&slice), naive[3].slices[1]);
    // A call that stores still does.
    pyr.volume(2).unwrap();
    pyr.flush();
    assert!(pyr.is_level_stored(1) && pyr.is_level_stored(2));
    assert!(pyr.stats().memory.entries > 0);
}
