//! The physical size of a voxel, and where it was read from.
//!
//! A stack carries its voxel size in one of a few places, read in this order (the first that
//! gives one wins; [`crate::PyramidBuilder::with_voxel_size`] overrides them all):
//! 1. a scanner's reconstruction log beside the slices: Bruker SkyScan's `*.log` (NRecon),
//!    whose `[Reconstruction]` section gives `Pixel Size (um)=` (the reconstructed voxel,
//!    isotropic) and whose `[Acquisition]` section gives `Image Pixel Size (um)=` (used when
//!    the first is absent);
//! 2. ImageJ's `ImageDescription` (`ImageJ=...`, `unit=`, `spacing=` for z) with the TIFF
//!    resolution tags for x and y, in the unit the description names;
//! 3. the TIFF resolution tags alone (`XResolution`, `YResolution`, `ResolutionUnit` inch or
//!    centimetre); z is taken equal to x (CT slices are reconstructed isotropic). A
//!    resolution of exactly 72 pixels per inch (or unit "none") is every TIFF writer's default,
//!    not a measurement, and is ignored.
//!
//! Other scanners' logs (Nikon `.xtekct`, GE `.pca`, Zeiss) are not read yet: their keys and
//! units were not confirmed from their documentation.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a [`VoxelSize`] came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VoxelSource {
    /// The TIFF resolution tags (`XResolution`, `YResolution`, `ResolutionUnit`) of this file.
    TiffTags {
        /// The slice file read.
        file: PathBuf,
    },
    /// ImageJ's `ImageDescription` (`unit=`, `spacing=`) with the resolution tags of this file.
    ImageJ {
        /// The slice file read.
        file: PathBuf,
    },
    /// A scanner's log beside the slices.
    ScannerLog {
        /// The log file read.
        file: PathBuf,
        /// The scanner family whose format it is (`"Bruker SkyScan"`).
        scanner: &'static str,
        /// The key the size was read from (`"Pixel Size (um)"`).
        key: &'static str,
    },
    /// Given by the user ([`crate::PyramidBuilder::with_voxel_size`]).
    User,
}

impl std::fmt::Display for VoxelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VoxelSource::TiffTags { file } => write!(f, "TIFF resolution tags of {file:?}"),
            VoxelSource::ImageJ { file } => write!(f, "ImageJ description of {file:?}"),
            VoxelSource::ScannerLog { file, scanner, key } => {
                write!(f, "{scanner} log {file:?} ({key})")
            }
            VoxelSource::User => f.write_str("given by the user"),
        }
    }
}

/// The physical size of a level-0 voxel, in micrometres, and where it came from. Level `n`'s
/// voxel is `2^n` times larger on every axis ([`VoxelSize::at_level`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VoxelSize {
    /// Width of a voxel (along x, the columns), in micrometres.
    pub x: f64,
    /// Height of a voxel (along y, the rows), in micrometres.
    pub y: f64,
    /// Depth of a voxel (along z, from slice to slice), in micrometres.
    pub z: f64,
    /// Where it was read from.
    pub source: VoxelSource,
}

impl VoxelSize {
    /// A size given by the user, `[x, y, z]` in micrometres.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless every value is finite and above zero.
    pub fn user([x, y, z]: [f64; 3]) -> Result<VoxelSize> {
        VoxelSize::checked(x, y, z, VoxelSource::User).ok_or_else(|| {
            Error::invalid(
                "voxel size",
                format!("{x}, {y}, {z} µm: every value must be finite and above zero"),
            )
        })
    }

    fn checked(x: f64, y: f64, z: f64, source: VoxelSource) -> Option<VoxelSize> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        (ok(x) && ok(y) && ok(z)).then_some(VoxelSize { x, y, z, source })
    }

    /// The voxel of level `n`, `[x, y, z]` in micrometres: `2^n` times level 0's on every
    /// axis (a level-`n` voxel is the mean of a `2^n`-wide block of source voxels).
    pub fn at_level(&self, n: u32) -> [f64; 3] {
        let f = 2f64.powi(n as i32);
        [self.x * f, self.y * f, self.z * f]
    }
}

/// Reads the voxel size of the stack whose slices are `files` in `dir`: a scanner log in
/// `dir`, else the first slice's ImageJ description or TIFF resolution tags (see the module
/// docs). `None` when nothing gives one; a damaged log or tag is ignored, never an error: the
/// voxel size is information, not data.
pub(crate) fn detect(dir: &Path, first: &Path) -> Option<VoxelSize> {
    if let Some(v) = scanner_log(dir) {
        return Some(v);
    }
    tiff_voxel(first)
}

