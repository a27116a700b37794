//! The digests of every key in a ledger, for the filter that lets a new key
//! skip the index lookup: 2^16 sorted vectors, by a digest's top 16 bits,
//! each holding the next 32 bits. About 4-6 bytes a key where a B-tree set
//! of `u64` took ~13, and an insert moves the tail of one short vector, never
//! the whole set (which every key lookup would wait on). Two keys whose
//! digests agree in 48 bits read as one: the index lookup then tells them
//! apart.

const TOP_BITS: u32 = 16;

pub(crate) struct DigestSet {
    buckets: Vec<Vec<u32>>,
}

impl Default for DigestSet {
    fn default() -> DigestSet {
        DigestSet { buckets: vec![Vec::new(); 1 << TOP_BITS] }
    }
}

fn split(digest: u64) -> (usize, u32) {
    ((digest >> (64 - TOP_BITS)) as usize, (digest >> (32 - TOP_BITS)) as u32)
}

impl DigestSet {
    /// Adds a digest; `false` if it (or one agreeing in 48 bits) was there.
    pub(crate) fn insert(&mut self, digest: u64) -> bool {
        let (b, rest) = split(digest);
        let Some(bucket) = self.buckets.get_mut(b) else { return false };
        match bucket.binary_search(&rest) {
            Ok(_) => false,
            Err(i) => {
                bucket.insert(i, rest);
                true
            }
        }
    }

    /// Whether a digest (or one agreeing in 48 bits) was added.
    pub(crate) fn contains(&self, digest: u64) -> bool {
        let (b, rest) = split(digest);
        self.buckets.get(b).is_some_and(|v| v.binary_search(&rest).is_ok())
    }
}

impl FromIterator<u64> for DigestSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> DigestSet {
        let mut set = DigestSet::default();
        for d in iter {
            set.insert(d);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_added_and_only_that() {
        let mut set = DigestSet::default();
        let digests: Vec<u64> = (0..20_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        for (i, d) in digests.iter().enumerate() {
            if i % 2 == 0 {
                assert!(set.insert(*d));
            }
        }
        assert!(!set.insert(digests[0]), "a digest added twice is held once");
        for (i, d) in digests.iter().enumerate() {
            assert_eq!(set.contains(*d), i % 2 == 0, "digest {i}");
        }
        assert_eq!(set.buckets.iter().map(Vec::len).sum::<usize>(), 10_000);
        // The low 16 bits are not kept: digests that differ only there are one.
        assert!(set.contains(digests[0] ^ 0xFFFF));
        assert!(!set.contains(digests[0] ^ (1 << 16)));
        let again: DigestSet = digests.iter().copied().step_by(2).collect();
        assert!(digests.iter().step_by(2).all(|d| again.contains(*d)));
    }
}
