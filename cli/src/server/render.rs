//! Turning samples into responses: the query's contrast window, windowed 8-bit PNGs through a
//! lookup table, tiles cut from a slice, little-endian raw samples, and the histogram.

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use lodcache::{Pixels, Slice};
use serde_json::{Value, json};

use super::app::Fail;

/// Tiles are this many pixels square (edge tiles are cut to the level's size).
pub(crate) const TILE: u32 = 512;

/// What an image request's query asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ImageQuery {
    /// The contrast window, lowest and highest sample shown.
    pub(crate) window: (f64, f64),
    /// A coarse-first preview: not counted as demand.
    pub(crate) preview: bool,
}

/// A query key or value with its `%XX` escapes (and `+` for space) decoded.
fn decode(part: &str) -> Result<String, Fail> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Fail::new(400, format!("{part:?} is not UTF-8 once decoded")))
}

/// Parses `min=&max=&preview=` (`window` says whether min and max are allowed); refuses
/// unknown keys, non-numbers, NaN and empty or reversed windows.
pub(crate) fn image_query(
    query: &str,
    default: (f64, f64),
    window: bool,
) -> Result<ImageQuery, Fail> {
    let (mut lo, mut hi) = default;
    let mut preview = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        let (k, v) = (k.as_str(), v.as_str());
        let parse = |v: &str| -> Result<f64, Fail> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && x.abs() < 1e12)
                .ok_or_else(|| Fail::new(400, format!("{k}={v:?} is not a finite number")))
        };
        match k {
            "min" if window => lo = parse(v)?,
            "max" if window => hi = parse(v)?,
            "preview" => {
                preview = match v {
                    "" | "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(Fail::new(400, format!("preview={v:?}: use 1 or 0"))),
                }
            }
            _ => {
                let known = if window {
                    "min, max and preview"
                } else {
                    "preview"
                };
                return Err(Fail::new(
                    400,
                    format!("unknown parameter {k:?}; use {known}"),
                ));
            }
        }
    }
    if hi <= lo {
        return Err(Fail::new(
            400,
            format!("window min {lo} must be below max {hi}"),
        ));
    }
    Ok(ImageQuery {
        window: (lo, hi),
        preview,
    })
}

/// The value range of a slice's samples (a constant slice gets a window one wide).
pub(crate) fn range(pixels: &Pixels) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    each_value(pixels, |v| {
        lo = lo.min(v);
        hi = hi.max(v);
    });
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi.max(lo + 1.0))
    }
}

/// Calls `f` with every finite sample.
fn each_value(pixels: &Pixels, mut f: impl FnMut(f64)) {
    match pixels {
        Pixels::U8(v) => v.iter().for_each(|&x| f(f64::from(x))),
        Pixels::U16(v) => v.iter().for_each(|&x| f(f64::from(x))),
        Pixels::F32(v) => v
            .iter()
            .filter(|x| x.is_finite())
            .for_each(|&x| f(f64::from(x))),
        _ => {}
    }
}

/// The `w` x `h` rectangle at (`x`, `y`) of `slice` (inside it: the caller checked); the
/// slice itself, not a copy, when that is the whole of it.
pub(crate) fn crop(
    slice: &Slice,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
) -> Result<std::borrow::Cow<'_, Slice>, Fail> {
    if x == 0 && y == 0 && w == slice.width() && h == slice.height() {
        return Ok(std::borrow::Cow::Borrowed(slice));
    }
    let sw = slice.width() as usize;
    let rows = |x0: usize, f: &mut dyn FnMut(usize)| {
        for r in 0..h as usize {
            f((y as usize + r) * sw + x0);
        }
    };
    let (x0, wu) = (x as usize, w as usize);
    let pixels = match slice.pixels() {
        Pixels::U8(v) => {
            let mut out = Vec::with_capacity(wu * h as usize);
            rows(x0, &mut |at| out.extend_from_slice(&v[at..at + wu]));
            Pixels::U8(out)
        }
        Pixels::U16(v) => {
            let mut out = Vec::with_capacity(wu * h as usize);
            rows(x0, &mut |at| out.extend_from_slice(&v[at..at + wu]));
            Pixels::U16(out)
        }
        Pixels::F32(v) => {
            let mut out = Vec::with_capacity(wu * h as usize);
            rows(x0, &mut |at| out.extend_from_slice(&v[at..at + wu]));
            Pixels::F32(out)
        }
        _ => return Err(Fail::new(500, "unknown sample type")),
    };
    Slice::new(w, h, pixels)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| Fail::new(500, e.to_string()))
}

/// Lookup tables of 16-bit samples to 8-bit gray, for the most recent windows (building one
/// costs as much as mapping a 256 x 256 image, and nearly every request uses the same window).
#[derive(Debug, Default)]
pub(crate) struct Luts(std::sync::Mutex<Vec<(WindowBits, std::sync::Arc<[u8]>)>>);

/// A window's bounds as bits (a key).
type WindowBits = (u64, u64);

/// Windows whose tables are kept.
const LUTS: usize = 8;

