//! JPEG structure: the frame header, read before anything is allocated, and the walk over the
//! whole file that tells a complete file from a cut one.
//!
//! A JPEG is a sequence of marker segments (`FF xx`, most with a 16-bit length); each
//! start-of-scan (SOS) segment is followed by entropy-coded data in which a `FF` byte is
//! always followed by `00` (a stuffed byte) or a restart marker `D0`..`D7`, so the data ends at
//! the first other marker. The image ends at the end-of-image marker `FF D9` (EOI).
//!
//! A file cut anywhere before its EOI lacks it: the walk (marker to marker, over each scan's
//! data) then runs off the end and the file is refused. A strict prefix can only pass when the
//! walk meets an EOI inside it, which is where the whole file's image ends too (the walk reads
//! the same bytes), so it decodes to the same pixels. Bytes after the EOI (camera trailers,
//! padding) are ignored: no pixel is made from them.

use std::io::BufRead;

/// What the frame header (SOFn) and the first scan header say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) width: u32,
    pub(super) height: u32,
    /// Components of the frame (1 gray, 3 colour, 4 CMYK/YCCK).
    pub(super) components: u32,
    /// Largest horizontal and vertical sampling factors.
    pub(super) max_h: u32,
    pub(super) max_v: u32,
    /// Progressive (SOF2, SOF6, SOF10, SOF14).
    pub(super) progressive: bool,
    /// Components in the first scan: fewer than the frame's means the decoder keeps the whole
    /// image's coefficients until the last scan.
    pub(super) first_scan_components: u32,
}

impl Frame {
    /// Bytes the decoder holds besides the file and its output: coefficient buffers of the
    /// whole image (2 bytes a sample, every component at full resolution, padded to whole
    /// MCUs) when it must keep them across scans, else a band of rows of every component.
    pub(super) fn working_bytes(&self) -> u64 {
        let mcu_w = 8 * u64::from(self.max_h.max(1));
        let mcu_h = 8 * u64::from(self.max_v.max(1));
        let padded_w = u64::from(self.width).div_ceil(mcu_w) * mcu_w;
        let padded_h = u64::from(self.height).div_ceil(mcu_h) * mcu_h;
        let comps = u64::from(self.components);
        if self.progressive || self.first_scan_components < self.components {
            2 * padded_w * padded_h * comps
        } else {
            // One MCU row of i16 coefficients and samples per component, a few times over
            // (coefficients, rows, upsampled rows).
            16 * padded_w * mcu_h * comps
        }
    }
}

/// Reads one byte.
fn byte(r: &mut impl BufRead) -> std::io::Result<Option<u8>> {
    let buf = r.fill_buf()?;
    let Some(&b) = buf.first() else {
        return Ok(None);
    };
    r.consume(1);
    Ok(Some(b))
}

/// Reads `out.len()` bytes; `false` when the file ends first.
fn bytes(r: &mut impl BufRead, out: &mut [u8]) -> std::io::Result<bool> {
    let mut done = 0;
    while done < out.len() {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let n = buf.len().min(out.len() - done);
        out[done..done + n].copy_from_slice(&buf[..n]);
        r.consume(n);
        done += n;
    }
    Ok(true)
}

/// Skips `n` bytes; `false` when the file ends first.
fn skip(r: &mut impl BufRead, mut n: usize) -> std::io::Result<bool> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let k = buf.len().min(n);
        r.consume(k);
        n -= k;
    }
    Ok(true)
}

/// Why a JPEG header could not be read.
#[derive(Debug)]
pub(super) enum HeaderError {
    Io(std::io::Error),
    /// The file is not a well-formed JPEG (or cut inside its headers).
    Format(String),
}

impl From<std::io::Error> for HeaderError {
    fn from(e: std::io::Error) -> Self {
        HeaderError::Io(e)
    }
}

fn format(why: impl Into<String>) -> HeaderError {
    HeaderError::Format(why.into())
}

/// Whether `m` starts a frame (SOF0..SOF15 less DHT, JPG and DAC).
fn is_sof(m: u8) -> bool {
    (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC)
}

