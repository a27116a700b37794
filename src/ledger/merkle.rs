//! Merkle tree over ledger entries, as RFC 6962 §2.1 / RFC 9162 §2.1 define
//! it: leaf hash `SHA-256(0x00 || entry)`, node hash `SHA-256(0x01 || left ||
//! right)`, split at the largest power of two below the size; inclusion and
//! consistency proofs and their verification (RFC 9162 §2.1.3.2, §2.1.4.2).
//! Pure: works on slices of leaf hashes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path of leaf `index`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    Some(proof)
}

/// MTH(D[n]) and the audit path of every leaf, in order, from one pass over
/// the tree: level by level, pairs hashed left to right and a lone last
/// node carried up a level (which builds the tree RFC 9162 splits at powers
/// of two). O(n log n), where [`inclusion_proof`] per leaf is O(n) each.
pub fn root_and_proofs(leaves: &[Hash]) -> (Hash, Vec<Vec<Hash>>) {
    if leaves.is_empty() {
        return (empty_root(), Vec::new());
    }
    let mut levels = vec![leaves.to_vec()];
    while let Some(below) = levels.last().filter(|l| l.len() > 1) {
        let above =
            below.chunks(2).map(|pair| pair.get(1).map_or(pair[0], |right| node_hash(&pair[0], right))).collect();
        levels.push(above);
    }
    let proofs = (0..leaves.len())
        .map(|leaf| {
            let mut at = leaf;
            let mut proof = Vec::new();
            for level in &levels[..levels.len() - 1] {
                if let Some(sibling) = level.get(at ^ 1) {
                    proof.push(*sibling);
                }
                at >>= 1;
            }
            proof
        })
        .collect();
    (levels[levels.len() - 1][0], proofs)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// PROOF(m, D[n]): that the first `m` leaves are a prefix of all of them.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    if m > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    Some(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Right-shifts both until the low bit of `a` is set or `a` is 0.
fn shift_while_even(a: &mut u64, b: &mut u64) {
    while *a != 0 && *a & 1 == 0 {
        *a >>= 1;
        *b >>= 1;
    }
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(leaf, index, size, proof).is_some_and(|r| r == *root)
}

/// The root an inclusion proof leads to from `leaf` at `index` of `size`
/// leaves (RFC 9162 §2.1.3.2 without the final comparison), or `None` if the
/// proof has the wrong length for that place in that tree.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                shift_while_even(&mut f, &mut s);
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// RFC 9162 §2.1.4.2, with the trivial cases: an empty first tree is
/// consistent with anything, equal sizes need equal roots and no proof.
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                shift_while_even(&mut f, &mut s);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// The right edge of a growing tree: the roots of its perfect subtrees, so
/// that appending and taking the root cost O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash), left to right, heights strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.peaks.last() {
            if h != node.0 {
                break;
            }
            self.peaks.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// `size u64 | peaks u32 | (height u32, hash)*`, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.size.to_be_bytes().to_vec();
        b.extend_from_slice(&(self.peaks.len() as u32).to_be_bytes());
        for (h, hash) in &self.peaks {
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(hash);
        }
        b
    }

    /// The frontier [`Frontier::encode`] wrote, and the bytes after it.
    pub fn decode(b: &[u8]) -> Option<(Frontier, &[u8])> {
        let size = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let n = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?) as usize;
        if n > 64 {
            return None;
        }
        let mut peaks = Vec::with_capacity(n);
        let mut at = 12;
        for _ in 0..n {
            let h = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
            let hash: Hash = b.get(at + 4..at + 36)?.try_into().ok()?;
            peaks.push((h, hash));
            at += 36;
        }
        // The peaks of a tree of `size` leaves are its set bits, highest first.
        let heights: Vec<u32> = (0..64u32).rev().filter(|i| size >> i & 1 == 1).collect();
        if peaks.iter().map(|p| p.0).collect::<Vec<_>>() != heights {
            return None;
        }
        Some((Frontier { size, peaks }, &b[at..]))
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Certificate Transparency's published test leaves and roots (sizes 1–8).
    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&hex::decode(l).unwrap())).collect()
    }

    #[test]
    fn known_roots() {
        let d = leaves();
        assert_eq!(hex::encode(root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut f = Frontier::default();
        for n in 1..=8 {
            assert_eq!(hex::encode(root(&d[..n])), ROOTS[n - 1], "size {n}");
            f.push(d[n - 1]);
            assert_eq!(f.root(), root(&d[..n]));
        }
    }

    #[test]
    fn known_proofs() {
        let d = leaves();
        let p: Vec<String> = inclusion_proof(&d, 5).unwrap().iter().map(hex::encode).collect();
        assert_eq!(
            p,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
        let c: Vec<String> = consistency_proof(&d, 3).unwrap().iter().map(hex::encode).collect();
        assert_eq!(
            c,
            [
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn every_proof_of_small_trees_verifies() {
        assert_eq!(root_and_proofs(&[]), (empty_root(), Vec::new()));
        let d: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=d.len() {
            let r = root(&d[..n]);
            for i in 0..n {
                let p = inclusion_proof(&d[..n], i).unwrap();
                assert!(verify_inclusion(&d[i], i as u64, n as u64, &p, &r), "incl {i} of {n}");
                assert!(!verify_inclusion(&d[(i + 1) % n], i as u64, n as u64, &p, &r) || n == 1);
            }
            assert_eq!(
                root_and_proofs(&d[..n]),
                (r, (0..n).map(|i| inclusion_proof(&d[..n], i).unwrap()).collect()),
                "all proofs of {n} at once"
            );
            for m in 0..=n {
                let p = consistency_proof(&d[..n], m).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &root(&d[..m]), &r, &p), "cons {m} of {n}");
            }
        }
    }
}