impl Luts {
    /// The table of every 16-bit value for `window`, built once.
    fn u16_table(&self, window: (f64, f64)) -> std::sync::Arc<[u8]> {
        let key = (window.0.to_bits(), window.1.to_bits());
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = kept.iter().position(|(k, _)| *k == key) {
            let entry = kept.remove(i);
            let table = std::sync::Arc::clone(&entry.1);
            kept.push(entry);
            return table;
        }
        let map = mapping(window);
        let table: std::sync::Arc<[u8]> = (0..65536).map(|v| map(f64::from(v))).collect();
        if kept.len() == LUTS {
            kept.remove(0);
        }
        kept.push((key, std::sync::Arc::clone(&table)));
        table
    }
}

/// Sample to gray for `window`: `min` to 0, `max` to 255, rounded half up, clamped.
fn mapping((lo, hi): (f64, f64)) -> impl Fn(f64) -> u8 {
    let scale = 255.0 / (hi - lo);
    // Round half up by adding 0.5 before truncating (f64::round costs more than the rest).
    move |v: f64| ((v - lo) * scale + 0.5).clamp(0.0, 255.0) as u8
}

/// The slice windowed to 8-bit gray and encoded as PNG.
pub(crate) fn png(slice: &Slice, window: (f64, f64), luts: &Luts) -> Result<Vec<u8>, Fail> {
    let map = mapping(window);
    let gray: Vec<u8> = match slice.pixels() {
        Pixels::U8(v) => {
            let lut: Vec<u8> = (0..256).map(|x| map(f64::from(x))).collect();
            v.iter().map(|&x| lut[usize::from(x)]).collect()
        }
        Pixels::U16(v) => {
            let lut = luts.u16_table(window);
            v.iter().map(|&x| lut[usize::from(x)]).collect()
        }
        Pixels::F32(v) => v.iter().map(|&x| map(f64::from(x))).collect(),
        _ => return Err(Fail::new(500, "unknown sample type")),
    };
    let mut out = Vec::with_capacity(gray.len() / 2);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(
            &gray,
            slice.width(),
            slice.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| Fail::new(500, format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// The samples as little-endian bytes.
pub(crate) fn raw(slice: &Slice) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        // Native order is little-endian already.
        return slice.pixels().as_bytes().to_vec();
    }
    match slice.pixels() {
        Pixels::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Pixels::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => other.as_bytes().to_vec(),
    }
}

/// Bins of the histogram.
const BINS: usize = 256;

/// A histogram of `pixels` (`BINS` bins from the lowest to the highest sample) with the 0.5 and
/// 99.5 percentiles (an automatic contrast window that ignores outliers), as JSON.
pub(crate) fn histogram(pixels: &Pixels) -> Value {
    let (lo, hi) = range(pixels);
    let width = (hi - lo) / BINS as f64;
    let mut bins = vec![0u64; BINS];
    let mut count = 0u64;
    each_value(pixels, |v| {
        let b = (((v - lo) / width) as usize).min(BINS - 1);
        bins[b] += 1;
        count += 1;
    });
    // The percentile's value: the lower edge of the bin where the running count reaches it,
    // refined linearly inside the bin.
    let percentile = |p: f64| -> f64 {
        let want = p / 100.0 * count as f64;
        let mut seen = 0.0;
        for (i, &n) in bins.iter().enumerate() {
            let n = n as f64;
            if n > 0.0 && seen + n >= want {
                let inside = ((want - seen) / n).clamp(0.0, 1.0);
                return lo + (i as f64 + inside) * width;
            }
            seen += n;
        }
        hi
    };
    let (p_lo, p_hi) = (percentile(0.5), percentile(99.5));
    let (p_lo, p_hi) = if p_hi > p_lo { (p_lo, p_hi) } else { (lo, hi) };
    json!({
        "min": lo,
        "max": hi,
        "bin_width": width,
        "bins": bins,
        "count": count,
        "p0_5": p_lo,
        "p99_5": p_hi,
        "window": [p_lo.floor(), p_hi.ceil()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_ignore_the_outliers() {
        // 1000 samples 100..=1099 and two outliers at 0 and 60000.
        let mut v: Vec<u16> = (100..1100).collect();
        v.extend([0, 60000]);
        let h = histogram(&Pixels::U16(v));
        assert_eq!(h["min"], 0.0);
        assert_eq!(h["max"], 60000.0);
        let (lo, hi) = (h["p0_5"].as_f64().unwrap(), h["p99_5"].as_f64().unwrap());
        // Bins are 234 wide here: the percentiles fall in the bins of 100 and 1099.
        assert!((0.0..=350.0).contains(&lo), "{h}");
        assert!((900.0..=1300.0).contains(&hi), "{h}");
        assert_eq!(h["count"], 1002);
    }

    #[test]
    fn tiles_are_the_rectangle_of_the_slice() {
        let s = Slice::new(4, 3, Pixels::U16((0..12).collect())).unwrap();
        let c = crop(&s, 1, 1, 2, 2).unwrap();
        assert_eq!(c.samples::<u16>().unwrap(), &[5, 6, 9, 10]);
    }

    #[test]
    fn queries_are_decoded_and_checked() {
        let q = image_query("%6Din=%2B%31e2&max=2%30%30%30&preview=1", (0.0, 1.0), true).unwrap();
        assert_eq!(q.window, (100.0, 2000.0));
        assert!(q.preview);
        assert!(image_query("min=5&max=5", (0.0, 1.0), true).is_err());
        assert!(image_query("min=1", (0.0, 9.0), false).is_err());
        assert!(image_query("gamma=2", (0.0, 9.0), true).is_err());
    }
}
