//! A closed month's statement as files beside the operator's ledger:
//! `<dir>/<YYYY-MM>.json` (the signed canonical bytes) and `.csv`. The
//! ledger is the record; these are copies for people and spreadsheets,
//! written again (the same bytes) whenever the month is closed again.

use std::path::{Path, PathBuf};

use super::Closed;

/// Writes `closed`'s statement into `dir` (created if missing); returns the
/// JSON file's path.
pub fn write_statement(dir: &Path, closed: &Closed) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let month = closed.statement.month;
    let json = dir.join(format!("{month}.json"));
    std::fs::write(&json, &closed.signed.body).map_err(|e| format!("{}: {e}", json.display()))?;
    let csv = dir.join(format!("{month}.csv"));
    std::fs::write(&csv, closed.statement.to_csv()).map_err(|e| format!("{}: {e}", csv.display()))?;
    Ok(json)
}