/// The largest log read (NRecon logs are a few KiB).
const MAX_LOG_BYTES: u64 = 1 << 20;

/// A Bruker SkyScan log in `dir`: the first `*.log` (in name order) with a usable size.
fn scanner_log(dir: &Path) -> Option<VoxelSize> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.')
                && name.to_ascii_lowercase().ends_with(".log")
                && e.metadata()
                    .is_ok_and(|m| m.is_file() && m.len() <= MAX_LOG_BYTES)
        })
        .map(|e| e.path())
        .collect();
    logs.sort();
    logs.into_iter().find_map(|path| {
        let text = std::fs::read(&path).ok()?;
        let text = String::from_utf8_lossy(&text);
        let (key, um) = skyscan_pixel_size(&text)?;
        VoxelSize::checked(
            um,
            um,
            um,
            VoxelSource::ScannerLog {
                file: path,
                scanner: "Bruker SkyScan",
                key,
            },
        )
    })
}

/// The voxel size in a SkyScan (NRecon) log: `Pixel Size (um)` of `[Reconstruction]`, else
/// `Image Pixel Size (um)` of `[Acquisition]`, with the key it came from.
pub(crate) fn skyscan_pixel_size(text: &str) -> Option<(&'static str, f64)> {
    let mut section = String::new();
    let (mut recon, mut acq) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        match (section.as_str(), key) {
            ("reconstruction", "Pixel Size (um)") => recon = recon.or_else(number),
            ("acquisition", "Image Pixel Size (um)") => acq = acq.or_else(number),
            _ => {}
        }
    }
    // The section names and keys are SkyScan's own: a log that has them is one, with or
    // without its [System] Scanner line.
    recon
        .map(|v| ("Pixel Size (um)", v))
        .or(acq.map(|v| ("Image Pixel Size (um)", v)))
}

/// Micrometres in one `unit` as ImageJ writes it (`micron`, `µm`, `um`, `nm`, `mm`, `cm`,
/// `m`, `inch`); `None` for anything else (`pixel`, a blank unit).
pub(crate) fn unit_in_um(unit: &str) -> Option<f64> {
    let u = unit.trim().to_ascii_lowercase();
    Some(match u.as_str() {
        "micron" | "microns" | "um" | "µm" | "μm" | "micrometer" | "micrometre" | "\\u00b5m" => {
            1.0
        }
        "nm" | "nanometer" | "nanometre" => 1e-3,
        "mm" | "millimeter" | "millimetre" => 1e3,
        "cm" | "centimeter" | "centimetre" => 1e4,
        "m" | "meter" | "metre" => 1e6,
        "inch" | "in" => 25_400.0,
        _ => return None,
    })
}

/// What the first TIFF page says about its pixel size.
#[derive(Debug, Default)]
pub(crate) struct TiffResolution {
    pub(crate) x_per_unit: Option<f64>,
    pub(crate) y_per_unit: Option<f64>,
    /// ResolutionUnit: 1 none, 2 inch, 3 centimetre (absent means inch).
    pub(crate) unit: Option<u16>,
    pub(crate) description: Option<String>,
}

/// The voxel size a TIFF file gives (ImageJ description first, then the resolution tags).
pub(crate) fn tiff_voxel(path: &Path) -> Option<VoxelSize> {
    let res = read_tiff_resolution(path)?;
    from_tiff_resolution(path, &res)
}

