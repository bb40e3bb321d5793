//! Level maths: how many levels a stack gets, their sizes, and which source slices each level
//! slice covers.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::slice::SampleType;

/// When to stop halving: levels are made while `max(width, height) > edge`, optionally capped
/// at a number of levels. The default edge, 500, is CTHarvester's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelRule {
    /// A level is made from the previous one while the previous one's larger side exceeds this.
    /// Default: 500.
    pub edge: u32,
    /// At most this many levels above level 0. Default: no cap.
    pub max_levels: Option<u32>,
}

impl Default for LevelRule {
    fn default() -> Self {
        LevelRule {
            edge: 500,
            max_levels: None,
        }
    }
}

impl LevelRule {
    /// The rule with a different edge.
    #[must_use]
    pub fn with_edge(mut self, edge: u32) -> Self {
        self.edge = edge;
        self
    }

    /// The rule with a cap on the number of levels above level 0.
    #[must_use]
    pub fn with_max_levels(mut self, max_levels: u32) -> Self {
        self.max_levels = Some(max_levels);
        self
    }

    /// All levels of a `width` x `height` x `depth` stack of `sample_type`, level 0 (the source)
    /// first.
    ///
    /// A level is made from the one before while that one's larger side exceeds the edge, the
    /// cap is not reached, and both halved sides are at least one pixel.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a dimension is zero.
    pub fn levels(
        &self,
        width: u32,
        height: u32,
        depth: u32,
        sample_type: SampleType,
    ) -> Result<Vec<LevelInfo>> {
        if width == 0 || height == 0 || depth == 0 {
            return Err(Error::invalid(
                "stack dimensions",
                format!("{width} x {height} x {depth}: every side must be at least 1"),
            ));
        }
        let mut levels = vec![LevelInfo {
            level: 0,
            width,
            height,
            depth,
            sample_type,
        }];
        loop {
            let last = levels[levels.len() - 1];
            let made = levels.len() as u32 - 1;
            if last.width.max(last.height) <= self.edge
                || self.max_levels.is_some_and(|cap| made >= cap)
                || last.width < 2
                || last.height < 2
            {
                return Ok(levels);
            }
            levels.push(last.next());
        }
    }
}

/// The size of one pyramid level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelInfo {
    /// Level number; 0 is the source stack.
    pub level: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of slices.
    pub depth: u32,
    /// Sample type (the source's).
    pub sample_type: SampleType,
}

impl LevelInfo {
    /// The level made from this one: half the width and height (rounded down), half the depth
    /// (rounded up).
    pub fn next(&self) -> LevelInfo {
        LevelInfo {
            level: self.level + 1,
            width: self.width / 2,
            height: self.height / 2,
            depth: self.depth.div_ceil(2),
            sample_type: self.sample_type,
        }
    }

    /// Samples in one slice.
    pub fn slice_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Bytes in one slice.
    pub fn slice_bytes(&self) -> usize {
        self.slice_len() * self.sample_type.bytes()
    }

    /// Bytes in the whole level.
    pub fn bytes(&self) -> u64 {
        self.slice_bytes() as u64 * u64::from(self.depth)
    }
}

/// One slice of one level: the key of a blob in the cache tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliceKey {
    /// Level number (1 and up for cached slices).
    pub level: u32,
    /// Slice index within the level.
    pub z: u32,
}

impl SliceKey {
    /// The key of slice `z` of `level`.
    pub fn new(level: u32, z: u32) -> SliceKey {
        SliceKey { level, z }
    }
}

impl std::fmt::Display for SliceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "level {} slice {}", self.level, self.z)
    }
}

/// A rectangle of a slice: `width` x `height` pixels whose top-left pixel is (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// First column.
    pub x: u32,
    /// First row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

