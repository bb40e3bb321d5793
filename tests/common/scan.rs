//! The fixture most tests start from: a phantom stack in a temporary folder, opened with one
//! level edge on cache folders beside it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lodcache::{Phantom, Pyramid, PyramidBuilder, Slice, SliceKey};

use super::{Volume, assert_naive, naive_keys, phantom_volume, read_tiff_dir};

/// A phantom stack written to `<tmp>/scan`, its default cache folder `<tmp>/cache`, the
/// level edge the tests open it with, and (computed when first asked for) its naive pyramid.
pub struct Scan {
    pub tmp: tempfile::TempDir,
    pub stack: PathBuf,
    pub cache: PathBuf,
    pub phantom: Phantom,
    pub edge: u32,
    naive: OnceLock<Vec<Volume>>,
}

impl Scan {
    /// Writes `phantom` to a new temporary folder.
    pub fn new(phantom: Phantom, edge: u32) -> Scan {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("scan");
        phantom.write(&stack).unwrap();
        Scan {
            cache: tmp.path().join("cache"),
            stack,
            tmp,
            phantom,
            edge,
            naive: OnceLock::new(),
        }
    }

    /// `<tmp>/<name>`: another cache folder, or a scratch folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The source file of slice number `z`.
    pub fn file(&self, z: u32) -> PathBuf {
        self.stack.join(Phantom::file_name(z))
    }

    /// A builder on the default cache folder with the edge.
    pub fn builder(&self) -> PyramidBuilder {
        self.builder_at(&self.cache)
    }

    /// A builder on cache folder `cache` with the edge.
    pub fn builder_at(&self, cache: &Path) -> PyramidBuilder {
        Pyramid::builder(&self.stack)
            .with_cache_dir(cache)
            .with_edge(self.edge)
    }

    /// The pyramid on the default cache folder.
    pub fn open(&self) -> Pyramid {
        self.builder().build().unwrap()
    }

    /// The pyramid on cache folder `cache`.
    pub fn open_at(&self, cache: &Path) -> Pyramid {
        self.builder_at(cache).build().unwrap()
    }

    /// The naive pyramid of the phantom (computed in memory, once).
    pub fn naive(&self) -> &[Volume] {
        self.naive
            .get_or_init(|| phantom_volume(&self.phantom).pyramid(self.edge as usize))
    }

    /// The naive pyramid of the stack's files as they are now (read with the tiff crate).
    pub fn naive_of_files(&self) -> Vec<Volume> {
        read_tiff_dir(&self.stack).0.pyramid(self.edge as usize)
    }

    /// Every slice of every level >= 1 of the naive pyramid.
    pub fn keys(&self) -> Vec<SliceKey> {
        naive_keys(self.naive())
    }

    /// Asserts that `slice` is slice `key` of the naive pyramid.
    #[track_caller]
    pub fn check(&self, what: &str, key: SliceKey, slice: &Slice) {
        assert_naive(what, self.naive(), key.level, key.z, slice);
    }

    /// Asserts that `slice` is slice `z` of `level` of the naive pyramid.
    #[track_caller]
    pub fn check_at(&self, what: &str, level: u32, z: u32, slice: &Slice) {
        assert_naive(what, self.naive(), level, z, slice);
    }
}
