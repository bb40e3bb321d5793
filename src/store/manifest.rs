//! The disk tier's manifest: what the cached blobs were made from.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::codec::FORMAT_VERSION;
use crate::error::{Error, Result};
use crate::geometry::{LevelInfo, LevelRule, SliceKey, dependent_slice};
use crate::source::Stack;

/// One source slice as the manifest remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// File name within the stack folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 where the system has none).
    pub mtime_ns: u128,
}

/// The source fingerprint and pyramid parameters a cache folder's blobs were made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Blob format version ([`FORMAT_VERSION`]).
    pub format_version: u16,
    /// The stack folder (for people reading the file; not compared).
    pub stack: String,
    /// Width of the source slices.
    pub width: u32,
    /// Height of the source slices.
    pub height: u32,
    /// Sample type name (`u8`, `u16`, `f32`).
    pub sample_type: String,
    /// The level rule's edge.
    pub edge: u32,
    /// The level rule's cap on the number of levels.
    pub max_levels: Option<u32>,
    /// Every source slice in z order.
    pub sources: Vec<SourceRecord>,
}

/// What a change of manifest means for the blobs on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// Nothing changed.
    None,
    /// These blobs depend on a changed, added or removed source slice.
    Some(BTreeSet<SliceKey>),
    /// Format version, level rule or slice size changed: every blob goes.
    All(String),
}

impl Manifest {
    /// The fingerprint of `stack` under `rule`: every source file's name, size and modification
    /// time (one `stat` per file).
    ///
    /// # Errors
    /// [`Error::Io`] naming a source file that cannot be stat'ed.
    pub fn of(stack: &Stack, rule: &LevelRule) -> Result<Manifest> {
        let sources = stack
            .files()
            .iter()
            .map(|f| source_record(&f.path))
            .collect::<Result<Vec<_>>>()?;
        let info = stack.info();
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            stack: stack.dir().display().to_string(),
            width: info.width,
            height: info.height,
            sample_type: info.sample_type.name().to_string(),
            edge: rule.edge,
            max_levels: rule.max_levels,
            sources,
        })
    }

    /// The blobs made under `self` that are no longer valid under `new`. `levels` are the
    /// pyramid's levels (level 0 first).
    pub(crate) fn invalidated_by(&self, new: &Manifest, levels: &[LevelInfo]) -> Invalidation {
        let mut reasons = Vec::new();
        if self.format_version != new.format_version {
            reasons.push(format!(
                "blob format version {} -> {}",
                self.format_version, new.format_version
            ));
        }
        if (self.edge, self.max_levels) != (new.edge, new.max_levels) {
            reasons.push(format!(
                "level rule (edge {}, cap {:?}) -> (edge {}, cap {:?})",
                self.edge, self.max_levels, new.edge, new.max_levels
            ));
        }
        if (self.width, self.height, &self.sample_type) != (new.width, new.height, &new.sample_type)
        {
            reasons.push(format!(
                "slices {} x {} {} -> {} x {} {}",
                self.width, self.height, self.sample_type, new.width, new.height, new.sample_type
            ));
        }
        if !reasons.is_empty() {
            return Invalidation::All(reasons.join(", "));
        }
        let mut keys = BTreeSet::new();
        let n = self.sources.len().max(new.sources.len());
        for p in 0..n {
            if self.sources.get(p) == new.sources.get(p) {
                continue;
            }
            let p = u32::try_from(p).unwrap_or(u32::MAX);
            for level in levels.iter().skip(1) {
                keys.insert(SliceKey::new(level.level, dependent_slice(level.level, p)));
            }
        }
        if keys.is_empty() {
            Invalidation::None
        } else {
            Invalidation::Some(keys)
        }
    }

    /// Reads a manifest file. `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Decode`] when it is not a manifest.
    pub(crate) fn load(path: &Path) -> Result<Option<Manifest>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::decode(path, format!("not a lodcache manifest: {e}")))
    }

    /// The manifest as the bytes of its file.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

fn source_record(path: &Path) -> Result<SourceRecord> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("reading metadata of", path, e))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(SourceRecord {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: meta.len(),
        mtime_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::SampleType;

    fn manifest(depth: usize) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            stack: "/scan".into(),
            width: 64,
            height: 64,
            sample_type: "u16".into(),
            edge: 8,
            max_levels: None,
            sources: (0..depth)
                .map(|i| SourceRecord {
                    name: format!("s{i:03}.tif"),
                    size: 100,
                    mtime_ns: 5,
                })
                .collect(),
        }
    }

    fn levels(depth: u32) -> Vec<LevelInfo> {
        LevelRule::default()
            .with_edge(8)
            .levels(64, 64, depth, SampleType::U16)
            .unwrap()
    }

    #[test]
    fn one_changed_source_invalidates_one_blob_per_level() {
        let old = manifest(20);
        let mut new = old.clone();
        new.sources[13].mtime_ns = 6;
        let Invalidation::Some(keys) = old.invalidated_by(&new, &levels(20)) else {
            panic!("expected some");
        };
        let expect: BTreeSet<_> = [(1, 6), (2, 3), (3, 1)]
            .map(|(l, z)| SliceKey::new(l, z))
            .into();
        assert_eq!(keys, expect);
    }

    #[test]
    fn appended_source_invalidates_the_tail_and_rule_change_everything() {
        let old = manifest(20);
        let new = manifest(21);
        let Invalidation::Some(keys) = old.invalidated_by(&new, &levels(21)) else {
            panic!("expected some");
        };
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&SliceKey::new(1, 10)));
        assert_eq!(
            old.invalidated_by(&old.clone(), &levels(20)),
            Invalidation::None
        );
        let mut other = old.clone();
        other.edge = 16;
        assert!(matches!(
            old.invalidated_by(&other, &levels(20)),
            Invalidation::All(_)
        ));
        other = old.clone();
        other.format_version += 1;
        assert!(matches!(
            old.invalidated_by(&other, &levels(20)),
            Invalidation::All(_)
        ));
    }
}
