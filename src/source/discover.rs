//! Which files of a folder form the stack.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::FileType;
use std::ops::RangeInclusive;
use std::path::Path;

use super::{SourceFile, StackPattern};
use crate::error::{Error, Result};

/// Extensions read as slices (compared without case).
pub(crate) const EXTENSIONS: [&str; 6] = ["tif", "tiff", "bmp", "png", "jpg", "jpeg"];

/// What discovery found.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) prefix: String,
    pub(super) extension: String,
    pub(super) files: Vec<SourceFile>,
    pub(super) gaps: Vec<RangeInclusive<u64>>,
}

/// A file name split as `<prefix><digits>.<ext>`: the prefix as the name's bytes (it may not
/// be UTF-8), digits and extension as ASCII.
#[derive(Debug, PartialEq)]
struct Parsed<'a> {
    prefix: &'a [u8],
    digits: &'a str,
    ext: &'a str,
}

/// Splits `name` as `<prefix><digits>.<ext>` where ext is an image extension; `None` otherwise.
fn parse(name: &[u8]) -> Option<Parsed<'_>> {
    if name.starts_with(b".") {
        return None;
    }
    let dot = name.iter().rposition(|&b| b == b'.')?;
    let (stem, ext) = (&name[..dot], std::str::from_utf8(&name[dot + 1..]).ok()?);
    if !EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
        return None;
    }
    let digits_len = stem.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits_len == 0 {
        return None;
    }
    let (prefix, digits) = stem.split_at(stem.len() - digits_len);
    Some(Parsed {
        prefix,
        digits: std::str::from_utf8(digits).ok()?,
        ext,
    })
}

/// The numeric value of a run of ASCII digits; `None` past u64 (such names are not slices).
fn value(digits: &str) -> Option<u64> {
    digits.parse().ok()
}

struct Candidate {
    name: OsString,
    prefix: Vec<u8>,
    ext: String,
    digits_len: usize,
    index: u64,
    /// Why the entry cannot be read as a slice (`"is a folder"`, ...); `None` for a regular
    /// file or a link to one.
    bad: Option<String>,
}

/// What kind of entry a file type is, for messages: "a folder", "a FIFO (named pipe)", ...
pub(super) fn kind(t: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Why the entry at `path` of type `t` cannot be read as a slice; `None` when it can (a
/// regular file, or a link that leads to one).
fn problem(path: &Path, t: std::io::Result<FileType>) -> Option<String> {
    match t {
        Ok(t) if t.is_file() => None,
        Ok(t) if t.is_symlink() => match std::fs::metadata(path) {
            Ok(m) if m.is_file() => None,
            Ok(m) => Some(format!("is a link to {}", kind(&m.file_type()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("is a dangling link (its target does not exist)".to_string())
            }
            Err(e) => Some(format!("is a link that cannot be followed ({e})")),
        },
        Ok(t) => Some(format!("is {}", kind(&t))),
        Err(e) => Some(format!("cannot be examined ({e})")),
    }
}

/// Lists the slice-like entries of `dir` (not hidden; with what is wrong with those that are
/// not regular files or links to one) and counts the others.
fn candidates(dir: &Path) -> Result<(Vec<Candidate>, usize)> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(Error::StackNotFound {
                path: dir.to_path_buf(),
            });
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut found = Vec::new();
    let mut others = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(parsed) = parse(name.as_encoded_bytes()) else {
            others += 1;
            continue;
        };
        let Some(index) = value(parsed.digits) else {
            others += 1;
            continue;
        };
        // Only now ask what it is (names that are not slices cost no system call).
        let bad = problem(&entry.path(), entry.file_type());
        found.push(Candidate {
            prefix: parsed.prefix.to_vec(),
            ext: parsed.ext.to_string(),
            digits_len: parsed.digits.len(),
            index,
            bad,
            name,
        });
    }
    Ok((found, others))
}

fn looked_for(others: usize) -> String {
    format!(
        "files named <prefix><digits>.<ext> with ext one of {} (any letter case), not hidden; \
         {others} other entr{} ignored",
        EXTENSIONS.join(", "),
        if others == 1 { "y was" } else { "ies were" }
    )
}

/// Sorts by index, refuses entries that are not regular files and duplicates, and lists the
/// gaps within `bounds` (or between the first and last file found).
fn finish(
    dir: &Path,
    mut chosen: Vec<Candidate>,
    bounds: Option<RangeInclusive<u64>>,
) -> Result<Found> {
    chosen.sort_by(|a, b| a.index.cmp(&b.index).then_with(|| a.name.cmp(&b.name)));
    if let Some(c) = chosen.iter().find(|c| c.bad.is_some()) {
        return Err(Error::BadSliceEntry {
            path: dir.join(&c.name),
            problem: c.bad.clone().unwrap_or_default(),
        });
    }
    for pair in chosen.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(Error::DuplicateIndex {
                index: pair[0].index,
                first: dir.join(&pair[0].name),
                second: dir.join(&pair[1].name),
            });
        }
    }
    if chosen.len() > u32::MAX as usize {
        return Err(Error::invalid(
            "stack",
            format!("{} slices, more than {}", chosen.len(), u32::MAX),
        ));
    }
    let (lo, hi) = match &bounds {
        Some(b) => (*b.start(), *b.end()),
        None => (chosen[0].index, chosen[chosen.len() - 1].index),
    };
    let mut gaps = Vec::new();
    let mut expect = lo;
    for c in &chosen {
        if c.index > expect {
            gaps.push(expect..=c.index - 1);
        }
        expect = c.index.saturating_add(1);
    }
    if expect <= hi && chosen[chosen.len() - 1].index < hi {
        gaps.push(expect..=hi);
    }
    let prefix = String::from_utf8_lossy(&chosen[0].prefix).into_owned();
    let extension = chosen[0].ext.clone();
    let files = chosen
        .into_iter()
        .map(|c| SourceFile {
            path: dir.join(&c.name),
            index: c.index,
            page: None,
        })
        .collect();
    Ok(Found {
        prefix,
        extension,
        files,
        gaps,
    })
}

