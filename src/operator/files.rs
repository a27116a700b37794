//! A closed month's statement as files beside the operator's ledger:
//! `<dir>/<YYYY-MM>.json` (the signed canonical bytes) and `.csv`. The
//! ledger is the record; these are copies for people and spreadsheets,
//! written again (the same bytes) whenever the month is closed again.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Closed;

/// Writes `closed`'s statement into `dir` (created if missing). Each file
/// appears whole or not at all: a reader never sees half a statement, even
/// after a crash.
pub fn write_statement(dir: &Path, closed: &Closed) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let month = closed.statement.month;
    replace(&dir.join(format!("{month}.json")), &closed.signed.body)?;
    replace(&dir.join(format!("{month}.csv")), closed.statement.to_csv().as_bytes())
}

/// Replaces `path` with `bytes`: written and synced beside it, then renamed
/// over it.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_nothing_is_left_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("2026-03.csv");
        replace(&path, b"first, longer contents").expect("first");
        replace(&path, b"second").expect("second");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["2026-03.csv"]);
    }
}
