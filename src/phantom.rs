//! A deterministic CT-like phantom: ellipsoids of different densities plus noise.
//!
//! The same parameters give the same bytes on every machine and thread count (the noise is a
//! hash of the voxel's coordinates and the seed), so tests, benches and examples share stacks.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::slice::{Pixels, SampleType, Slice};

/// One ellipsoid, in coordinates normalised to [-1, 1] on each axis, rotated about z.
#[derive(Debug, Clone, Copy)]
struct Ellipsoid {
    centre: [f64; 3],
    radii: [f64; 3],
    /// Rotation about the z axis, radians.
    angle: f64,
    /// Added to the density inside (may be negative: cavities).
    density: f64,
}

/// A phantom's parameters. Build with [`Phantom::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Phantom {
    width: u32,
    height: u32,
    depth: u32,
    sample_type: SampleType,
    seed: u64,
    noise: f64,
    shapes: Vec<Ellipsoid>,
}

/// SplitMix64: a fast, well-mixed hash of a 64-bit value.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Phantom {
    /// A 16-bit phantom of `width` x `height` x `depth` with seed 1 and mild noise.
    pub fn new(width: u32, height: u32, depth: u32) -> Phantom {
        Phantom {
            width,
            height,
            depth,
            sample_type: SampleType::U16,
            seed: 1,
            noise: 0.02,
            shapes: Vec::new(),
        }
        .with_seed(1)
    }

    /// The sample type, [`SampleType::U8`] or [`SampleType::U16`] (f32 is written as u16).
    /// Default: u16.
    #[must_use]
    pub fn with_sample_type(mut self, ty: SampleType) -> Phantom {
        self.sample_type = ty;
        self
    }

    /// The seed: it places the inner ellipsoids and drives the noise. Default: 1.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Phantom {
        self.seed = seed;
        self.shapes = Self::shapes(seed);
        self
    }

    /// Noise amplitude as a fraction of full scale (0 for none). Default: 0.02.
    #[must_use]
    pub fn with_noise(mut self, noise: f64) -> Phantom {
        self.noise = noise.max(0.0);
        self
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Number of slices.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The sample type written.
    pub fn sample_type(&self) -> SampleType {
        match self.sample_type {
            SampleType::U8 => SampleType::U8,
            _ => SampleType::U16,
        }
    }

    fn shapes(seed: u64) -> Vec<Ellipsoid> {
        // A body, a dense shell inside it, a soft core, then random inclusions and cavities.
        let mut shapes = vec![
            Ellipsoid {
                centre: [0.0, 0.0, 0.0],
                radii: [0.92, 0.80, 0.95],
                angle: 0.0,
                density: 0.30,
            },
            Ellipsoid {
                centre: [0.0, 0.0, 0.0],
                radii: [0.86, 0.74, 0.90],
                angle: 0.0,
                density: 0.35,
            },
            Ellipsoid {
                centre: [0.0, 0.0, 0.0],
                radii: [0.80, 0.68, 0.86],
                angle: 0.0,
                density: -0.40,
            },
        ];
        let mut state = mix(seed ^ 0x5EED);
        let mut next = || {
            state = mix(state);
            unit(state)
        };
        for i in 0..12 {
            let r = [
                0.06 + 0.22 * next(),
                0.06 + 0.22 * next(),
                0.1 + 0.4 * next(),
            ];
            let c = [
                (next() - 0.5) * 1.0,
                (next() - 0.5) * 0.9,
                (next() - 0.5) * 1.1,
            ];
            let density = if i % 4 == 3 {
                -0.15
            } else {
                0.1 + 0.5 * next()
            };
            shapes.push(Ellipsoid {
                centre: c,
                radii: r,
                angle: next() * std::f64::consts::PI,
                density,
            });
        }
        shapes
    }

    /// Density (0..=1 before noise) along row `y` of slice `z`, written into `row`.
    fn density_row(&self, y: u32, z: u32, row: &mut [f64]) {
        row.fill(0.0);
        let w = f64::from(self.width);
        let v = (f64::from(y) + 0.5) / f64::from(self.height) * 2.0 - 1.0;
        let t = (f64::from(z) + 0.5) / f64::from(self.depth) * 2.0 - 1.0;
        for e in &self.shapes {
            let dz = (t - e.centre[2]) / e.radii[2];
            let rest = 1.0 - dz * dz;
            if rest <= 0.0 {
                continue;
            }
            // Inside when (x' / rx)^2 + (y' / ry)^2 <= rest with (x', y') rotated by -angle:
            // a quadratic in u (the normalised x) for this row.
            let (s, c) = e.angle.sin_cos();
            let dy = v - e.centre[1];
            let (ax, bx) = (c / e.radii[0], s / e.radii[1]);
            let (ay, by) = (s / e.radii[0], -c / e.radii[1]);
            // x' / rx = ax * du + ay * dy, y' / ry = bx * du + by * dy with du = u - cx.
            let qa = ax * ax + bx * bx;
            let qb = 2.0 * (ax * ay * dy + bx * by * dy);
            let qc = (ay * dy) * (ay * dy) + (by * dy) * (by * dy) - rest;
            let disc = qb * qb - 4.0 * qa * qc;
            if disc < 0.0 {
                continue;
            }
            let root = disc.sqrt();
            let u0 = e.centre[0] + (-qb - root) / (2.0 * qa);
            let u1 = e.centre[0] + (-qb + root) / (2.0 * qa);
            // Pixel x is inside when its centre u = (x + 0.5) / w * 2 - 1 lies in [u0, u1].
            let x0 = ((u0 + 1.0) * 0.5 * w - 0.5).ceil().max(0.0);
            let x1 = ((u1 + 1.0) * 0.5 * w - 0.5).floor().min(w - 1.0);
            if x1 < x0 {
                continue;
            }
            for d in &mut row[x0 as usize..=x1 as usize] {
                *d += e.density;
            }
        }
    }

    /// Fills `out` with slice `z`, reusing its allocation.
    pub fn slice_into(&self, z: u32, out: &mut Slice) {
        let ty = self.sample_type();
        out.reshape(self.width, self.height, ty);
        let w = self.width as usize;
        let full = match ty {
            SampleType::U8 => 255.0,
            _ => 65535.0,
        };
        let seed = mix(self.seed);
        let noise = self.noise;
        let fill = |y: usize, row: &mut [f64]| {
            self.density_row(y as u32, z, row);
            let base = mix(seed ^ ((u64::from(z) << 32) | y as u64));
            for (x, d) in row.iter_mut().enumerate() {
                // Two hashed uniforms make a triangular noise of amplitude `noise`.
                let h = mix(base ^ x as u64);
                let n = (unit(h) + unit(h.rotate_left(32)) - 1.0) * noise;
                *d = ((d.clamp(0.0, 1.0) * 0.9 + 0.05 + n).clamp(0.0, 1.0) * full).round();
            }
        };
        match out.pixels_mut() {
            Pixels::U8(v) => v.par_chunks_mut(w).enumerate().for_each_init(
                || vec![0.0; w],
                |row, (y, dst)| {
                    fill(y, row);
                    for (d, s) in dst.iter_mut().zip(row.iter()) {
                        *d = *s as u8;
                    }
                },
            ),
            Pixels::U16(v) => v.par_chunks_mut(w).enumerate().for_each_init(
                || vec![0.0; w],
                |row, (y, dst)| {
                    fill(y, row);
                    for (d, s) in dst.iter_mut().zip(row.iter()) {
                        *d = *s as u16;
                    }
                },
            ),
            Pixels::F32(_) => unreachable!("sample_type() is u8 or u16"),
        }
    }

    /// Slice `z` as a new buffer.
    pub fn slice(&self, z: u32) -> Slice {
        let mut out = Slice::zeroed(0, 0, self.sample_type());
        self.slice_into(z, &mut out);
        out
    }

    /// File name of slice `z` as written by [`Phantom::write`]: `phantom_00012.tif`.
    pub fn file_name(z: u32) -> String {
        format!("phantom_{z:05}.tif")
    }

    /// Writes the phantom as uncompressed TIFF slices `phantom_00000.tif`, ... into `dir`
    /// (created if missing). Each file is written atomically.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Encode`] naming the file that could not be written.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.check()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let mut slice = Slice::zeroed(0, 0, self.sample_type());
        let mut encoded = Vec::new();
        for z in 0..self.depth {
            self.slice_into(z, &mut slice);
            let path = dir.join(Self::file_name(z));
            crate::export::encode_tiff(&slice, &path, &mut encoded)?;
            fsutil::write_atomic(&path, &encoded)?;
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 || self.depth == 0 {
            return Err(Error::invalid(
                "phantom size",
                format!(
                    "{} x {} x {}: every side must be at least 1",
                    self.width, self.height, self.depth
                ),
            ));
        }
        Ok(())
    }

    /// Writes the phantom into a folder named after its parameters under `parent`, once: a
    /// complete earlier copy is reused. Returns the folder. The copy is made in a temporary
    /// folder and renamed into place, so an interrupted run never leaves a partial stack.
    ///
    /// # Errors
    /// As [`Phantom::write`].
    pub fn write_cached(&self, parent: impl AsRef<Path>) -> Result<PathBuf> {
        let parent = parent.as_ref();
        self.check()?;
        let name = format!(
            "phantom-v1-{}x{}x{}-{}-s{}-n{}",
            self.width,
            self.height,
            self.depth,
            self.sample_type().name(),
            self.seed,
            (self.noise * 1e6).round() as u64
        );
        let dir = parent.join(&name);
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        let staging = parent.join(format!(".{name}.tmp-{}", fsutil::unique_suffix()));
        let result = self.write(&staging).and_then(|()| {
            std::fs::rename(&staging, &dir).or_else(|e| {
                // Another process may have finished the same phantom first.
                if dir.is_dir() {
                    Ok(())
                } else {
                    Err(Error::io("renaming into place", &dir, e))
                }
            })
        });
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result.map(|()| dir)
    }
}

