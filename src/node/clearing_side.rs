//! A node's side of monthly clearing: its settlements as clearing lines (as
//! home region from its committed results, as treatment region from the
//! outcomes it recorded), and running totals per month and counterpart kept
//! as settlements commit, so a month's summaries cost nothing to build.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use super::records::{HomeSettlementEntry, OutcomeEntry};
use super::{ledger_error, Node};
use crate::api::envelope;
use crate::api::NodeError;
use crate::clearing::{Line, Month, PairSummary};
use crate::ledger::EntryKind;
use crate::proto::ClaimResult;
use crate::region::RegionCode;

/// Which side of a pair a node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    AsTreatment,
    AsHome,
}

impl Side {
    /// The other region of `line` as seen from this side.
    pub fn counterpart(self, line: &Line) -> RegionCode {
        match self {
            Side::AsTreatment => line.home,
            Side::AsHome => line.treatment,
        }
    }
}

/// Whether a ledger entry records a claim the home region refused: by its
/// rules (a settlement outcome that did not settle) or for good
/// (`settlement_ended`).
pub fn is_refusal(kind: EntryKind, key: &str, payload: &[u8]) -> bool {
    match kind {
        EntryKind::SettlementEnded => {
            serde_json::from_slice::<super::records::EndedEntry>(payload).is_ok_and(|e| !e.reversal)
        }
        EntryKind::Settlement if super::keys::is_outcome(key) => serde_json::from_slice::<OutcomeEntry>(payload)
            .ok()
            .and_then(|o| result_of(&o.result))
            .is_some_and(|r| !r.settled && !r.refusal.is_empty()),
        _ => false,
    }
}

fn result_of(rec: &super::records::EnvelopeRecord) -> Option<ClaimResult> {
    rec.to_signed().and_then(|s| envelope::peek::<ClaimResult>(&s).ok())
}

/// The clearing line of a committed settlement or reversal recorded under
/// (`kind`, `key`, `payload`), and the side this node (`own`) saw it from: as
/// home region (its committed result) or as treatment region (the home
/// node's result it recorded; the home region is the result's signer).
pub fn line_of(kind: EntryKind, key: &str, payload: &[u8], own: RegionCode) -> Option<(Side, Line)> {
    if !matches!(kind, EntryKind::Settlement | EntryKind::Reversal) {
        return None;
    }
    let (side, result, home, treatment) = if super::keys::is_claim(key) {
        let rec: HomeSettlementEntry = serde_json::from_slice(payload).ok()?;
        let result = result_of(&rec.result)?;
        (Side::AsHome, result, own, RegionCode::parse(&rec.treatment).ok()?)
    } else if super::keys::is_outcome(key) {
        let rec: OutcomeEntry = serde_json::from_slice(payload).ok()?;
        let result = result_of(&rec.result)?;
        let home = RegionCode::parse(&rec.result.signer).ok()?;
        (Side::AsTreatment, result, home, own)
    } else {
        return None;
    };
    Some((side, line_from(&result, home, treatment)?))
}

/// The clearing line of `result` between `home` and `treatment`, if it
/// settled (what [`line_of`] reads from a ledger entry).
pub(crate) fn line_from(result: &ClaimResult, home: RegionCode, treatment: RegionCode) -> Option<Line> {
    crate::api::convert::line_of_result(result, home, treatment).ok().flatten()
}

impl Node {
    /// This node's lines of `month`, as treatment region and as home region
    /// (scans the ledger; used to reconcile a pair item by item).
    pub fn month_lines(&self, month: Month) -> Result<(Vec<Line>, Vec<Line>), NodeError> {
        let (mut t, mut h) = (Vec::new(), Vec::new());
        let own = self.region();
        self.ledger
            .for_each(0, |e| {
                if let Some((side, line)) = line_of(e.body.kind, &e.body.key, &e.body.payload, own) {
                    if line.month == month {
                        match side {
                            Side::AsTreatment => t.push(line),
                            Side::AsHome => h.push(line),
                        }
                    }
                }
                Ok(())
            })
            .map_err(ledger_error)?;
        Ok((t, h))
    }

    /// Summaries of `month` per (side, counterpart) and its activity as
    /// treatment region, from the state store caught up to the ledger.
    pub fn month_summaries(&self, month: Month) -> Result<BTreeMap<(Side, RegionCode), PairSummary>, NodeError> {
        Ok(self.home.month_report(&self.ledger, month).map_err(super::state_error)?.0)
    }

    /// `month`'s count and sums per (side, counterpart), without the roots
    /// over the ids (for display).
    pub fn month_totals(
        &self,
        month: Month,
    ) -> Result<BTreeMap<(Side, RegionCode), super::state::PairTotals>, NodeError> {
        self.apply_home()?;
        self.home.month_totals(month).map_err(super::state_error)
    }
}

