//! Several sequences in one forward: a shared prefix (a prompt) followed by tails that each
//! continue it on their own (G sampled answers to one prompt, DPO's chosen and rejected answer),
//! or, with no prefix, independent sequences side by side. Every position-wise op (projections,
//! norms, the MLP, the unembedding) runs once over all rows, so the weights are read once for
//! all of them and the prefix is computed once instead of once per tail; only attention knows
//! the segments (`attention::attention_packed`): a tail's rows see the prefix and their own
//! earlier rows, never another tail's. Each tail's values are those of a separate forward over
//! `prefix ++ tail` up to the matmuls' summation order.

use candle_core::Result;

/// Row layout of a packed forward: rows `0..prefix` are the prefix, then each tail's rows in
/// order. A tail's rows sit at positions `prefix..prefix + len` (rope, masks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    prefix: usize,
    tails: Vec<usize>,
}

/// One attention segment: query rows `start..start + len`, which see the prefix when
/// `sees_prefix` (then their keys are the prefix's rows followed by their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub len: usize,
    pub sees_prefix: bool,
}

impl Segment {
    /// Keys before the segment's own rows (the prefix's, when it sees it).
    pub fn key_offset(&self, prefix: usize) -> usize {
        if self.sees_prefix {
            prefix
        } else {
            0
        }
    }
}

impl Packing {
    /// A prefix of `prefix` rows and tails of the given lengths (empty tails are allowed and
    /// hold no rows). Refused: no rows at all.
    pub fn new(prefix: usize, tails: Vec<usize>) -> Result<Self> {
        if prefix + tails.iter().sum::<usize>() == 0 {
            candle_core::bail!("a packed forward needs at least one row");
        }
        Ok(Self { prefix, tails })
    }

    pub fn prefix(&self) -> usize {
        self.prefix
    }

    pub fn tails(&self) -> &[usize] {
        &self.tails
    }

    /// All rows.
    pub fn rows(&self) -> usize {
        self.prefix + self.tails.iter().sum::<usize>()
    }

    /// First row of each tail.
    pub fn tail_starts(&self) -> Vec<usize> {
        let mut start = self.prefix;
        self.tails
            .iter()
            .map(|&len| {
                let s = start;
                start += len;
                s
            })
            .collect()
    }

    /// Each row's position (rope).
    pub fn positions(&self) -> Vec<usize> {
        let mut out: Vec<usize> = (0..self.prefix).collect();
        for &len in &self.tails {
            out.extend(self.prefix..self.prefix + len);
        }
        out
    }

    /// The attention segments in row order: the prefix (if any), then each non-empty tail.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::with_capacity(self.tails.len() + 1);
        if self.prefix > 0 {
            out.push(Segment {
                start: 0,
                len: self.prefix,
                sees_prefix: false,
            });
        }
        for (start, &len) in self.tail_starts().into_iter().zip(&self.tails) {
            if len > 0 {
                out.push(Segment {
                    start,
                    len,
                    sees_prefix: self.prefix > 0,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_positions_and_segments() {
        let p = Packing::new(3, vec![2, 0, 1]).unwrap();
        assert_eq!(p.rows(), 6);
        assert_eq!(p.positions(), vec![0, 1, 2, 3, 4, 3]);
        assert_eq!(p.tail_starts(), vec![3, 5, 5]);
        let segs = p.segments();
        assert_eq!(segs.len(), 3);
        assert_eq!(
            (segs[1].start, segs[1].len, segs[1].sees_prefix),
            (3, 2, true)
        );
        assert_eq!((segs[2].start, segs[2].len), (5, 1));
        // Without a prefix the tails are independent sequences from position 0.
        let q = Packing::new(0, vec![2, 3]).unwrap();
        assert_eq!(q.positions(), vec![0, 1, 0, 1, 2]);
        assert!(q.segments().iter().all(|s| !s.sees_prefix));
        assert!(Packing::new(0, vec![0]).is_err());
    }
}
