//! `lodcache.Pyramid`: the lazy pyramid of one stack, every call into the library made with the
//! GIL released, every buffer handed to numpy without a copy.

use std::path::PathBuf;
use std::sync::Arc;

use lodcache::{LevelInfo, LevelRule, Pyramid, Region, VoxelSize, WarmupOptions};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple};

use crate::convert::{ByteCount, bounds, into_array, numpy_dtype};
use crate::errors::{invalid, to_py};
use crate::warmup::PyWarmUp;

/// The size, sample type and voxel size of one pyramid level (`Pyramid.levels`).
#[pyclass(module = "lodcache._lodcache", name = "Level", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct PyLevel {
    /// Level number; 0 is the source stack.
    level: u32,
    /// `(z, y, x)`: slices, rows, columns.
    shape: (usize, usize, usize),
    /// The numpy dtype of the samples: uint8, uint16 or float32.
    dtype: Py<PyAny>,
    /// The size of one voxel of this level `(z, y, x)` in micrometres (level n's is 2^n times
    /// level 0's), or None when unknown.
    voxel_size: Option<(f64, f64, f64)>,
}

#[pymethods]
impl PyLevel {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Level(level={}, shape={:?}, dtype={}, voxel_size={:?})",
            self.level,
            self.shape,
            self.dtype.bind(py).str()?,
            self.voxel_size
        ))
    }
}

fn level_object(py: Python<'_>, info: &LevelInfo, voxel: Option<&VoxelSize>) -> PyLevel {
    PyLevel {
        level: info.level,
        shape: (
            info.depth as usize,
            info.height as usize,
            info.width as usize,
        ),
        dtype: numpy_dtype(py, info.sample_type).into_any().unbind(),
        voxel_size: voxel.map(|v| {
            let [x, y, z] = v.at_level(info.level);
            (z, y, x)
        }),
    }
}

/// The lazy level-of-detail pyramid of a CT stack folder.
#[pyclass(module = "lodcache._lodcache", name = "Pyramid", frozen)]
#[derive(Debug)]
pub(crate) struct PyPyramid {
    pub(crate) inner: Pyramid,
}

impl PyPyramid {
    fn info(&self, level: i64) -> PyResult<LevelInfo> {
        let levels = self.inner.levels();
        usize::try_from(level)
            .ok()
            .and_then(|l| levels.get(l))
            .copied()
            .ok_or_else(|| {
                invalid(format!(
                    "invalid level: {level}; this pyramid has levels 0..={}",
                    levels.len() - 1
                ))
            })
    }

    fn z_index(info: &LevelInfo, z: i64) -> PyResult<u32> {
        u32::try_from(z)
            .ok()
            .filter(|&z| z < info.depth)
            .ok_or_else(|| {
                invalid(format!(
                    "invalid slice index: {z} at level {}; valid: 0..={}",
                    info.level,
                    info.depth - 1
                ))
            })
    }
}

