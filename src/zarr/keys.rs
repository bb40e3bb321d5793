//! The keys of the three stores, and what each one is: an HTTP server answers a key by
//! resolving it here (`None` is a 404: every key that does not exist, whatever it looks like).

use serde_json::Value;

use super::{ZarrLayout, precomputed_key};

/// What a key of a Zarr store is.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A metadata document (`.zgroup`, `.zattrs`, `.zarray`, `zarr.json`).
    Json(Value),
    /// A chunk file (a shard when the layout is sharded): level and index (`z, y, x`) in the
    /// level's file grid ([`super::ZarrLevel::file_grid`]).
    Chunk {
        /// The level.
        level: u32,
        /// The index, `z, y, x`.
        index: [u32; 3],
    },
}

/// What a key of a precomputed store is.
#[derive(Debug, Clone, PartialEq)]
pub enum PrecomputedNode {
    /// The `info` document.
    Info(Value),
    /// A chunk: level and index (`z, y, x`) in the level's chunk grid.
    Chunk {
        /// The level.
        level: u32,
        /// The index, `z, y, x`.
        index: [u32; 3],
    },
}

/// A canonical decimal number: digits only, no sign, no leading zero (but `0`), within u32.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl ZarrLayout {
    /// The level named `s` (`"0"`, `"1"`, ...), if it exists.
    fn level_named(&self, s: &str) -> Option<u32> {
        number(s).filter(|&n| (n as usize) < self.levels.len())
    }

    /// A file index `[z, y, x]` of `level` from three path parts, if inside the grid.
    fn file_index(&self, level: u32, parts: &[&str]) -> Option<[u32; 3]> {
        let [z, y, x] = parts else { return None };
        let index = [number(z)?, number(y)?, number(x)?];
        let grid = self.levels[level as usize].file_grid();
        (index.iter().zip(grid).all(|(&i, g)| i < g)).then_some(index)
    }

    /// Resolves `key` (a path relative to the store's root, without a leading slash) of the
    /// Zarr v2 store: `.zgroup`, `.zattrs`, `<n>/.zarray`, `<n>/<z>/<y>/<x>`. `None` for
    /// anything else (a 404: `.zmetadata`, `<n>/.zattrs`, `labels`, an index outside the
    /// grid, a malformed or non-canonical number).
    pub fn resolve_v2(&self, key: &str) -> Option<Node> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts[..] {
            [".zgroup"] => Some(Node::Json(self.zgroup())),
            [".zattrs"] => Some(Node::Json(self.zattrs())),
            [n, ".zarray"] => {
                let level = self.level_named(n)?;
                self.zarray(level).ok().map(Node::Json)
            }
            [n, z, y, x] if self.levels.iter().all(|l| l.shard.is_none()) => {
                let level = self.level_named(n)?;
                let index = self.file_index(level, &[z, y, x])?;
                Some(Node::Chunk { level, index })
            }
            _ => None,
        }
    }

    /// Resolves `key` of the Zarr v3 store: `zarr.json`, `<n>/zarr.json`, `<n>/c/<z>/<y>/<x>`
    /// (a shard when sharded). `None` for anything else.
    pub fn resolve_v3(&self, key: &str) -> Option<Node> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts[..] {
            ["zarr.json"] => Some(Node::Json(self.group_json())),
            [n, "zarr.json"] => {
                let level = self.level_named(n)?;
                self.array_json(level).ok().map(Node::Json)
            }
            [n, "c", z, y, x] => {
                let level = self.level_named(n)?;
                let index = self.file_index(level, &[z, y, x])?;
                Some(Node::Chunk { level, index })
            }
            _ => None,
        }
    }

    /// Resolves `key` of the precomputed store: `info`, `s<n>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`
    /// (exactly a chunk's bounds, cut at the volume's edge). `None` for anything else.
    pub fn resolve_precomputed(&self, key: &str) -> Option<PrecomputedNode> {
        if key == "info" {
            return Some(PrecomputedNode::Info(self.precomputed_info()));
        }
        let (scale, name) = key.split_once('/')?;
        let level = self
            .levels
            .iter()
            .find(|l| precomputed_key(l.info.level) == scale)?;
        let bounds: Vec<(u32, u32)> = name
            .split('_')
            .map(|r| {
                let (a, b) = r.split_once('-')?;
                Some((number(a)?, number(b)?))
            })
            .collect::<Option<_>>()?;
        let [(x0, x1), (y0, y1), (z0, y1z)] = bounds[..] else {
            return None;
        };
        let c = level.chunk;
        let index = [z0 / c.z, y0 / c.y, x0 / c.x];
        if !z0.is_multiple_of(c.z) || !y0.is_multiple_of(c.y) || !x0.is_multiple_of(c.x) {
            return None;
        }
        let [zr, yr, xr] = level.chunk_ranges(index)?;
        ((xr.start, xr.end, yr.start, yr.end, zr.start, zr.end) == (x0, x1, y0, y1, z0, y1z))
            .then_some(PrecomputedNode::Chunk {
                level: level.info.level,
                index,
            })
    }

    /// The key of Zarr v2 chunk `index` of `level`: `<n>/<z>/<y>/<x>`.
    pub fn chunk_key_v2(level: u32, [z, y, x]: [u32; 3]) -> String {
        format!("{level}/{z}/{y}/{x}")
    }

    /// The key of Zarr v3 chunk (or shard) `index` of `level`: `<n>/c/<z>/<y>/<x>`.
    pub fn chunk_key_v3(level: u32, [z, y, x]: [u32; 3]) -> String {
        format!("{level}/c/{z}/{y}/{x}")
    }

    /// The key of precomputed chunk `index` of `level`, or `None` outside the grid.
    pub fn chunk_key_precomputed(&self, level: u32, index: [u32; 3]) -> Option<String> {
        let l = self.levels.get(level as usize)?;
        let [zr, yr, xr] = l.chunk_ranges(index)?;
        Some(format!(
            "{}/{}-{}_{}-{}_{}-{}",
            precomputed_key(level),
            xr.start,
            xr.end,
            yr.start,
            yr.end,
            zr.start,
            zr.end
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zarr::{ChunkShape, Compression};
    use crate::{LevelInfo, SampleType};

    fn layout() -> ZarrLayout {
        let l0 = LevelInfo {
            level: 0,
            width: 1000,
            height: 600,
            depth: 5,
            sample_type: SampleType::U16,
        };
        ZarrLayout::new(&[l0, l0.next()], ChunkShape::default(), Compression::None).unwrap()
    }

    #[test]
    fn keys_resolve_only_when_they_exist() {
        let z = layout();
        assert!(matches!(z.resolve_v2(".zgroup"), Some(Node::Json(_))));
        assert!(matches!(z.resolve_v2("1/.zarray"), Some(Node::Json(_))));
        assert_eq!(
            z.resolve_v2("0/4/1/1"),
            Some(Node::Chunk {
                level: 0,
                index: [4, 1, 1]
            })
        );
        for bad in [
            ".zmetadata",
            "0/.zattrs",
            "2/.zarray",
            "0/5/0/0",
            "0/0/2/0",
            "0/00/0/0",
            "0/+1/0/0",
            "0/0/0",
            "../0/0/0/0",
            "0/0/0/0/0",
            "",
            "labels/.zattrs",
        ] {
            assert_eq!(z.resolve_v2(bad), None, "{bad}");
        }
        assert!(matches!(z.resolve_v3("zarr.json"), Some(Node::Json(_))));
        assert!(matches!(
            z.resolve_v3("0/c/0/0/1"),
            Some(Node::Chunk { .. })
        ));
        assert_eq!(z.resolve_v3("0/0/0/1"), None);
        assert_eq!(z.resolve_v3("0/c/0/0/2"), None);
        assert_eq!(z.resolve_v3("2/zarr.json"), None);
    }

    #[test]
    fn precomputed_keys_are_exact_chunk_bounds() {
        let z = layout();
        let key = z.chunk_key_precomputed(0, [4, 1, 1]).unwrap();
        assert_eq!(key, "s0/512-1000_512-600_4-5");
        assert_eq!(
            z.resolve_precomputed(&key),
            Some(PrecomputedNode::Chunk {
                level: 0,
                index: [4, 1, 1]
            })
        );
        for bad in [
            "s0/512-1024_512-600_4-5",
            "s0/1-513_0-512_0-1",
            "s2/0-500_0-300_0-3",
            "s0/0-512_0-512",
            "info2",
        ] {
            assert_eq!(z.resolve_precomputed(bad), None, "{bad}");
        }
        assert!(matches!(
            z.resolve_precomputed("info"),
            Some(PrecomputedNode::Info(_))
        ));
    }
}