impl Node {
    /// Checks a request is signed by the configured clearing operator.
    fn operator_request<M: prost::Message + Default>(&self, env: &crate::proto::Signed) -> Result<M, NodeError> {
        let key = self
            .config
            .operator_key
            .as_ref()
            .ok_or_else(|| NodeError::NotAuthorised("no clearing operator is configured".into()))?;
        envelope::open(env, key, envelope::OPERATOR_DOMAIN)
            .map_err(|e| NodeError::BadSignature(format!("operator: {e}")))
    }

    /// The signed report of a month: per counterpart and side, count, sums and
    /// the root over the settlement ids, with this node's signed tree head.
    /// Asked to seal (the operator's close), the node seals the month first
    /// ([`Node::seal_month`]); a sealed month's report is the one signed as
    /// it was sealed, whoever asks and however often.
    pub async fn handle_report_request(
        self: &std::sync::Arc<Self>,
        env: crate::proto::Signed,
    ) -> Result<crate::proto::Signed, NodeError> {
        let req: crate::proto::ReportRequest = self.operator_request(&env)?;
        let month = Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        if let Some(sealed) = self.sealed_report(month)? {
            return Ok(sealed);
        }
        if req.seal {
            // To completion: a caller that goes away (a timeout) must not
            // leave the seal on the ledger and the node committing into it.
            let node = std::sync::Arc::clone(self);
            super::run_to_completion("seal", async move { node.seal_month(month).await }).await
        } else {
            Ok(self.month_report(month)?)
        }
    }

    /// Seals `month` at this node: signs its report, records it on the
    /// ledger (`seal:YYYY-MM`), and from then on commits go to a later month
    /// ([`Node::month_floor`]). A month that has not begun by this node's
    /// clock is refused. Sealing twice returns the first seal's report.
    pub async fn seal_month(&self, month: Month) -> Result<crate::proto::Signed, NodeError> {
        let today = Month::parse(&crate::time::month_of(self.clock.now_ms()))
            .ok_or_else(|| NodeError::Internal("clock outside the calendar".into()))?;
        if month > today {
            return Err(NodeError::bad(
                "month",
                format!("{month} has not begun at this node (its clock says {today})"),
            ));
        }
        // Alone: every commit that chose this month is on the ledger, and
        // none chooses it while the seal is written.
        let _gate = self.seal_gate.write().await;
        // The ledger, not the set: a seal cancelled after its append is there.
        let report = match self.ledger.entry_by_key(&seal_key(month)).map_err(ledger_error)? {
            Some(_) => None,
            None => {
                // Months are sealed in order: a skipped month with lines
                // here would never be cleared.
                let sealed = self.sealed_months();
                let skipped = self.lines_months()?.into_iter().find(|m| *m < month && !sealed.contains(m));
                if let Some(earlier) = skipped {
                    return Err(NodeError::bad(
                        "month",
                        format!(
                            "{earlier} has settlements at this node and is not sealed: close {earlier} before {month}"
                        ),
                    ));
                }
                let report = self.month_report(month)?;
                let payload = super::records::to_payload(&super::records::EnvelopeRecord::from(&report));
                self.ledger.append(EntryKind::MonthSeal, &seal_key(month), payload).await.map_err(ledger_error)?;
                Some(report)
            }
        };
        self.seals.write().map_err(|_| NodeError::Internal("seals lock poisoned".into()))?.insert(month);
        let Some(report) = report else {
            return self.sealed_report(month)?.ok_or_else(|| NodeError::Internal(format!("seal of {month}")));
        };
        tracing::info!(month = %month, "month sealed");
        Ok(report)
    }

    /// The report signed when `month` was sealed here, if it was.
    fn sealed_report(&self, month: Month) -> Result<Option<crate::proto::Signed>, NodeError> {
        if !self.seals.read().map_err(|_| NodeError::Internal("seals lock poisoned".into()))?.contains(&month) {
            return Ok(None);
        }
        let entry = self.ledger.entry_by_key(&seal_key(month)).map_err(ledger_error)?;
        let record: Option<super::records::EnvelopeRecord> =
            entry.and_then(|e| serde_json::from_slice(&e.body.payload).ok());
        record
            .and_then(|r| r.to_signed())
            .map(Some)
            .ok_or_else(|| NodeError::Internal(format!("the seal of {month} is unreadable")))
    }

