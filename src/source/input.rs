//! The reader slice files are decoded from.
//!
//! Small reads (headers, tags) are served from one 64-byte-aligned 128 KiB buffer. Large reads
//! (strips, tiles) go straight from the page cache into the caller's buffer when the kernel's
//! copy is fast there, and through the aligned buffer plus one `memcpy` otherwise. The kernel's
//! copy (`rep movsb`) depends on the destination's alignment relative to the file offset: on a
//! 2-core AMD EPYC VM, reading 2 GiB of warm page cache in 1 MiB pieces took 0.12-0.15 s when the
//! destination was 32-byte aligned or lined up with the file offset modulo 64, and 0.4-0.57 s
//! with the 8- or 16-byte misalignment that `malloc` gives large buffers; through the aligned
//! buffer it took 0.28 s whatever the alignment.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// Bytes per refill: fits L2 with room to spare.
pub(crate) const CHUNK: usize = 128 << 10;
const ALIGN: usize = 64;

/// A buffered, seekable file reader with a cache-line-aligned buffer.
#[derive(Debug)]
pub(crate) struct Input {
    file: File,
    /// Backing store; the usable buffer is `len` bytes from `start`.
    store: Vec<u64>,
    start: usize,
    len: usize,
    pos: usize,
    filled: usize,
    /// File offset of the end of the buffered bytes.
    file_pos: u64,
    /// Bytes shown in place of the file's at an offset (see [`Input::set_patch`]).
    patch: Option<Patch>,
}

/// Bytes shown in place of the file's: `len` bytes of `bytes` at file offset `at`.
#[derive(Debug, Clone, Copy)]
struct Patch {
    at: u64,
    bytes: [u8; 8],
    len: usize,
}

impl Patch {
    /// Overwrites the part of `buf` (the file's bytes from offset `start`) the patch covers.
    fn apply(&self, buf: &mut [u8], start: u64) {
        let end = start + buf.len() as u64;
        let (from, to) = (self.at.max(start), (self.at + self.len as u64).min(end));
        for off in from..to {
            buf[(off - start) as usize] = self.bytes[(off - self.at) as usize];
        }
    }
}

impl Input {
    pub(crate) fn new(file: File) -> Input {
        Input::with_buffer(file, CHUNK)
    }

    /// An input whose buffer is `len` bytes (a multiple of 64): small when only a header is
    /// read through it.
    pub(crate) fn with_buffer(file: File, len: usize) -> Input {
        let store = vec![0u64; (len + ALIGN) / 8];
        let bytes: &[u8] = bytemuck::cast_slice(&store);
        let start = bytes.as_ptr().align_offset(ALIGN).min(ALIGN);
        Input {
            file,
            store,
            start,
            len,
            pos: 0,
            filled: 0,
            file_pos: 0,
            patch: None,
        }
    }

    /// Shows `bytes` (at most 8) in place of the file's bytes at offset `at`, in what is
    /// buffered now and in every later read: how one page of a multi-page TIFF is read as if
    /// it were the file's first (its directory offset put in the header).
    pub(crate) fn set_patch(&mut self, at: u64, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let len = bytes.len().min(8);
        b[..len].copy_from_slice(&bytes[..len]);
        let patch = Patch { at, bytes: b, len };
        let start = self.file_pos - self.filled as u64;
        let filled = self.filled;
        patch.apply(&mut self.buffer()[..filled], start);
        self.patch = Some(patch);
    }

    /// The file read from.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    fn buffer(&mut self) -> &mut [u8] {
        let (start, len) = (self.start, self.len);
        &mut bytemuck::cast_slice_mut(&mut self.store)[start..start + len]
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            let file = &mut self.file;
            let (start, len) = (self.start, self.len);
            let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.store)[start..start + len];
            let n = file.read(buf)?;
            if let Some(p) = self.patch {
                p.apply(&mut buf[..n], self.file_pos);
            }
            self.pos = 0;
            self.filled = n;
            self.file_pos += n as u64;
        }
        let (pos, filled) = (self.pos, self.filled);
        Ok(&self.buffer()[pos..filled])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.filled);
    }
}

impl Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // A large read whose destination lines up with the file offset goes straight from the
        // page cache into `out`: the kernel's copy is fast there (see the module docs).
        // A misaligned destination first gets the few bytes up to its next 64-byte boundary,
        // so that the next call (from `read_exact`) reads the rest straight in.
        if self.pos == self.filled && out.len() >= self.len {
            let addr = out.as_ptr() as usize;
            let lined_up = addr
                .wrapping_sub(self.file_pos as usize)
                .is_multiple_of(ALIGN);
            let len = if lined_up || addr.is_multiple_of(ALIGN) {
                out.len()
            } else {
                addr.next_multiple_of(ALIGN) - addr
            };
            let n = self.file.read(&mut out[..len])?;
            if let Some(p) = self.patch {
                p.apply(&mut out[..n], self.file_pos);
            }
            self.file_pos += n as u64;
            self.pos = 0;
            self.filled = 0;
            return Ok(n);
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Seek for Input {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let buffered_start = self.file_pos - self.filled as u64;
        let here = buffered_start + self.pos as u64;
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        // Within what is buffered: just move the cursor.
        if let Some(t) = target
            && t >= buffered_start
            && t <= self.file_pos
        {
            self.pos = (t - buffered_start) as usize;
            return Ok(t);
        }
        let absolute = match (to, target) {
            (SeekFrom::End(_), _) => to,
            (_, Some(t)) => SeekFrom::Start(t),
            (_, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "seek to a negative or overflowing position",
                ));
            }
        };
        let p = self.file.seek(absolute)?;
        self.pos = 0;
        self.filled = 0;
        self.file_pos = p;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_and_seeks_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 3 + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let mut r = Input::new(File::open(&path).unwrap());
        let mut head = [0u8; 10];
        r.read_exact(&mut head).unwrap();
        assert_eq!(&head, &data[..10]);
        let mut big = vec![0u8; CHUNK * 2 + 50];
        r.seek(SeekFrom::Start(100)).unwrap();
        r.read_exact(&mut big).unwrap();
        assert_eq!(&big[..], &data[100..100 + big.len()]);
        r.seek(SeekFrom::Current(-20)).unwrap();
        r.read_exact(&mut head).unwrap();
        assert_eq!(&head, &data[80 + big.len()..90 + big.len()]);
        assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), data.len() as u64 - 3);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[data.len() - 3..]);
        assert!(r.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
        assert_eq!(r.stream_position().unwrap(), data.len() as u64);
    }
}
