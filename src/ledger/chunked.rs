//! An append-only sequence kept in fixed-size chunks, for the per-entry
//! figures a ledger holds in memory (leaf hashes, segment offsets): growing
//! adds a chunk and copies nothing, where a `Vec` would copy everything under
//! the tree's write lock (docs/PERFORMANCE.md, "Chunked in-memory sequences").

use std::ops::Range;

/// Items per chunk: 2 MiB of 32-byte hashes.
const CHUNK: usize = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct Chunked<T: Copy> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> Chunked<T> {
    pub(crate) fn new() -> Chunked<T> {
        Chunked { chunks: Vec::new(), len: 0 }
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

    pub(crate) fn get(&self, i: usize) -> Option<T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).copied()
    }

    /// A copy of the items in `range`, or `None` if it runs past the end.
    pub(crate) fn to_vec(&self, range: Range<usize>) -> Option<Vec<T>> {
        if range.start > range.end || range.end > self.len {
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