    /// This node's report of `month` as its running totals stand now, signed.
    fn month_report(&self, month: Month) -> Result<crate::proto::Signed, NodeError> {
        let (summaries, activity) = self.home.month_report(&self.ledger, month).map_err(super::state_error)?;
        let pairs = summaries
            .iter()
            .map(|((side, counterpart), s)| {
                crate::api::convert::pair_report(*side == Side::AsTreatment, *counterpart, s)
            })
            .collect();
        let head = self.ledger.head();
        let report = crate::proto::MonthReport {
            region: self.region().to_string(),
            month: month.to_string(),
            pairs,
            head_size: head.size,
            head_root: hex::encode(head.root),
            head_timestamp_ms: head.timestamp_ms,
            head_signature: hex::encode(head.signature),
            refusals: self.refusals_clearing_in(month)?,
            settled_count: activity.settled,
            refused_count: activity.refused,
        };
        Ok(envelope::seal(&self.key, envelope::REPORT_DOMAIN, &self.region().to_string(), &report))
    }

    /// One signed page of the lines of one pair of a month, from this node's
    /// ledger, in ledger order from the request's `from_index`.
    pub fn handle_lines_request(&self, env: crate::proto::Signed) -> Result<crate::proto::Signed, NodeError> {
        let req = self.lines_request(&env)?;
        self.lines_page(&req)
    }

    /// A lines request, checked to come from the operator. Cheap; the page
    /// itself ([`Node::lines_page`]) reads the ledger.
    pub fn lines_request(&self, env: &crate::proto::Signed) -> Result<crate::proto::LinesRequest, NodeError> {
        self.operator_request(env)
    }

    /// The signed page a checked lines request asks for. It reads and
    /// decodes every ledger entry from the page's start until the page is
    /// full, which for a small pair of a busy month can be most of the
    /// month: the gRPC service runs it on a blocking thread, not on a
    /// runtime worker that settlements need.
    pub fn lines_page(&self, req: &crate::proto::LinesRequest) -> Result<crate::proto::Signed, NodeError> {
        let month = Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        let counterpart =
            RegionCode::parse(&req.counterpart).map_err(|e| NodeError::bad("counterpart", e.to_string()))?;
        let side = if req.as_treatment { Side::AsTreatment } else { Side::AsHome };
        let page = self.pair_lines(month, side, counterpart, req.from_index, page_limit(req.limit))?;
        let list = crate::proto::LineList {
            region: self.region().to_string(),
            month: month.to_string(),
            lines: page.lines.iter().map(crate::api::convert::line_to_proto).collect(),
            counterpart: counterpart.to_string(),
            as_treatment: req.as_treatment,
            from_index: req.from_index,
            more: page.next_index.is_some(),
            next_index: page.next_index.unwrap_or_default(),
        };
        Ok(envelope::seal(&self.key, envelope::LINES_DOMAIN, &self.region().to_string(), &list))
    }

    /// Up to `limit` lines of (`month`, `side`, `counterpart`) from ledger
    /// index `from` on, and the index of the next such line if there is one.
    pub fn pair_lines(
        &self,
        month: Month,
        side: Side,
        counterpart: RegionCode,
        from: u64,
        limit: usize,
    ) -> Result<LinePage, NodeError> {
        let first = self.first_line_index(month, [])?;
        let mut page = LinePage::default();
        let Some(first) = first else { return Ok(page) };
        let own = self.region();
        self.ledger
            .scan(from.max(first), |e| {
                let Some((s, line)) = line_of(e.body.kind, &e.body.key, &e.body.payload, own) else {
                    return Ok(ControlFlow::Continue(()));
                };
                if s != side || line.month != month || s.counterpart(&line) != counterpart {
                    return Ok(ControlFlow::Continue(()));
                }
                if page.lines.len() == limit {
                    page.next_index = Some(e.frame.seq);
                    return Ok(ControlFlow::Break(()));
                }
                page.lines.push(line);
                Ok(ControlFlow::Continue(()))
            })
            .map_err(ledger_error)?;
        Ok(page)
    }

    /// The ledger index of the first line of `month` or of any of `others`
    /// (scans for those months' lines start there); `None`: no such line.
    pub(crate) fn first_line_index(
        &self,
        month: Month,
        others: impl IntoIterator<Item = Month>,
    ) -> Result<Option<u64>, NodeError> {
        self.apply_home()?;
        let mut first = None;
        for m in std::iter::once(month).chain(others) {
            let at = self.home.first_line(m).map_err(super::state_error)?;
            if let Some(i) = at {
                first = Some(first.map_or(i, |f: u64| f.min(i)));
            }
        }
        Ok(first)
    }

    /// The months with a clearing line here, either side, caught up to the
    /// ledger.
    pub(crate) fn lines_months(&self) -> Result<Vec<Month>, NodeError> {
        self.apply_home()?;
        self.home.months_with_lines().map_err(super::state_error)
    }
}