impl Region {
    /// The `width` x `height` rectangle at (`x`, `y`).
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region {
            x,
            y,
            width,
            height,
        }
    }

    /// Whether the rectangle is non-empty and lies inside a `width` x `height` slice.
    pub fn fits(&self, width: u32, height: u32) -> bool {
        let fits = |start: u32, len: u32, size: u32| {
            len > 0 && start.checked_add(len).is_some_and(|end| end <= size)
        };
        fits(self.x, self.width, width) && fits(self.y, self.height, height)
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} x {} at ({}, {})",
            self.width, self.height, self.x, self.y
        )
    }
}

/// The source slices that slice `z` of `level` is made from: `[z * 2^level, (z + 1) * 2^level)`,
/// clipped to a stack of `source_depth` slices.
pub fn source_range(level: u32, z: u32, source_depth: u32) -> Range<u32> {
    let scale = 1u64 << level.min(63);
    let start = (u64::from(z) * scale).min(u64::from(source_depth));
    let end = ((u64::from(z) + 1) * scale).min(u64::from(source_depth));
    start as u32..end as u32
}

/// The slices of `level` that depend on source slice `source_z`: exactly one, `source_z >> level`.
pub fn dependent_slice(level: u32, source_z: u32) -> u32 {
    source_z.checked_shr(level).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(w: u32, h: u32, d: u32, rule: LevelRule) -> Vec<(u32, u32, u32)> {
        rule.levels(w, h, d, SampleType::U16)
            .unwrap()
            .iter()
            .skip(1)
            .map(|l| (l.width, l.height, l.depth))
            .collect()
    }

    #[test]
    fn ctharvester_examples_hold() {
        let r = LevelRule::default();
        assert_eq!(
            sizes(2048, 2048, 17, r),
            vec![(1024, 1024, 9), (512, 512, 5), (256, 256, 3)]
        );
        assert_eq!(sizes(1100, 1100, 1, r), vec![(550, 550, 1), (275, 275, 1)]);
        assert_eq!(
            sizes(3072, 3072, 100, r),
            vec![(1536, 1536, 50), (768, 768, 25), (384, 384, 13)]
        );
        assert_eq!(sizes(1010, 1010, 4, r), vec![(505, 505, 2), (252, 252, 1)]);
        assert_eq!(sizes(500, 400, 4, r), vec![]);
    }

    #[test]
    fn odd_sizes_round_down_and_depth_rounds_up() {
        let r = LevelRule::default().with_edge(2);
        assert_eq!(sizes(7, 5, 3, r), vec![(3, 2, 2), (1, 1, 1)]);
    }

    #[test]
    fn cap_and_one_pixel_sides_stop_the_pyramid() {
        assert_eq!(
            sizes(4096, 4096, 8, LevelRule::default().with_max_levels(2)),
            vec![(2048, 2048, 4), (1024, 1024, 2)]
        );
        // A 1-pixel-high image cannot be halved vertically.
        assert_eq!(sizes(4000, 1, 3, LevelRule::default()), vec![]);
        assert_eq!(
            sizes(8, 8, 1, LevelRule::default().with_edge(0)),
            vec![(4, 4, 1), (2, 2, 1), (1, 1, 1)]
        );
    }

    #[test]
    fn zero_dimensions_are_rejected() {
        assert!(
            LevelRule::default()
                .levels(0, 5, 5, SampleType::U8)
                .is_err()
        );
    }

    #[test]
    fn source_ranges_cover_the_stack_without_gaps() {
        assert_eq!(source_range(0, 5, 17), 5..6);
        assert_eq!(source_range(2, 3, 17), 12..16);
        assert_eq!(source_range(2, 4, 17), 16..17);
        assert_eq!(source_range(3, 2, 17), 16..17);
        assert_eq!(dependent_slice(3, 16), 2);
        for level in 0..5 {
            let depth = 17u32.div_ceil(1 << level);
            let mut next = 0;
            for z in 0..depth {
                let r = source_range(level, z, 17);
                assert_eq!(r.start, next);
                assert!(r.end > r.start);
                next = r.end;
            }
            assert_eq!(next, 17);
        }
    }
}
