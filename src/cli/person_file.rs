//! A person file (a JSON array of person records) read record by record, so
//! a region's population is never parsed into memory whole.

use std::path::Path;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use xclear::node::records::PersonRecord;

/// Reads the array in `path`, handing its records to `f` in chunks of up to
/// `chunk`; returns how many were read. Stops at the first record that is not
/// one (naming its index) or the first error of `f`: chunks before it were
/// handed on.
pub(crate) fn stream(
    path: &Path,
    chunk: usize,
    f: impl FnMut(Vec<PersonRecord>) -> Result<(), String>,
) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let read =
        Chunks { chunk: chunk.max(1), f }.deserialize(&mut de).map_err(|e| format!("{}: {e}", path.display()))?;
    de.end().map_err(|e| format!("{}: after the array: {e}", path.display()))?;
    Ok(read)
}

/// [`stream`] on a blocking thread, its chunks sent to the receiver (two
/// ahead at most); the handle gives what `stream` returns. Dropping the
/// receiver stops the reading.
pub(crate) fn spawn(
    path: &Path,
    chunk: usize,
) -> (tokio::sync::mpsc::Receiver<Vec<PersonRecord>>, tokio::task::JoinHandle<Result<u64, String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        stream(&path, chunk, |c| tx.blocking_send(c).map_err(|_| "the import stopped".to_string()))
    });
    (rx, reader)
}

struct Chunks<F> {
    chunk: usize,
    f: F,
}

impl<'de, F: FnMut(Vec<PersonRecord>) -> Result<(), String>> DeserializeSeed<'de> for Chunks<F> {
    type Value = u64;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Vec<PersonRecord>) -> Result<(), String>> Visitor<'de> for Chunks<F> {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of person records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<u64, A::Error> {
        let mut read = 0u64;
        let mut pending = Vec::with_capacity(self.chunk);
        loop {
            let next = seq.next_element::<PersonRecord>().map_err(|e| A::Error::custom(format!("[{read}]: {e}")))?;
            let Some(r) = next else { break };
            pending.push(r);
            read += 1;
            if pending.len() == self.chunk {
                (self.f)(std::mem::take(&mut pending)).map_err(A::Error::custom)?;
            }
        }
        if !pending.is_empty() {
            (self.f)(pending).map_err(A::Error::custom)?;
        }
        Ok(read)
    }
}
