//! Which files of a folder form the stack.

use std::collections::BTreeMap;
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

/// A file name split as `<prefix><digits>.<ext>`.
#[derive(Debug, PartialEq)]
struct Parsed<'a> {
    prefix: &'a str,
    digits: &'a str,
    ext: &'a str,
}

/// Splits `name` as `<prefix><digits>.<ext>` where ext is an image extension; `None` otherwise.
fn parse(name: &str) -> Option<Parsed<'_>> {
    if name.starts_with('.') {
        return None;
    }
    let (stem, ext) = name.rsplit_once('.')?;
    if !EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
        return None;
    }
    let prefix = stem.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &stem[prefix.len()..];
    if digits.is_empty() {
        return None;
    }
    Some(Parsed {
        prefix,
        digits,
        ext,
    })
}

/// The numeric value of a run of ASCII digits; `None` past u64 (such names are not slices).
fn value(digits: &str) -> Option<u64> {
    digits.parse().ok()
}

struct Candidate {
    name: String,
    prefix: String,
    ext: String,
    digits_len: usize,
    index: u64,
}

/// Lists the slice-like files of `dir` (not hidden, regular files or links to them).
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
        let Some(name) = name.to_str() else {
            others += 1;
            continue;
        };
        let Some(parsed) = parse(name) else {
            others += 1;
            continue;
        };
        let Some(index) = value(parsed.digits) else {
            others += 1;
            continue;
        };
        // Only now ask what it is: a folder named like a slice is not one.
        let is_file = match entry.file_type() {
            Ok(t) if t.is_file() => true,
            Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()),
            _ => false,
        };
        if !is_file {
            others += 1;
            continue;
        }
        found.push(Candidate {
            prefix: parsed.prefix.to_string(),
            ext: parsed.ext.to_string(),
            digits_len: parsed.digits.len(),
            index,
            name: name.to_string(),
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

/// Sorts by index, refuses duplicates, and lists the gaps within `bounds` (or between the first
/// and last file found).
fn finish(
    dir: &Path,
    mut chosen: Vec<Candidate>,
    bounds: Option<RangeInclusive<u64>>,
) -> Result<Found> {
    chosen.sort_by(|a, b| a.index.cmp(&b.index).then_with(|| a.name.cmp(&b.name)));
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
    let prefix = chosen[0].prefix.clone();
    let extension = chosen[0].ext.clone();
    let files = chosen
        .into_iter()
        .map(|c| SourceFile {
            path: dir.join(&c.name),
            index: c.index,
        })
        .collect();
    Ok(Found {
        prefix,
        extension,
        files,
        gaps,
    })
}

/// Detects the stack: the most common (prefix, extension) pair.
pub(super) fn detect(dir: &Path) -> Result<Found> {
    let (all, others) = candidates(dir)?;
    if all.is_empty() {
        return Err(Error::NoImages {
            dir: dir.to_path_buf(),
            looked_for: looked_for(others),
        });
    }
    // Count per (prefix, lower-case extension); BTreeMap order breaks ties deterministically.
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for c in &all {
        *counts
            .entry((c.prefix.as_str(), c.ext.to_ascii_lowercase()))
            .or_default() += 1;
    }
    let mut best: Option<((&str, String), usize)> = None;
    for (key, n) in counts {
        if best.as_ref().is_none_or(|(_, m)| n > *m) {
            best = Some((key, n));
        }
    }
    let Some(((prefix, ext), _)) = best else {
        return Err(Error::NoImages {
            dir: dir.to_path_buf(),
            looked_for: looked_for(others),
        });
    };
    let (prefix, ext) = (prefix.to_string(), ext);
    let chosen = all
        .into_iter()
        .filter(|c| c.prefix == prefix && c.ext.eq_ignore_ascii_case(&ext))
        .collect();
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
            c.prefix == pattern.prefix
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
                "files named {}<index>.{ext} with index in {}..={} written with {width} digits \
                 ({} entries did not fit the pattern or any image name)",
                pattern.prefix,
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
            parse("scan_0012.TIF"),
            Some(Parsed {
                prefix: "scan_",
                digits: "0012",
                ext: "TIF"
            })
        );
        assert_eq!(parse("0007.png").map(|p| p.prefix), Some(""));
        assert_eq!(parse("a1b22.jpeg").map(|p| p.digits), Some("22"));
        assert_eq!(parse("scan_spr.bmp"), None);
        assert_eq!(parse("scan0001_spr.bmp"), None);
        assert_eq!(parse("Thumbs.db"), None);
        assert_eq!(parse(".scan0001.tif"), None);
        assert_eq!(parse("scan0001.tif.log"), None);
        assert_eq!(parse("notes.txt"), None);
        assert_eq!(parse("scan0001"), None);
        assert_eq!(value("99999999999999999999999"), None);
    }
}