#[pymethods]
impl PyPyramid {
    #[new]
    #[pyo3(
        signature = (
            path, *, cache_dir=None, disk_cache=true,
            memory_budget=ByteCount(lodcache::DEFAULT_MEMORY_BUDGET),
            disk_budget=None, edge=500, max_levels=None, threads=None, voxel_size=None
        ),
        text_signature = "(path, *, cache_dir=None, disk_cache=True, memory_budget='512M', \
                          disk_budget=None, edge=500, max_levels=None, threads=None, \
                          voxel_size=None)"
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "the Python signature's keyword arguments"
    )]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        cache_dir: Option<PathBuf>,
        disk_cache: bool,
        memory_budget: ByteCount,
        disk_budget: Option<ByteCount>,
        edge: u32,
        max_levels: Option<u32>,
        threads: Option<usize>,
        voxel_size: Option<(f64, f64, f64)>,
    ) -> PyResult<Self> {
        let mut rule = LevelRule::default().with_edge(edge);
        if let Some(n) = max_levels {
            rule = rule.with_max_levels(n);
        }
        let mut builder = Pyramid::builder(&path)
            .with_disk_cache(disk_cache)
            .with_memory_budget(memory_budget.0)
            .with_level_rule(rule);
        if let Some(dir) = cache_dir {
            builder = builder.with_cache_dir(dir);
        }
        if let Some(b) = disk_budget {
            builder = builder.with_disk_budget(b.0);
        }
        if let Some((z, y, x)) = voxel_size {
            // Checked (finite, above 0) when the pyramid is built.
            builder = builder.with_voxel_size([x, y, z]);
        }
        if let Some(n) = threads {
            if n == 0 {
                return Err(invalid("threads must be at least 1, got 0"));
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("lodcache-py-{i}"))
                .build()
                .map_err(|e| invalid(format!("cannot start {n} threads: {e}")))?;
            builder = builder.with_thread_pool(Arc::new(pool));
        }
        let inner = py.detach(|| builder.build()).map_err(to_py)?;
        Ok(PyPyramid { inner })
    }

    /// Every level, level 0 (the source stack) first.
    #[getter]
    fn levels(&self, py: Python<'_>) -> Vec<PyLevel> {
        let voxel = self.inner.voxel_size();
        self.inner
            .levels()
            .iter()
            .map(|l| level_object(py, l, voxel.as_ref()))
            .collect()
    }

    /// The stack folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.stack().dir().to_path_buf()
    }

    /// Warnings about the cache (read-only or unusable folder, damaged blobs found).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    /// Slice `z` of `level` as a 2-D array `(y, x)`.
    fn slice<'py>(&self, py: Python<'py>, level: i64, z: i64) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info(level)?;
        let z = Self::z_index(&info, z)?;
        let slice = py
            .detach(|| self.inner.slice(info.level, z))
            .map_err(to_py)?;
        let shape = [slice.height() as usize, slice.width() as usize];
        into_array(py, slice.into_pixels(), &shape)
    }

    /// Rows `y` and columns `x` of slice `z` of `level`: slices with step 1 (or ints, which
    /// select one row or column and drop that axis).
    fn region<'py>(
        &self,
        py: Python<'py>,
        level: i64,
        z: i64,
        y: &Bound<'py, PyAny>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info(level)?;
        let z = Self::z_index(&info, z)?;
        let (y0, y1) = bounds("y", y, info.height)?;
        let (x0, x1) = bounds("x", x, info.width)?;
        let (w, h) = (x1 - x0, y1 - y0);
        let slice = py
            .detach(|| self.inner.region(info.level, z, Region::new(x0, y0, w, h)))
            .map_err(to_py)?;
        // A slice keeps its axis; an integer (Python's or numpy's) drops it, as in numpy.
        let mut shape = Vec::with_capacity(2);
        if y.is_instance_of::<PySlice>() {
            shape.push(h as usize);
        }
        if x.is_instance_of::<PySlice>() {
            shape.push(w as usize);
        }
        into_array(py, slice.into_pixels(), &shape)
    }

    /// The whole of `level` as a 3-D array `(z, y, x)`.
    fn volume<'py>(&self, py: Python<'py>, level: i64) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info(level)?;
        let volume = py.detach(|| self.inner.volume(info.level)).map_err(to_py)?;
        let shape = [
            volume.depth() as usize,
            volume.height() as usize,
            volume.width() as usize,
        ];
        into_array(py, volume.into_pixels(), &shape)
    }

    /// The plane of `level` at `index` across `axis`: `"z"` (0) gives slice `index` `(y, x)`,
    /// `"y"` (1) the XZ plane of row `index` `(z, x)`, `"x"` (2) the YZ plane of column `index`
    /// `(z, y)`.
    fn section<'py>(
        &self,
        py: Python<'py>,
        level: i64,
        axis: &Bound<'py, PyAny>,
        index: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info(level)?;
        let axis = crate::convert::axis(axis)?;
        let extent = match axis {
            lodcache::Axis::X => info.width,
            lodcache::Axis::Y => info.height,
            _ => info.depth,
        };
        let index = u32::try_from(index)
            .ok()
            .filter(|&i| i < extent)
            .ok_or_else(|| {
                invalid(format!(
                    "invalid section index: {index} across {axis:?} at level {}; valid: 0..={}",
                    info.level,
                    extent - 1
                ))
            })?;
        let plane = py
            .detach(|| self.inner.section(info.level, axis, index))
            .map_err(to_py)?;
        let shape = [plane.height() as usize, plane.width() as usize];
        into_array(py, plane.into_pixels(), &shape)
    }

    /// Writes `levels` (every level >= 1 when None) in CTHarvester's layout,
    /// `out/<n>/<i:06>.tif`, reading through the cache. Returns what was written.
    #[pyo3(signature = (out, levels=None))]
    fn export_ctharvester<'py>(
        &self,
        py: Python<'py>,
        out: PathBuf,
        levels: Option<Vec<u32>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let report = py
            .detach(|| self.inner.export_ctharvester(&out, levels.as_deref()))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item(
            "levels",
            report.levels.iter().map(|l| l.level).collect::<Vec<_>>(),
        )?;
        d.set_item("files", report.files)?;
        d.set_item("bytes", report.bytes)?;
        d.set_item("source_bytes", report.source_bytes)?;
        Ok(d)
    }

    /// Starts building, in the background, what users will ask for: `levels` in this order
    /// (else by demand, then smallest level first), stopping after `time` seconds or once
    /// `bytes` of blobs are stored. Returns a handle; dropping it cancels the run. A level out
    /// of range ends the run at once: `wait()` raises the ValueError.
    #[pyo3(signature = (levels=None, time=None, bytes=None, threads=1))]
    fn warm_up(
        &self,
        py: Python<'_>,
        levels: Option<Vec<u32>>,
        time: Option<f64>,
        bytes: Option<ByteCount>,
        threads: usize,
    ) -> PyResult<PyWarmUp> {
        let mut options = WarmupOptions::default().with_threads(threads);
        if let Some(levels) = levels {
            options = options.with_levels(levels);
        }
        if let Some(t) = time {
            let d = std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                invalid(format!(
                    "time must be a non-negative number of seconds, got {t}"
                ))
            })?;
            options = options.with_time_budget(d);
        }
        if let Some(b) = bytes {
            options = options.with_byte_budget(b.0);
        }
        let handle = py.detach(|| self.inner.warm_up(options));
        Ok(PyWarmUp::new(handle))
    }

    /// The counters so far, as nested dicts (see the type stubs for the keys).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats());
        let memory = PyDict::new(py);
        memory.set_item("hits", s.memory.hits)?;
        memory.set_item("misses", s.memory.misses)?;
        memory.set_item("insertions", s.memory.insertions)?;
        memory.set_item("evictions", s.memory.evictions)?;
        memory.set_item("bytes", s.memory.bytes)?;
        memory.set_item("entries", s.memory.entries)?;
        memory.set_item("budget", s.memory.budget.bytes())?;
        let disk = PyDict::new(py);
        disk.set_item("hits", s.disk.hits)?;
        disk.set_item("misses", s.disk.misses)?;
        disk.set_item("corrupt", s.disk.corrupt)?;
        disk.set_item("writes", s.disk.writes)?;
        disk.set_item("write_errors", s.disk.write_errors)?;
        disk.set_item("evictions", s.disk.evictions)?;
        disk.set_item("invalidated", s.disk.invalidated)?;
        disk.set_item("bytes", s.disk.bytes)?;
        disk.set_item("blobs", s.disk.blobs)?;
        disk.set_item("budget", s.disk.budget.bytes())?;
        disk.set_item("mode", format!("{:?}", s.disk.mode).to_ascii_lowercase())?;
        let d = PyDict::new(py);
        d.set_item("memory", memory)?;
        d.set_item("disk", disk)?;
        d.set_item("generated", s.generated)?;
        d.set_item("coalesced", s.coalesced)?;
        d.set_item("stream_builds", s.stream_builds)?;
        d.set_item("source_slices", s.source_slices)?;
        d.set_item("source_bytes", s.source_bytes)?;
        d.set_item("stored_bytes", s.stored_bytes)?;
        d.set_item("generating", s.generating.as_secs_f64())?;
        d.set_item("requests", s.requests)?;
        Ok(d)
    }

    /// What users have asked for, most requested level first: `{"levels": [{"level", "score",
    /// "share"}, ...], "slices": [((level, z), score), ...]}`.
    fn demand<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let ranking = py.detach(|| self.inner.demand());
        let levels = PyList::empty(py);
        for l in &ranking.levels {
            let d = PyDict::new(py);
            d.set_item("level", l.level)?;
            d.set_item("score", l.score)?;
            d.set_item("share", l.share)?;
            levels.append(d)?;
        }
        let slices = PyList::empty(py);
        for (key, score) in &ranking.slices {
            slices.append(PyTuple::new(
                py,
                [
                    PyTuple::new(py, [key.level, key.z])?.into_any(),
                    score.into_pyobject(py)?.into_any(),
                ],
            )?)?;
        }
        let d = PyDict::new(py);
        d.set_item("levels", levels)?;
        d.set_item("slices", slices)?;
        Ok(d)
    }

    /// Waits until every slice generated so far is stored in both tiers and saves the request
    /// statistics.
    fn flush(&self, py: Python<'_>) {
        py.detach(|| self.inner.flush());
    }

    /// `pyramid[level]`: a lazy array-like of the level (see `lodcache.LevelArray`).
    fn __getitem__<'py>(slf: &Bound<'py, Self>, level: i64) -> PyResult<Bound<'py, PyAny>> {
        slf.get().info(level)?;
        let class = slf.py().import("lodcache._array")?.getattr("LevelArray")?;
        class.call1((slf, level))
    }

    fn __len__(&self) -> usize {
        self.inner.levels().len()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Flushes (see `flush`); the pyramid stays usable.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.flush(py);
        false
    }

    fn __repr__(&self) -> String {
        let l0 = self.inner.levels()[0];
        format!(
            "Pyramid({:?}, levels={}, shape=({}, {}, {}), dtype={})",
            self.inner.stack().dir(),
            self.inner.levels().len(),
            l0.depth,
            l0.height,
            l0.width,
            l0.sample_type
        )
    }
}
