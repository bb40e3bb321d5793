//! The cache does not depend on the level rule (issue 16, item 8): level `n` is level `n`
//! whatever the edge. A pyramid built with one edge and reopened with another (fewer levels,
//! then more) serves every slice of the levels both rules have from the cache, generating
//! nothing and rewriting no blob file (same inode, modification time and bytes); going back to
//! the first edge still generates nothing. Demand for levels that the rule in use does not
//! have is not shown, and comes back with a rule that has them.

mod common;

use common::{Scan, blob_stamps};
use lodcache::{Phantom, Pyramid, Served};

/// 256 x 192 x 24: edge 32 makes levels 1 to 3 (128 x 96 x 12, 64 x 48 x 6, 32 x 24 x 3),
/// edge 64 levels 1 and 2, edge 8 levels 1 to 5 (16 x 12 x 2, 8 x 6 x 1).
const SIZE: (u32, u32, u32) = (256, 192, 24);
const FIRST: u32 = 32;
const FEWER: u32 = 64;
const MORE: u32 = 8;

impl Scan {
    /// The pyramid with level edge `edge`.
    fn open_with_edge(&self, edge: u32) -> Pyramid {
        self.builder().with_edge(edge).build().unwrap()
    }

    /// Requests every slice of levels `1..=top` of `pyr`, checks each against
    /// the naive pyramid, and returns how many were not served from the disk.
    fn request(&self, what: &str, pyr: &Pyramid, top: u32) -> usize {
        let mut not_from_disk = 0;
        for level in 1..=top {
            for z in 0..pyr.levels()[level as usize].depth {
                let (slice, served) = pyr.slice_served(level, z).unwrap();
                self.check_at(what, level, z, &slice);
                if served != Served::Disk {
                    not_from_disk += 1;
                }
            }
        }
        not_from_disk
    }
}

fn levels_shown(pyr: &Pyramid) -> Vec<u32> {
    let mut shown: Vec<u32> = pyr.demand().levels.iter().map(|d| d.level).collect();
    shown.sort_unstable();
    shown
}

#[test]
fn changing_the_edge_keeps_every_shared_blob_and_regenerates_nothing() {
    // The scan's own edge is the smallest used, so that its naive pyramid has every level.
    let scan = Scan::new(Phantom::new(SIZE.0, SIZE.1, SIZE.2).with_seed(16), MORE);

    // Edge 32: every level built (and requested, so that demand knows levels 1 to 3).
    let pyr = scan.open_with_edge(FIRST);
    assert_eq!(pyr.level_count(), 4);
    scan.request("first edge", &pyr, 3);
    pyr.flush();
    let built = pyr.stats().generated;
    assert_eq!(built, 12 + 6 + 3);
    drop(pyr);
    let first = blob_stamps(&scan.cache);
    assert_eq!(first.len(), 21);

    // Edge 64: fewer levels. Levels 1 and 2 come from the disk; level 3's blobs stay.
    let pyr = scan.open_with_edge(FEWER);
    assert_eq!(pyr.level_count(), 3);
    assert_eq!(
        levels_shown(&pyr),
        [1, 2],
        "demand shown for a level edge 64 lacks"
    );
    let not_from_disk = scan.request("fewer levels", &pyr, 2);
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(
        (s.generated, s.source_slices),
        (0, 0),
        "fewer levels: {s:?}"
    );
    assert_eq!(not_from_disk, 0);
    assert_eq!(s.disk.invalidated, 0);
    drop(pyr);
    assert!(
        blob_stamps(&scan.cache) == first,
        "reopening with fewer levels rewrote or removed blob files"
    );

    // Edge 8: more levels. Levels 1 to 3 come from the disk; 4 and 5 are made from level 3.
    let pyr = scan.open_with_edge(MORE);
    assert_eq!(pyr.level_count(), 6);
    let not_from_disk = scan.request("more levels", &pyr, 3);
    pyr.flush();
    let s = pyr.stats();
    assert_eq!((s.generated, s.source_slices), (0, 0), "more levels: {s:?}");
    assert_eq!(not_from_disk, 0);
    let second = scan.request("more levels, new levels", &pyr, 5) as u64;
    pyr.flush();
    let s = pyr.stats();
    // Levels 4 and 5 (2 + 1 slices) are new; levels 1 to 3 answered from memory or disk.
    assert_eq!(s.generated, 3, "more levels: {s:?}");
    assert_eq!(
        second,
        3 + 21,
        "the second pass answered levels 1 to 3 from memory"
    );
    assert_eq!(s.source_slices, 0);
    assert_eq!(levels_shown(&pyr), [1, 2, 3, 4, 5]);
    drop(pyr);
    let more = blob_stamps(&scan.cache);
    assert_eq!(more.len(), 21 + 3);
    for (path, stamp) in &first {
        assert!(
            more.get(path) == Some(stamp),
            "{}: rewritten or removed with more levels",
            path.display()
        );
    }

    // Back to edge 32: nothing generated, no blob file touched, levels 4 and 5 stay on disk
    // unused, and their demand is not shown.
    let pyr = scan.open_with_edge(FIRST);
    assert_eq!(
        levels_shown(&pyr),
        [1, 2, 3],
        "demand shown for a level edge 32 lacks"
    );
    let not_from_disk = scan.request("back to the first edge", &pyr, 3);
    pyr.flush();
    let s = pyr.stats();
    assert_eq!((s.generated, s.source_slices), (0, 0), "back: {s:?}");
    assert_eq!(not_from_disk, 0);
    drop(pyr);
    assert!(
        blob_stamps(&scan.cache) == more,
        "going back to the first edge rewrote or removed blob files"
    );
}