pub(crate) fn from_tiff_resolution(path: &Path, res: &TiffResolution) -> Option<VoxelSize> {
    let (xr, yr) = (res.x_per_unit?, res.y_per_unit.or(res.x_per_unit)?);
    if !(xr.is_finite() && yr.is_finite() && xr > 0.0 && yr > 0.0) {
        return None;
    }
    if let Some(desc) = res
        .description
        .as_deref()
        .filter(|d| d.starts_with("ImageJ="))
    {
        let field = |name: &str| {
            desc.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        if let Some(um) = field("unit").and_then(unit_in_um) {
            let (x, y) = (um / xr, um / yr);
            let z = field("spacing")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map_or(x, |s| s * um);
            return VoxelSize::checked(
                x,
                y,
                z,
                VoxelSource::ImageJ {
                    file: path.to_path_buf(),
                },
            );
        }
    }
    let per_unit_um = match res.unit.unwrap_or(2) {
        2 if xr == 72.0 && yr == 72.0 => return None,
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    let (x, y) = (per_unit_um / xr, per_unit_um / yr);
    VoxelSize::checked(
        x,
        y,
        x,
        VoxelSource::TiffTags {
            file: path.to_path_buf(),
        },
    )
}

/// Reads the resolution tags and description of the first page of a TIFF; `None` for a file
/// that is not a TIFF or cannot be read.
fn read_tiff_resolution(path: &Path) -> Option<TiffResolution> {
    use tiff::tags::Tag;
    let file = std::fs::File::open(path).ok()?;
    let mut dec = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).ok()?;
    let rational = |dec: &mut tiff::decoder::Decoder<_>, tag| -> Option<f64> {
        match dec.find_tag(tag).ok()?? {
            tiff::decoder::ifd::Value::Rational(n, d) if d != 0 => {
                Some(f64::from(n) / f64::from(d))
            }
            tiff::decoder::ifd::Value::List(v) => match v.first()? {
                tiff::decoder::ifd::Value::Rational(n, d) if *d != 0 => {
                    Some(f64::from(*n) / f64::from(*d))
                }
                _ => None,
            },
            _ => None,
        }
    };
    let x_per_unit = rational(&mut dec, Tag::XResolution);
    let y_per_unit = rational(&mut dec, Tag::YResolution);
    let unit = dec.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok()?;
    let description = dec
        .find_tag(Tag::ImageDescription)
        .ok()
        .flatten()
        .and_then(|v| v.into_string().ok());
    Some(TiffResolution {
        x_per_unit,
        y_per_unit,
        unit,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skyscan_prefers_the_reconstructed_size() {
        let log = "[System]\nScanner=SkyScan1272\n[Acquisition]\nImage Pixel Size (um)=4.500000\n\
                   [Reconstruction]\nPixel Size (um)=9.000000\n";
        assert_eq!(skyscan_pixel_size(log), Some(("Pixel Size (um)", 9.0)));
        let acq = "[Acquisition]\r\nImage Pixel Size (um)=4.500000\r\n";
        assert_eq!(
            skyscan_pixel_size(acq),
            Some(("Image Pixel Size (um)", 4.5))
        );
        assert_eq!(
            skyscan_pixel_size("[Acquisition]\nImage Pixel Size (um)=0\n"),
            None
        );
        assert_eq!(skyscan_pixel_size("notes"), None);
    }

    #[test]
    fn tags_in_inch_and_cm_and_the_72_dpi_default() {
        let p = Path::new("a.tif");
        let res = |x, unit| TiffResolution {
            x_per_unit: Some(x),
            y_per_unit: Some(x),
            unit,
            description: None,
        };
        let v = from_tiff_resolution(p, &res(2540.0, Some(2))).unwrap();
        assert!((v.x - 10.0).abs() < 1e-9 && (v.z - 10.0).abs() < 1e-9);
        let v = from_tiff_resolution(p, &res(1000.0, Some(3))).unwrap();
        assert!((v.y - 10.0).abs() < 1e-9);
        assert!(from_tiff_resolution(p, &res(72.0, Some(2))).is_none());
        assert!(from_tiff_resolution(p, &res(72.0, None)).is_none());
        assert!(from_tiff_resolution(p, &res(5.0, Some(1))).is_none());
    }

    #[test]
    fn imagej_description_gives_unit_and_spacing() {
        let res = TiffResolution {
            x_per_unit: Some(0.5),
            y_per_unit: Some(0.25),
            unit: Some(1),
            description: Some("ImageJ=1.54f\nimages=5\nunit=mm\nspacing=0.003\n".into()),
        };
        let v = from_tiff_resolution(Path::new("s.tif"), &res).unwrap();
        assert_eq!((v.x, v.y), (2000.0, 4000.0));
        assert!((v.z - 3.0).abs() < 1e-9);
        assert!(matches!(v.source, VoxelSource::ImageJ { .. }));
    }

    #[test]
    fn user_sizes_must_be_positive() {
        assert!(VoxelSize::user([1.0, 1.0, 2.0]).is_ok());
        for bad in [[0.0, 1.0, 1.0], [1.0, f64::NAN, 1.0], [1.0, 1.0, -2.0]] {
            assert!(VoxelSize::user(bad).is_err());
        }
        let v = VoxelSize::user([1.0, 2.0, 3.0]).unwrap();
        assert_eq!(v.at_level(2), [4.0, 8.0, 12.0]);
    }
}
