//! An append-only sequence kept in fixed-size chunks, for the per-entry
//! figures a ledger holds in memory (leaf hashes, segment offsets): growing
//! adds a chunk and copies nothing, where a `Vec` would copy everything under
//! the tree's write lock (docs/PERFORMANCE.md, "Chunked in-memory sequences").
//! Its leading chunks can be let go once the tree file holds them: memory
//! then holds the tail since the last checkpoint, not every entry.

use std::ops::Range;

/// Items per chunk: 2 MiB of 32-byte hashes.
pub(crate) const CHUNK: usize = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct Chunked<T: Copy> {
    chunks: Vec<Vec<T>>,
    len: usize,
    /// Items let go (whole chunks, from the start): kept elsewhere.
    spilled: usize,
}

impl<T: Copy> Chunked<T> {
    pub(crate) fn new() -> Chunked<T> {
        Chunked { chunks: Vec::new(), len: 0, spilled: 0 }
    }

    /// A sequence whose first `n` items are kept elsewhere (rounded down to
    /// whole chunks: the items after that are to be pushed).
    pub(crate) fn spilled_to(n: usize) -> Chunked<T> {
        let chunks = n / CHUNK;
        Chunked { chunks: (0..chunks).map(|_| Vec::new()).collect(), len: chunks * CHUNK, spilled: chunks * CHUNK }
    }

    /// Items before this are not held (a multiple of the chunk size).
    pub(crate) fn spilled(&self) -> usize {
        self.spilled
    }

    /// Lets go of the whole chunks before item `n`.
    pub(crate) fn spill_before(&mut self, n: usize) {
        let upto = (n.min(self.len) / CHUNK).min(self.chunks.len());
        for c in self.chunks.iter_mut().take(upto).skip(self.spilled / CHUNK) {
            *c = Vec::new();
        }
        self.spilled = self.spilled.max(upto * CHUNK);
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(item);
            self.len += 1;
        }
    }

    /// Item `i`; `None` past the end or when spilled.
    pub(crate) fn get(&self, i: usize) -> Option<T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).copied()
    }

    /// A copy of the items in `range`, or `None` if it runs past the end or
    /// into the items spilled.
    pub(crate) fn to_vec(&self, range: Range<usize>) -> Option<Vec<T>> {
        if range.start > range.end || range.end > self.len || (range.start < self.spilled && range.start < range.end) {
            return None;
        }
        let mut out = Vec::with_capacity(range.end - range.start);
        let mut at = range.start;
        while at < range.end {
            let chunk = &self.chunks[at / CHUNK];
            let from = at % CHUNK;
            let to = (from + (range.end - at)).min(chunk.len());
            out.extend_from_slice(&chunk[from..to]);
            at += to - from;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn items_cross_chunk_boundaries_in_order() {
        let mut c = Chunked::new();
        let n = 2 * CHUNK + 3;
        for i in 0..n {
            c.push(i as u64);
        }
        assert_eq!(c.len(), n);
        assert_eq!(c.chunks.len(), 3);
        assert_eq!(c.get(CHUNK - 1), Some(CHUNK as u64 - 1));
        assert_eq!(c.get(CHUNK), Some(CHUNK as u64));
        assert_eq!(c.get(n), None);
        let all = c.to_vec(0..n).unwrap();
        assert_eq!(all, (0..n as u64).collect::<Vec<_>>());
        assert_eq!(
            c.to_vec(CHUNK - 2..CHUNK + 2).unwrap(),
            vec![CHUNK as u64 - 2, CHUNK as u64 - 1, CHUNK as u64, CHUNK as u64 + 1]
        );
        assert_eq!(c.to_vec(n..n), Some(vec![]));
        assert_eq!(c.to_vec(0..n + 1), None);

        // Spilled: the whole chunks before the item go, the rest reads on.
        c.spill_before(CHUNK + 5);
        assert_eq!(c.spilled(), CHUNK);
        assert_eq!(c.get(CHUNK - 1), None);
        assert_eq!(c.to_vec(CHUNK - 1..CHUNK + 1), None);
        assert_eq!(c.to_vec(CHUNK..CHUNK + 2).unwrap(), vec![CHUNK as u64, CHUNK as u64 + 1]);
        assert_eq!(c.len(), n);
        assert!(c.chunks[0].capacity() == 0);

        let mut d: Chunked<u64> = Chunked::spilled_to(CHUNK + 7);
        assert_eq!((d.len(), d.spilled()), (CHUNK, CHUNK));
        d.push(9);
        assert_eq!(d.get(CHUNK), Some(9));
        assert_eq!(d.to_vec(CHUNK..CHUNK + 1), Some(vec![9]));
    }

    proptest! {
        #[test]
        fn it_reads_as_the_vec_it_replaces(n in 0usize..(3 * CHUNK), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
            let v: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
            let mut c = Chunked::new();
            for x in &v {
                c.push(*x);
            }
            prop_assert_eq!(c.len(), v.len());
            let (lo, hi) = if n == 0 { (0, 0) } else {
                let (x, y) = (a.index(n + 1), b.index(n + 1));
                (x.min(y), x.max(y))
            };
            prop_assert_eq!(c.to_vec(lo..hi), Some(v[lo..hi].to_vec()));
            if lo < n {
                prop_assert_eq!(c.get(lo), Some(v[lo]));
            }
        }
    }
}
