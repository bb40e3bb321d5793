//! A source slice rewritten in place with the same size and its modification time restored,
//! as `cp -p` or `rsync -t` leave it (issue 15, item 10). The default fingerprint (name, size,
//! modification time, inode) cannot see the change: the cached slices made from the old pixels
//! are served, and this test documents that limit. With the content check
//! ([`lodcache::PyramidBuilder::with_content_check`]) reopening serves the new pixels, and
//! [`lodcache::Pyramid::verify`] on an open pyramid drops exactly the slices made from the
//! changed source slice: their blob files go, every other blob file stays as it was, and every
//! slice afterwards equals the naive pyramid of the stack as it is now.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::{Scan, Volume as Naive, blob_stamps, request_all, values};
use lodcache::store::blob_path;
use lodcache::{Phantom, Pyramid, PyramidBuilder, Served, SliceKey, dependent_slice};

/// 64 x 48 x 16 at edge 8: levels 32 x 24 x 8, 16 x 12 x 4, 8 x 6 x 2.
const EDGE: u32 = 8;
/// The source slice that is rewritten: level 1 slice 2, level 2 slice 1, level 3 slice 0 are
/// made from it.
const CHANGED: u32 = 5;

/// The phantom stack of these tests.
fn phantom_scan() -> Scan {
    Scan::new(Phantom::new(64, 48, 16).with_seed(21), EDGE)
}

impl Scan {
    /// A builder with the content check on or off.
    fn builder_checking(&self, content_check: bool) -> PyramidBuilder {
        self.builder().with_content_check(content_check)
    }

    /// Builds and stores every level, then closes the pyramid.
    fn fill(&self, content_check: bool) {
        let pyr = self.builder_checking(content_check).build().unwrap();
        pyr.volume(pyr.level_count() - 1).unwrap();
        pyr.flush();
        assert_eq!(common::blob_files(&self.cache).len(), 8 + 4 + 2);
    }

    /// Rewrites source slice [`CHANGED`] in place with another phantom's pixels: the same
    /// file (inode), the same size, and its modification time put back.
    fn rewrite_in_place(&self) {
        let other = self.path("other");
        Phantom::new(64, 48, 16)
            .with_seed(22)
            .write(&other)
            .unwrap();
        let content = std::fs::read(other.join(Phantom::file_name(CHANGED))).unwrap();
        let path = self.file(CHANGED);
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!(content.len() as u64, before.len(), "not the same size");
        assert_ne!(std::fs::read(&path).unwrap(), content, "not other pixels");
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(&content).unwrap();
        file.set_modified(before.modified().unwrap()).unwrap();
        drop(file);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (after.ino(), after.len(), after.modified().unwrap()),
            (before.ino(), before.len(), before.modified().unwrap()),
            "the rewrite is visible to the default fingerprint"
        );
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}

/// The slices made from source slice [`CHANGED`], for levels `1..=top`.
fn dependents(top: u32) -> Vec<SliceKey> {
    (1..=top)
        .map(|level| SliceKey::new(level, dependent_slice(level, CHANGED)))
        .collect()
}

/// Requests every slice of levels >= 1 and checks it against `naive`; returns where each
/// came from.
fn request_every(what: &str, pyr: &Pyramid, naive: &[Naive]) -> BTreeMap<SliceKey, Served> {
    request_all(what, pyr, naive).into_iter().collect()
}