/// Detects the stack: the most common (prefix, extension) pair among regular files.
pub(super) fn detect(dir: &Path) -> Result<Found> {
    let (all, others) = candidates(dir)?;
    // Count per (prefix, lower-case extension); BTreeMap order breaks ties deterministically.
    let mut counts: BTreeMap<(&[u8], String), usize> = BTreeMap::new();
    for c in all.iter().filter(|c| c.bad.is_none()) {
        *counts
            .entry((c.prefix.as_slice(), c.ext.to_ascii_lowercase()))
            .or_default() += 1;
    }
    let mut best: Option<((&[u8], String), usize)> = None;
    for (key, n) in counts {
        if best.as_ref().is_none_or(|(_, m)| n > *m) {
            best = Some((key, n));
        }
    }
    let Some(((prefix, ext), _)) = best else {
        // Entries named like slices that are not regular files are not slices either.
        return Err(Error::NoImages {
            dir: dir.to_path_buf(),
            looked_for: looked_for(others + all.len()),
        });
    };
    let (prefix, ext) = (prefix.to_vec(), ext);
    let chosen: Vec<Candidate> = all
        .into_iter()
        .filter(|c| c.prefix == prefix && c.ext.eq_ignore_ascii_case(&ext))
        .collect();
    if std::str::from_utf8(&prefix).is_err() {
        // Refused rather than read: names reach manifests, exports and messages as text.
        let first = chosen
            .iter()
            .min_by_key(|c| c.index)
            .map(|c| dir.join(&c.name));
        return Err(Error::BadSliceEntry {
            path: first.unwrap_or_else(|| dir.to_path_buf()),
            problem: "its name is not valid UTF-8 (lodcache reads slices with UTF-8 names \
                      only: rename the files of this stack)"
                .to_string(),
        });
    }
    finish(dir, chosen, None)
}

/// The files of `dir` matching an explicit pattern.
pub(super) fn with_pattern(dir: &Path, pattern: &StackPattern) -> Result<Found> {
    let ext = pattern.extension.trim_start_matches('.');
    if pattern.indices.start() > pattern.indices.end() {
        return Err(Error::invalid(
            "stack pattern",
            format!(
                "first index {} is after last index {}",
                pattern.indices.start(),
                pattern.indices.end()
            ),
        ));
    }
    let (all, others) = candidates(dir)?;
    let chosen: Vec<Candidate> = all
        .into_iter()
        .filter(|c| {
            c.prefix == pattern.prefix.as_bytes()
                && c.ext.eq_ignore_ascii_case(ext)
                && pattern.indices.contains(&c.index)
                && pattern.index_width.is_none_or(|w| w == c.digits_len)
        })
        .collect();
    if chosen.is_empty() {
        let width = pattern
            .index_width
            .map_or_else(|| "any number of".to_string(), |w| format!("exactly {w}"));
        return Err(Error::NoImages {
            dir: dir.to_path_buf(),
            looked_for: format!(
                "files named {:?} with index in {}..={} written with {width} digits ({} \
                 entries did not fit the pattern or any image name)",
                format!("{}<index>.{ext}", pattern.prefix),
                pattern.indices.start(),
                pattern.indices.end(),
                others
            ),
        });
    }
    finish(dir, chosen, Some(pattern.indices.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_prefix_digits_and_extension() {
        assert_eq!(
            parse(b"scan_0012.TIF"),
            Some(Parsed {
                prefix: b"scan_",
                digits: "0012",
                ext: "TIF"
            })
        );
        assert_eq!(parse(b"0007.png").map(|p| p.prefix), Some(&b""[..]));
        assert_eq!(parse(b"a1b22.jpeg").map(|p| p.digits), Some("22"));
        assert_eq!(parse(b"scan_spr.bmp"), None);
        assert_eq!(parse(b"scan0001_spr.bmp"), None);
        assert_eq!(parse(b"Thumbs.db"), None);
        assert_eq!(parse(b".scan0001.tif"), None);
        assert_eq!(parse(b"scan0001.tif.log"), None);
        assert_eq!(parse(b"notes.txt"), None);
        assert_eq!(parse(b"scan0001"), None);
        assert_eq!(value("99999999999999999999999"), None);
        // A prefix that is not UTF-8 is still split off (and refused later, by name).
        assert_eq!(
            parse(b"scan\xe90003.tif").map(|p| p.prefix),
            Some(&b"scan\xe9"[..])
        );
        assert_eq!(
            parse("sc\u{e9}n_0004.png".as_bytes()).map(|p| p.digits),
            Some("0004")
        );
    }
}
