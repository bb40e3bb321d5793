//! Shared helpers for the pyramid and export tests: an independent naive pyramid and TIFF
//! reading that does not go through lodcache.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

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

/// Reads a gray TIFF with the tiff crate as plain numbers (u8 or u16), plus its bit depth.
pub fn read_tiff(path: &Path) -> (usize, usize, u8, Vec<u32>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).unwrap();
    let (w, h) = dec.dimensions().unwrap();
    let color = dec.colortype().unwrap();
    let mut result = tiff::decoder::DecodingResult::U8(Vec::new());
    dec.read_image_to_buffer(&mut result).unwrap();
    let (bits, values): (u8, Vec<u32>) = match result {
        tiff::decoder::DecodingResult::U8(v) => (8, v.into_iter().map(u32::from).collect()),
        tiff::decoder::DecodingResult::U16(v) => (16, v.into_iter().map(u32::from).collect()),
        _ => panic!("{}: unexpected sample type", path.display()),
    };
    assert!(
        matches!(color, tiff::ColorType::Gray(_)),
        "{}: {color:?}",
        path.display()
    );
    (w as usize, h as usize, bits, values)
}

/// Reads every TIFF in `dir` (sorted by name) as a volume, independently of lodcache.
pub fn read_tiff_dir(dir: &Path) -> (Volume, u8) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tif" || e == "tiff"))
        .collect();
    files.sort();
    let mut bits = 0;
    let mut width = 0;
    let mut height = 0;
    let slices = files
        .iter()
        .map(|p| {
            let (w, h, b, v) = read_tiff(p);
            (width, height, bits) = (w, h, b);
            v
        })
        .collect();
    (
        Volume {
            width,
            height,
            slices,
        },
        bits,
    )
}

/// Samples of a lodcache slice as plain numbers.
pub fn values(slice: &lodcache::Slice) -> Vec<u32> {
    match slice.pixels() {
        lodcache::Pixels::U8(v) => v.iter().map(|&x| u32::from(x)).collect(),
        lodcache::Pixels::U16(v) => v.iter().map(|&x| u32::from(x)).collect(),
        other => panic!("unexpected pixels {other:?}"),
    }
}

/// Asserts that `slice` is slice `z` of level `level` of the naive pyramid `naive`.
pub fn assert_naive(what: &str, naive: &[Volume], level: u32, z: u32, slice: &lodcache::Slice) {
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

/// The phantom as a volume, generated in memory.
pub fn phantom_volume(p: &lodcache::Phantom) -> Volume {
    Volume {
        width: p.width() as usize,
        height: p.height() as usize,
        slices: (0..p.depth()).map(|z| values(&p.slice(z))).collect(),
    }
}

/// Every file below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The environment variable naming the folder of the shared real stacks (default: `../shared/data`
/// beside the repository).
pub const SHARED_DATA_ENV: &str = "LODCACHE_SHARED_DATA";
/// The environment variable that, set to `1`, skips the tests that need the shared real stacks
/// where they are missing (otherwise those tests fail).
pub const SKIP_REAL_DATA_ENV: &str = "LODCACHE_SKIP_REAL_DATA";

/// The folder of the shared real stacks: `$LODCACHE_SHARED_DATA`, else `../shared/data` from
/// the project root.
pub fn shared_data_root() -> PathBuf {
    match std::env::var_os(SHARED_DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared")
            .join("data"),
    }
}

/// The shared real stack `name` (see [`shared_data_root`]). Where it is missing the test
/// fails, unless `LODCACHE_SKIP_REAL_DATA=1`: then it says so and returns `None` (skip).
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = shared_data_root().join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os(SKIP_REAL_DATA_ENV).is_some_and(|v| v == "1") {
        eprintln!(
            "SKIPPED ({SKIP_REAL_DATA_ENV}=1): the real stack {} is missing",
            dir.display()
        );
        return None;
    }
    panic!(
        "the real stack {} is missing: point {SHARED_DATA_ENV} at the folder of the shared \
         stacks, or set {SKIP_REAL_DATA_ENV}=1 to skip the tests that need it",
        dir.display()
    );
}

/// An example binary cargo built next to this test (`target/<profile>/examples/<name>`).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} not built", path.display());
    path
}

/// Every file under `dir`, two levels deep as a cache folder is, tolerating files that vanish
/// while listed.
pub fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in top.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Ok(inner) = std::fs::read_dir(&path) {
                out.extend(inner.flatten().map(|e| e.path()));
            }
        } else {
            out.push(path);
        }
    }
    out
}

/// Blob files under a cache folder.
pub fn blob_files(cache: &Path) -> Vec<PathBuf> {
    cache_files(cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "blob"))
        .collect()
}

/// Files under a cache folder whose names mark an unfinished write.
pub fn temp_files(cache: &Path) -> Vec<PathBuf> {
    cache_files(cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect()
}

/// SplitMix64: a small seeded generator, so that a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `0..n`.
    pub fn below_u32(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    /// `items` in a random order.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
