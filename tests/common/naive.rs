//! An independent naive pyramid, written straight from the contract with no code shared with
//! lodcache, and the checks of lodcache's slices against it.

use lodcache::{LevelInfo, Phantom, Pixels, Pyramid, Served, Slice, SliceKey};

/// A volume as plain numbers: `slices[z][y * width + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub width: usize,
    pub height: usize,
    pub slices: Vec<Vec<u32>>,
}

impl Volume {
    /// The next level, written straight from the contract with no shared code: width and
    /// height halve rounding down, depth halves rounding up, 2x2x2 means rounded half up,
    /// a lone last slice is the 2x2 mean.
    pub fn next_level(&self) -> Volume {
        let (w, h) = (self.width / 2, self.height / 2);
        let mut slices = Vec::new();
        let mut z = 0;
        while z < self.slices.len() {
            let pair: Vec<&Vec<u32>> = self.slices[z..(z + 2).min(self.slices.len())]
                .iter()
                .collect();
            let mut out = vec![0u32; w * h];
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0u64;
                    for s in &pair {
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            sum += u64::from(s[(2 * y + dy) * self.width + 2 * x + dx]);
                        }
                    }
                    let count = 4 * pair.len() as u64;
                    // Round half up: floor(sum / count + 1/2).
                    out[y * w + x] = ((2 * sum + count) / (2 * count)) as u32;
                }
            }
            slices.push(out);
            z += 2;
        }
        Volume {
            width: w,
            height: h,
            slices,
        }
    }

    /// Levels 0..=n with the edge rule (levels are made while max(w, h) > edge).
    pub fn pyramid(self, edge: usize) -> Vec<Volume> {
        let mut levels = vec![self];
        loop {
            let last = &levels[levels.len() - 1];
            if last.width.max(last.height) <= edge || last.width < 2 || last.height < 2 {
                return levels;
            }
            let next = last.next_level();
            levels.push(next);
        }
    }
}

/// Samples of a lodcache slice as plain numbers.
pub fn values(slice: &Slice) -> Vec<u32> {
    match slice.pixels() {
        Pixels::U8(v) => v.iter().map(|&x| u32::from(x)).collect(),
        Pixels::U16(v) => v.iter().map(|&x| u32::from(x)).collect(),
        other => panic!("unexpected pixels {other:?}"),
    }
}

/// Asserts that `slice` is slice `z` of level `level` of the naive pyramid `naive`.
#[track_caller]
pub fn assert_naive(what: &str, naive: &[Volume], level: u32, z: u32, slice: &Slice) {
    let want = &naive[level as usize];
    assert_eq!(
        (slice.width() as usize, slice.height() as usize),
        (want.width, want.height),
        "{what}: level {level} slice {z} size"
    );
    assert!(
        values(slice) == want.slices[z as usize],
        "{what}: level {level} slice {z} differs from the naive pyramid"
    );
}

/// Asserts that the pyramid's levels have the sizes of the naive pyramid's.
#[track_caller]
pub fn assert_level_sizes(what: &str, pyr: &Pyramid, naive: &[Volume]) {
    let have: Vec<(usize, usize, usize)> = pyr
        .levels()
        .iter()
        .map(|l| (l.width as usize, l.height as usize, l.depth as usize))
        .collect();
    let want: Vec<(usize, usize, usize)> = naive
        .iter()
        .map(|v| (v.width, v.height, v.slices.len()))
        .collect();
    assert_eq!(have, want, "{what}: level sizes");
}

/// The phantom as a volume, generated in memory.
pub fn phantom_volume(p: &Phantom) -> Volume {
    Volume {
        width: p.width() as usize,
        height: p.height() as usize,
        slices: (0..p.depth()).map(|z| values(&p.slice(z))).collect(),
    }
}

/// Every slice of every level >= 1 of `levels` (level 0 first), level by level, in z order.
pub fn upper_keys(levels: &[LevelInfo]) -> Vec<SliceKey> {
    levels
        .iter()
        .skip(1)
        .flat_map(|l| (0..l.depth).map(move |z| SliceKey::new(l.level, z)))
        .collect()
}

/// Every slice of every level >= 1 of the naive pyramid, level by level, in z order.
pub fn naive_keys(naive: &[Volume]) -> Vec<SliceKey> {
    (1..naive.len() as u32)
        .flat_map(|l| (0..naive[l as usize].slices.len() as u32).map(move |z| SliceKey::new(l, z)))
        .collect()
}

/// Requests every slice of every level >= 1 of `pyr`, level by level in z order, and checks
/// each against `naive`; returns where each came from.
#[track_caller]
pub fn request_all(what: &str, pyr: &Pyramid, naive: &[Volume]) -> Vec<(SliceKey, Served)> {
    upper_keys(pyr.levels())
        .into_iter()
        .map(|key| {
            let (slice, served) = pyr
                .slice_served(key.level, key.z)
                .unwrap_or_else(|e| panic!("{what}: {key}: {e}"));
            assert_naive(what, naive, key.level, key.z, &slice);
            (key, served)
        })
        .collect()
}