/// Reads the markers from the start of the file to the first scan header, without reading
/// the scan data or keeping any segment.
pub(super) fn read_frame(r: &mut impl BufRead) -> Result<Frame, HeaderError> {
    let cut = || format("truncated: the file ends inside its headers");
    let mut soi = [0u8; 2];
    if !bytes(r, &mut soi)? || soi != [0xFF, 0xD8] {
        return Err(format("no start-of-image marker"));
    }
    let mut frame: Option<Frame> = None;
    loop {
        let Some(b) = byte(r)? else { return Err(cut()) };
        if b != 0xFF {
            return Err(format(format!(
                "corrupt headers: byte {b:#04x} where a marker was expected"
            )));
        }
        let mut m = 0xFF;
        while m == 0xFF {
            let Some(next) = byte(r)? else {
                return Err(cut());
            };
            m = next;
        }
        match m {
            0x01 | 0xD0..=0xD7 | 0xD8 => continue,
            0xD9 => return Err(format("end-of-image marker before any scan")),
            _ => {}
        }
        let mut len = [0u8; 2];
        if !bytes(r, &mut len)? {
            return Err(cut());
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len < 2 {
            return Err(format(format!("marker segment of length {len}")));
        }
        let body = len - 2;
        if is_sof(m) {
            let mut head = [0u8; 6];
            if body < 6 || !bytes(r, &mut head)? {
                return Err(cut());
            }
            let height = u32::from(u16::from_be_bytes([head[1], head[2]]));
            let width = u32::from(u16::from_be_bytes([head[3], head[4]]));
            let components = u32::from(head[5]);
            if body < 6 + 3 * head[5] as usize {
                return Err(format("frame header shorter than its components"));
            }
            let (mut max_h, mut max_v) = (1, 1);
            for _ in 0..components {
                let mut c = [0u8; 3];
                if !bytes(r, &mut c)? {
                    return Err(cut());
                }
                max_h = max_h.max(u32::from(c[1] >> 4));
                max_v = max_v.max(u32::from(c[1] & 15));
            }
            if !skip(r, body - 6 - 3 * head[5] as usize)? {
                return Err(cut());
            }
            frame = Some(Frame {
                width,
                height,
                components,
                max_h,
                max_v,
                progressive: matches!(m, 0xC2 | 0xC6 | 0xCA | 0xCE),
                first_scan_components: components,
            });
        } else if m == 0xDA {
            let Some(mut f) = frame else {
                return Err(format("scan before any frame header"));
            };
            let Some(n) = byte(r)? else { return Err(cut()) };
            f.first_scan_components = u32::from(n);
            return Ok(f);
        } else if !skip(r, body)? {
            return Err(cut());
        }
    }
}

/// Checks that `data` holds a whole JPEG: its markers and scans, walked from the start, reach
/// an end-of-image marker (module docs). The error says where the file ends or what is
/// wrong.
pub(super) fn check_complete(data: &[u8]) -> Result<(), String> {
    let len = data.len();
    let cut = |inside: &str| {
        format!(
            "truncated: the file ends after {len} bytes, inside {inside}, with no end-of-image \
             marker"
        )
    };
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("no start-of-image marker".to_string());
    }
    let mut i = 2;
    loop {
        let Some(&b) = data.get(i) else {
            return Err(cut("its marker segments"));
        };
        if b != 0xFF {
            return Err(format!(
                "corrupt: byte {b:#04x} at offset {i} where a marker was expected"
            ));
        }
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&m) = data.get(i) else {
            return Err(cut("its marker segments"));
        };
        i += 1;
        match m {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(seg) = data.get(i..i + 2) else {
            return Err(cut("a marker segment"));
        };
        let seg_len = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
        if seg_len < 2 {
            return Err(format!("corrupt: marker segment of length {seg_len}"));
        }
        i += seg_len;
        if i > len {
            return Err(cut("a marker segment"));
        }
        if m == 0xDA {
            // The scan's data runs to the first marker other than a stuffed byte or a restart.
            loop {
                let Some(at) = data[i..].iter().position(|&b| b == 0xFF) else {
                    return Err(cut("scan data"));
                };
                i += at;
                match data.get(i + 1) {
                    None => return Err(cut("scan data")),
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a frame header for 16 x 8 gray, a scan header, `scan` and EOI.
    fn tiny(scan: &[u8]) -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8];
        f.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 16, 1, 1, 0x11, 0]);
        f.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
        f.extend_from_slice(scan);
        f.extend_from_slice(&[0xFF, 0xD9]);
        f
    }

    #[test]
    fn a_whole_file_passes_and_every_strict_prefix_fails() {
        let file = tiny(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        assert_eq!(check_complete(&file), Ok(()));
        for cut in 0..file.len() {
            assert!(check_complete(&file[..cut]).is_err(), "cut at {cut}");
        }
        // Bytes after the end-of-image marker are not part of the image.
        let mut trailer = file.clone();
        trailer.extend_from_slice(b"\0\0garbage");
        assert_eq!(check_complete(&trailer), Ok(()));
    }

    #[test]
    fn the_frame_is_read_up_to_the_first_scan() {
        let file = tiny(&[1, 2, 3]);
        let f = read_frame(&mut &file[..]).unwrap();
        assert_eq!(
            f,
            Frame {
                width: 16,
                height: 8,
                components: 1,
                max_h: 1,
                max_v: 1,
                progressive: false,
                first_scan_components: 1
            }
        );
        for cut in 0..20 {
            assert!(read_frame(&mut &file[..cut]).is_err(), "cut at {cut}");
        }
    }
}