/// The limit of the default fingerprint, written down: the stale slices are served.
#[test]
fn without_the_content_check_the_rewritten_slice_is_not_seen() {
    let scan = phantom_scan();
    scan.fill(false);
    let old = scan.naive_of_files();
    scan.rewrite_in_place();
    let new = scan.naive_of_files();
    for key in dependents(3) {
        let (l, z) = (key.level as usize, key.z as usize);
        assert_ne!(old[l].slices[z], new[l].slices[z], "{key} did not change");
    }

    let pyr = scan.builder_checking(false).build().unwrap();
    assert_eq!(pyr.stats().disk.invalidated, 0);
    for key in dependents(3) {
        let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
        assert_eq!(served, Served::Disk, "{key}");
        assert!(
            values(&slice) == old[key.level as usize].slices[key.z as usize],
            "{key}: expected the stale slice (the limit this test documents)"
        );
    }
    // Level 0 is read from the file: the new pixels.
    common::assert_naive("level 0", &new, 0, CHANGED, &pyr.slice(0, CHANGED).unwrap());
    // verify() without the content check cannot see it either.
    let report = pyr.verify().unwrap();
    assert!(!report.content);
    assert_eq!((report.changed.len(), report.dropped), (0, 0), "{report:?}");
}

#[test]
fn with_the_content_check_reopening_serves_the_new_pixels() {
    let scan = phantom_scan();
    scan.fill(true);
    scan.rewrite_in_place();
    let new = scan.naive_of_files();

    let pyr = scan.builder_checking(true).build().unwrap();
    assert_eq!(
        pyr.stats().disk.invalidated,
        3,
        "the dependents were not dropped"
    );
    let served = request_every("reopened with the content check", &pyr, &new);
    pyr.flush();
    for (key, from) in &served {
        let want = if dependents(3).contains(key) {
            Served::Generated
        } else {
            Served::Disk
        };
        assert_eq!(*from, want, "{key}");
    }
    assert_eq!(pyr.stats().generated, 3);
}

#[test]
fn verify_drops_exactly_the_dependents_of_the_changed_slice() {
    let scan = phantom_scan();
    let pyr = scan.builder_checking(true).build().unwrap();
    let old = scan.naive_of_files();
    request_every("before the change", &pyr, &old);
    pyr.flush();
    let before = blob_stamps(&scan.cache);
    assert_eq!(before.len(), 8 + 4 + 2);

    scan.rewrite_in_place();
    let new = scan.naive_of_files();
    // The open pyramid does not watch its sources: it serves what it made.
    let stale = pyr.slice(1, dependent_slice(1, CHANGED)).unwrap();
    common::assert_naive(
        "before verify",
        &old,
        1,
        dependent_slice(1, CHANGED),
        &stale,
    );

    let report = pyr.verify().unwrap();
    assert!(report.content, "{report:?}");
    assert_eq!(report.sources, 16);
    assert_eq!(report.changed, [CHANGED], "{report:?}");
    // One slice per level the stack can have (down to one pixel), stored or not.
    let all_levels = pyr.tiers().fingerprint().levels().len() as u64 - 1;
    assert!(all_levels > 3);
    assert_eq!(report.dropped, all_levels, "{report:?}");

    let after = blob_stamps(&scan.cache);
    let gone: Vec<&PathBuf> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    let dependent_files: Vec<PathBuf> = dependents(3)
        .into_iter()
        .map(|k| blob_path(&scan.cache, k))
        .collect();
    assert_eq!(
        gone,
        dependent_files.iter().collect::<Vec<_>>(),
        "blob files removed"
    );
    for (path, stamp) in &after {
        assert!(
            before.get(path) == Some(stamp),
            "{} changed by verify",
            path.display()
        );
    }

    // Every slice is the new stack's; only the dependents are made again.
    let generated = pyr.stats().generated;
    let served = request_every("after verify", &pyr, &new);
    pyr.flush();
    assert_eq!(pyr.stats().generated - generated, 3);
    for key in dependents(3) {
        assert_eq!(served[&key], Served::Generated, "{key}");
    }
    let again = pyr.verify().unwrap();
    assert_eq!((again.changed.len(), again.dropped), (0, 0), "{again:?}");
    drop(pyr);

    // Another process opening the folder afterwards finds the new manifest: nothing to drop,
    // everything from disk and right.
    let pyr = scan.builder_checking(true).build().unwrap();
    assert_eq!(pyr.stats().disk.invalidated, 0);
    let served = request_every("reopened after verify", &pyr, &new);
    assert!(served.values().all(|s| *s == Served::Disk), "{served:?}");
}
