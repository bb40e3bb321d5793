//! Files on disk: TIFF slices read without lodcache, listings of cache folders, file times,
//! the shared real stacks and the example binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lodcache::{Error, SliceKey};

use super::Volume;

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

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Asserts that the error's text names `path`.
#[track_caller]
pub fn assert_names(err: &Error, path: &Path) {
    let text = err.to_string();
    let name = path.display().to_string();
    assert!(
        text.contains(&name),
        "error text {text:?} does not name {name}"
    );
}

/// Asserts that `err` is the size error of `file`: `found` (width, height) where `expected`
/// is, naming the file and both sizes.
#[track_caller]
pub fn assert_size_mismatch(
    what: &str,
    err: &Error,
    file: &Path,
    expected: (u32, u32),
    found: (u32, u32),
) {
    let message = err.to_string();
    match err {
        Error::SizeMismatch {
            path,
            expected_w,
            expected_h,
            found_w,
            found_h,
        } => {
            assert_eq!(path, file, "{what}: {message}");
            assert_eq!((*expected_w, *expected_h), expected, "{what}: {message}");
            assert_eq!((*found_w, *found_h), found, "{what}: {message}");
        }
        other => panic!("{what}: expected a size mismatch, got {other:?}"),
    }
    assert_names(err, file);
    for size in [expected, found] {
        let part = format!("{} x {}", size.0, size.1);
        assert!(
            message.contains(&part),
            "{what}: {message:?} lacks {part:?}"
        );
    }
}

/// Sets the modification time of the file at `path`.
pub fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

/// Flips every bit of byte `at` of a file (`at` from the end when negative).
pub fn flip_byte(path: &Path, at: isize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    bytes[i] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
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

/// The slice a blob file `<cache>/<level>/<z:06>.blob` holds.
pub fn blob_key(path: &Path) -> SliceKey {
    let number = |p: Option<&std::ffi::OsStr>| -> u32 {
        p.and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{} is not a blob file", path.display()))
    };
    SliceKey::new(
        number(path.parent().and_then(Path::file_name)),
        number(path.file_stem()),
    )
}

/// Bytes of every blob file under a cache folder, by slice.
pub fn blob_sizes(cache: &Path) -> BTreeMap<SliceKey, u64> {
    blob_files(cache)
        .into_iter()
        .map(|p| (blob_key(&p), std::fs::metadata(&p).unwrap().len()))
        .collect()
}

/// A file as a rewrite would change it: inode, modification time and bytes.
pub type FileStamp = (u64, SystemTime, Vec<u8>);

/// Every blob file under a cache folder with its [`FileStamp`], by path.
pub fn blob_stamps(cache: &Path) -> BTreeMap<PathBuf, FileStamp> {
    use std::os::unix::fs::MetadataExt;
    blob_files(cache)
        .into_iter()
        .map(|path| {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let stamp = (
                meta.ino(),
                meta.modified().unwrap(),
                std::fs::read(&path).unwrap(),
            );
            (path, stamp)
        })
        .collect()
}

/// Files under a cache folder whose names mark an unfinished write.
pub fn temp_files(cache: &Path) -> Vec<PathBuf> {
    cache_files(cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect()
}

/// The environment variable naming the folder of the shared real stacks (default:
/// `../shared/data` beside the repository).
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
