//! The mutator: a few edits of a corpus input, binary and textual.

use rand::rngs::StdRng;
use rand::Rng;

/// Inputs are cut at this length.
const MAX_LEN: usize = 64 * 1024;

/// Tokens that break parsers: quotes and brackets, huge and negative
/// numbers, odd floats, NULs, invalid UTF-8, long protobuf varints, TOML
/// headers, impossible dates.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"-",
    b"0",
    b"-1",
    b"99999999999999999999999999999999",
    b"79228162514264337593543950336",
    b"0.000000000000000000000000001",
    b"1e309",
    b"NaN",
    b"inf",
    b"\\u0000",
    b"\xff\xfe",
    b"\xc3\x28",
    b"=",
    b"\n[[items]]\n",
    b"\n[policy]\n",
    b"9999-12-31",
    b"0000-00-00",
    b"2026-02-30",
    b"\x00",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff\xff\xff\xff\x0f",
    b"\x0a\xff\xff\xff\xff\x07",
];

pub(super) fn mutate(rng: &mut StdRng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..10) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = rng.gen();
            }
            2 => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                v.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let chunk = v[a..b].to_vec();
                for _ in 0..rng.gen_range(1..8) {
                    v.splice(b..b, chunk.iter().copied());
                }
            }
            5 if len > 0 => v.truncate(rng.gen_range(0..len)),
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() {
                    let a = rng.gen_range(0..other.len());
                    let b = rng.gen_range(a..=other.len());
                    let at = rng.gen_range(0..=len);
                    v.splice(at..at, other[a..b].iter().copied());
                }
            }
            7 | 8 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())];
                let at = rng.gen_range(0..=len);
                if rng.gen_bool(0.5) && at < len {
                    // Replace what is there (a number, a quote, a byte).
                    let end = (at + token.len()).min(len);
                    v.splice(at..end, token.iter().copied());
                } else {
                    v.splice(at..at, token.iter().copied());
                }
            }
            _ => {
                // Replace a run of digits with a large or odd number.
                if let Some(start) = v.iter().position(|b| b.is_ascii_digit()).map(|p| {
                    let skip = rng.gen_range(0..len.max(1));
                    v.iter().skip(skip).position(|b| b.is_ascii_digit()).map(|q| q + skip).unwrap_or(p)
                }) {
                    let end = v[start..].iter().position(|b| !b.is_ascii_digit()).map(|n| start + n).unwrap_or(len);
                    let n: u128 = rng.gen();
                    let text = match rng.gen_range(0..3) {
                        0 => n.to_string(),
                        1 => format!("-{}", n % 1000),
                        _ => format!("{}.{}", n % 100_000, n % 1000),
                    };
                    v.splice(start..end, text.bytes());
                }
            }
        }
    }
    v.truncate(MAX_LEN);
    v
}