/// The ledger key of a month's seal.
pub fn seal_key(month: Month) -> String {
    super::keys::seal(month)
}

/// Lines per page of a pair's lines: a page of the longest lines, hex-encoded
/// on the operator's ledger, stays under the ledger's 1 MiB payload limit
/// (tested in `tests/it/operator.rs`).
pub const MAX_LINES_PER_PAGE: usize = 2_000;

fn page_limit(requested: u32) -> usize {
    match usize::try_from(requested) {
        Ok(n) if n > 0 => n.min(MAX_LINES_PER_PAGE),
        _ => MAX_LINES_PER_PAGE,
    }
}

/// One page of a pair's lines.
#[derive(Debug, Default)]
pub struct LinePage {
    pub lines: Vec<Line>,
    /// Where the next page starts, if more lines follow.
    pub next_index: Option<u64>,
}

/// A month's final statement as a node keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FinalStatementEntry {
    pub notice: super::records::EnvelopeRecord,
    pub statement_hash: String,
}

impl Node {
    /// The operator's notice that a month's statement is final: checked
    /// (the operator's signatures on the notice and on the statement, the
    /// month) and kept once; the same statement again is acknowledged, a
    /// different one for the same month refused. What it starts (the
    /// institutions' statements, the audit sample: [`Node::after_final`]) is
    /// the caller's to run, after answering the operator.
    pub async fn handle_final_statement(
        &self,
        env: crate::proto::Signed,
    ) -> Result<crate::proto::FinalStatementReceipt, NodeError> {
        use sha2::Digest;
        let key = self
            .config
            .operator_key
            .as_ref()
            .ok_or_else(|| NodeError::NotAuthorised("no clearing operator is configured".into()))?;
        let notice: crate::proto::FinalNotice = envelope::open(&env, key, envelope::FINAL_DOMAIN)
            .map_err(|e| NodeError::BadSignature(format!("operator: {e}")))?;
        let statement = notice.statement.as_ref().ok_or_else(|| NodeError::bad("statement", "missing"))?;
        envelope::verify(statement, key, envelope::STATEMENT_DOMAIN)
            .map_err(|e| NodeError::BadSignature(format!("the statement: {e}")))?;
        let parsed: crate::clearing::Statement = serde_json::from_slice(&statement.body)
            .map_err(|e| NodeError::bad("statement", format!("not a statement: {e}")))?;
        let month = Month::parse(&notice.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        if parsed.month != month {
            return Err(NodeError::bad("month", format!("the statement is of {}, not {month}", parsed.month)));
        }
        let hash = hex::encode(sha2::Sha256::digest(&statement.body));
        let k = super::keys::final_statement(month);
        if let Some(held) = self.ledger.entry_by_key(&k).map_err(ledger_error)? {
            let held: FinalStatementEntry = serde_json::from_slice(&held.body.payload)
                .map_err(|e| NodeError::Internal(format!("final statement entry: {e}")))?;
            if held.statement_hash != hash {
                return Err(NodeError::bad(
                    "statement",
                    format!("{month}'s final statement {} is recorded already", &held.statement_hash[..16]),
                ));
            }
        } else {
            let entry = FinalStatementEntry {
                notice: super::records::EnvelopeRecord::from(&env),
                statement_hash: hash.clone(),
            };
            let payload = super::records::to_payload(&entry);
            self.ledger.append(EntryKind::FinalStatement, &k, payload.clone()).await.map_err(ledger_error)?;
            self.issued.write().map_err(|_| NodeError::Internal("statements lock poisoned".into()))?.note(
                EntryKind::FinalStatement,
                &k,
                &payload,
            );
        }

        Ok(crate::proto::FinalStatementReceipt { month: month.to_string(), statement_hash: hash })
    }

    /// The final statement of `month` this node holds, if the operator has sent it.
    pub fn final_statement(&self, month: Month) -> Result<Option<crate::proto::Signed>, NodeError> {
        let Some(e) = self.ledger.entry_by_key(&super::keys::final_statement(month)).map_err(ledger_error)? else {
            return Ok(None);
        };
        let held: FinalStatementEntry = serde_json::from_slice(&e.body.payload)
            .map_err(|e| NodeError::Internal(format!("final statement entry: {e}")))?;
        let notice: crate::proto::FinalNotice = held
            .notice
            .to_signed()
            .and_then(|s| envelope::peek(&s).ok())
            .ok_or_else(|| NodeError::Internal("final statement entry: unreadable notice".into()))?;
        Ok(notice.statement)
    }
}