/// The built-in sample stack: a 16-bit 1024 x 1024 x 128 phantom (256 MiB), written once under
/// the system temporary folder and reused. Examples use it when given no stack.
///
/// # Errors
/// As [`Phantom::write_cached`].
pub fn sample_stack() -> Result<PathBuf> {
    Phantom::new(1024, 1024, 128).write_cached(std::env::temp_dir().join("lodcache-samples"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_is_deterministic_and_has_structure() {
        let p = Phantom::new(64, 48, 10).with_seed(7);
        let a = p.slice(5);
        assert_eq!(a, p.slice(5));
        assert_ne!(a, Phantom::new(64, 48, 10).with_seed(8).slice(5));
        let v = a.samples::<u16>().unwrap();
        let (min, max) = (v.iter().min().unwrap(), v.iter().max().unwrap());
        assert!(max - min > 20000, "contrast {min}..{max}");
        // Corners are outside the body: background level.
        assert!(v[0] < 8000);
    }

    #[test]
    fn eight_bit_phantom_uses_the_range() {
        let s = Phantom::new(40, 40, 4)
            .with_sample_type(SampleType::U8)
            .slice(2);
        let v = s.samples::<u8>().unwrap();
        assert!(v.iter().max().unwrap() - v.iter().min().unwrap() > 80);
    }
}
