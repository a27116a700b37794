//! The national clearing operator: collects every node's signed monthly
//! report, reconciles each (home, treatment) pair — equal summaries clear as
//! one aggregate, differing pairs are matched by id from the nodes' signed
//! line lists — nets, checks advance funds, and signs a statement carrying
//! every node's signed tree head. Regions confirm or dispute it; disputed
//! lines leave the month. Everything received and issued is on the
//! operator's ledger.

pub mod client;
pub mod config;
pub mod console;
pub mod error;
pub mod files;
pub mod grpc;
pub mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::api::convert::{line_from_proto, signed_amount};
use crate::api::envelope::{
    self, ADJUSTMENT_DOMAIN, CONFIRMATION_DOMAIN, LINES_DOMAIN, OPERATOR_DOMAIN, REPORT_DOMAIN, STATEMENT_DOMAIN,
};
use crate::clearing::statement::HeadRef;
use crate::clearing::{close, Channel, ClosingInput, Dispute, Line, Month, PairSummary, PendingItem, Statement};
use crate::clock::Clock;
use crate::ledger::{EntryKind, Ledger, LedgerError};
use crate::money::Amount;
use crate::proto::{AdjustmentRequest, Confirmation, LineList, LinesRequest, MonthReport, ReportRequest, Signed};
use crate::region::{CorpsLocalPairs, RegionCode};
use crate::transport::{BoxFuture, TransportError};
pub use error::OperatorError;

/// How the operator reaches the nodes.
pub trait ReportTransport: Send + Sync {
    fn month_report(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>>;
    fn lines(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>>;
    /// Tells a node a month's statement is final (a `Signed<FinalNotice>`).
    fn final_statement(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// A closed month: the statement and the operator's signature over its canonical bytes.
#[derive(Debug, Clone)]
pub struct Closed {
    pub statement: Statement,
    pub signed: Signed,
    pub hash: String,
}

pub struct Operator {
    nodes: BTreeMap<RegionCode, VerifyingKey>,
    key: SigningKey,
    ledger: Ledger,
    transport: Arc<dyn ReportTransport>,
    pairs: CorpsLocalPairs,
    quotas: BTreeMap<RegionCode, Amount>,
    warning_pct: Option<u32>,
    /// Lines asked for per page (0: the node's maximum).
    lines_page: u32,
    /// Where a closed month's statement is also written as files, if anywhere.
    statement_files: Option<std::path::PathBuf>,
    /// The ledger's statements, adjustments and answers by month.
    index: std::sync::RwLock<index::MonthIndex>,
    clock: Arc<dyn Clock>,
    /// How long after a month's end (Asia/Shanghai) it may be closed.
    close_grace: std::time::Duration,
    /// Held by a close from its checks to its statement, and by every answer
    /// and adjustment: a month cannot become final, or be closed past, while
    /// it is being closed.
    month_end: tokio::sync::Mutex<()>,
}

/// The default wait after a month's end before it may be closed: long
/// enough for the settlements in flight at midnight to commit.
pub const DEFAULT_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

use crate::time::month_end_ms;

fn unreachable(region: RegionCode, e: TransportError) -> OperatorError {
    match e {
        TransportError::Unreachable(m) => OperatorError::RegionUnreachable(format!("{region} ({m})")),
        TransportError::Refused { reason, message } => {
            OperatorError::RegionRefused(region.to_string(), format!("{reason}: {message}"))
        }
        TransportError::Internal(m) => OperatorError::Internal(m),
    }
}

/// The month and adjustment an adjustment request names.
/// A line is named by its settlement or reversal id (S or R, then letters
/// and digits): an empty or malformed one would be recorded and then hold
/// nothing out (or deduct from no one).
fn setl_id(field: &str, id: &str) -> Result<(), OperatorError> {
    let malformed = id.len() < 8
        || id.len() > 64
        || !(id.starts_with('S') || id.starts_with('R'))
        || !id.bytes().all(|b| b.is_ascii_alphanumeric());
    match malformed {
        true => Err(OperatorError::bad(field, format!("{id:?} is not a settlement or reversal id (S... or R...)"))),
        false => Ok(()),
    }
}

/// The adjustments a region's month report asks for: its audit refusals
/// (拒付) as treatment region, each deducted from what the home owes it.
fn refusal_adjustments(
    region: RegionCode,
    report: &MonthReport,
) -> Result<Vec<crate::clearing::netting::Adjustment>, OperatorError> {
    let bad = |e: String| OperatorError::BadRegionAnswer(region.to_string(), e);
    report
        .refusals
        .iter()
        .map(|r| {
            setl_id("refusals.setl_id", &r.setl_id).map_err(|e| bad(e.to_string()))?;
            let home = RegionCode::parse(&r.home).map_err(|e| bad(format!("refusal of {}: {e}", r.setl_id)))?;
            let amount = Amount::parse_non_negative(&r.amount)
                .ok()
                .filter(|a| *a > Amount::ZERO)
                .ok_or_else(|| bad(format!("refusal of {}: amount {:?}", r.setl_id, r.amount)))?;
            Ok(crate::clearing::netting::Adjustment {
                home,
                treatment: region,
                amount: -amount,
                reason: format!("拒付 audit {}: {}", r.month, r.reason),
                setl_id: Some(r.setl_id.clone()),
            })
        })
        .collect()
}

fn adjustment_of(req: &AdjustmentRequest) -> Result<(Month, crate::clearing::netting::Adjustment), OperatorError> {
    let month = Month::parse(&req.month).ok_or_else(|| OperatorError::bad("month", "not YYYY-MM"))?;
    Ok((
        month,
        crate::clearing::netting::Adjustment {
            home: crate::api::convert::region("home", &req.home).map_err(OperatorError::request)?,
            treatment: crate::api::convert::region("treatment", &req.treatment).map_err(OperatorError::request)?,
            amount: signed_amount("amount", &req.amount).map_err(OperatorError::request)?,
            reason: req.reason.clone(),
            setl_id: match req.setl_id.trim() {
                "" => None,
                id => {
                    setl_id("setl_id", id)?;
                    Some(id.to_string())
                }
            },
        },
    ))
}

/// (home, treatment) -> what the treatment side and the home side reported.
type PairSides = BTreeMap<(RegionCode, RegionCode), (Option<PairSummary>, Option<PairSummary>)>;

/// Every pair of the month as both sides reported it.
fn pair_sides(reports: &BTreeMap<RegionCode, MonthReport>) -> Result<PairSides, OperatorError> {
    let mut sides = PairSides::new();
    for (region, r) in reports {
        for p in &r.pairs {
            let (other, as_treatment, summary) = crate::api::convert::pair_report_from_proto(p)
                .map_err(|e| OperatorError::BadRegionAnswer(region.to_string(), e.to_string()))?;
            if as_treatment {
                sides.entry((other, *region)).or_default().0 = Some(summary);
            } else {
                sides.entry((*region, other)).or_default().1 = Some(summary);
            }
        }
    }
    Ok(sides)
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn ledger_err(e: LedgerError) -> OperatorError {
    OperatorError::Internal(e.to_string())
}

impl Operator {
    pub fn open(
        dir: &std::path::Path,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        nodes: BTreeMap<RegionCode, VerifyingKey>,
        transport: Arc<dyn ReportTransport>,
        pairs: CorpsLocalPairs,
        quotas: BTreeMap<RegionCode, Amount>,
    ) -> Result<Operator, LedgerError> {
        let ledger = Ledger::open(dir, key.clone(), Arc::clone(&clock))?;
        let mut month_index = index::MonthIndex::default();
        ledger.for_each(0, |e| {
            month_index.note(e.body.kind, &e.body.key);
            Ok(())
        })?;
        Ok(Operator {
            nodes,
            ledger,
            key,
            transport,
            pairs,
            quotas,
            warning_pct: None,
            lines_page: 0,
            statement_files: None,
            index: std::sync::RwLock::new(month_index),
            clock,
            close_grace: DEFAULT_CLOSE_GRACE,
            month_end: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets how long after a month's end it may be closed.
    pub fn with_close_grace(mut self, grace: std::time::Duration) -> Operator {
        self.close_grace = grace;
        self
    }

    /// Sets the advance-fund warning threshold (percent of the quota).
    pub fn with_warning_pct(mut self, pct: u32) -> Operator {
        self.warning_pct = Some(pct);
        self
    }

    /// Writes every statement this operator closes into `dir` as well
    /// ([`files::write_statement`]), however the close was asked for.
    pub fn with_statement_files(mut self, dir: std::path::PathBuf) -> Operator {
        self.statement_files = Some(dir);
        self
    }

    /// Asks nodes for at most `n` lines per page (the node caps it at its
    /// own maximum).
    pub fn with_lines_page(mut self, n: u32) -> Operator {
        self.lines_page = n;
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Appends a signed envelope the operator received or issued to its
    /// ledger, and files it in the month index ([`Operator::recorded_envelope`]
    /// reads it back).
    async fn record(&self, kind: EntryKind, key: &str, env: &Signed) -> Result<(), LedgerError> {
        let payload = crate::api::record::to_payload(&crate::api::record::EnvelopeRecord::from(env));
        self.ledger.append(kind, key, payload).await?;
        // Also when the key already stood: an earlier attempt may have been
        // cancelled between its append and this line.
        self.index.write().map_err(|_| LedgerError::Failed)?.note(kind, key);
        Ok(())
    }

    /// What the ledger holds for `month`, by key.
    fn month_entries(&self, month: Month) -> Result<index::MonthEntries, OperatorError> {
        let ix = self.index.read().map_err(|_| OperatorError::Internal("operator index lock poisoned".into()))?;
        Ok(ix.month(month))
    }

    /// The envelope recorded under `key` on the operator's ledger.
    fn recorded_envelope(&self, key: &str) -> Result<Signed, OperatorError> {
        let bad = |what: String| OperatorError::Internal(format!("{key} on the operator's ledger: {what}"));
        let e = self.ledger.entry_by_key(key).map_err(ledger_err)?.ok_or_else(|| bad("missing".into()))?;
        let record: crate::api::record::EnvelopeRecord =
            serde_json::from_slice(&e.body.payload).map_err(|e| bad(e.to_string()))?;
        record.to_signed().ok_or_else(|| bad("not an envelope".into()))
    }

    /// A node's signed report of `month`; `seal`: the node seals the month
    /// (a close), else it reports the month so far (an advance-fund look).
    async fn report(&self, region: RegionCode, month: Month, seal: bool) -> Result<MonthReport, OperatorError> {
        let req =
            envelope::seal(&self.key, OPERATOR_DOMAIN, "operator", &ReportRequest { month: month.to_string(), seal });
        let env = self.transport.month_report(region, req).await.map_err(|e| unreachable(region, e))?;
        let key = self.nodes.get(&region).ok_or_else(|| OperatorError::UnknownRegion(region.to_string()))?;
        let report: MonthReport = envelope::open(&env, key, REPORT_DOMAIN)
            .map_err(|e| OperatorError::BadSignature(format!("{region}: {e}")))?;
        if report.region != region.to_string() || report.month != month.to_string() {
            return Err(OperatorError::BadRegionAnswer(
                region.to_string(),
                "a report for another region or month".into(),
            ));
        }
        let k = index::keys::report(month, region, report.head_size, &hex::encode(Sha256::digest(&env.body)));
        self.record(EntryKind::Report, &k, &env).await.map_err(ledger_err)?;
        Ok(report)
    }

    /// All lines of one pair as `region` reports them, page by page, each
    /// page signed by the region, bound to the request it answers, and
    /// recorded on the operator's ledger.
    async fn lines(
        &self,
        region: RegionCode,
        month: Month,
        counterpart: RegionCode,
        as_treatment: bool,
    ) -> Result<Vec<Line>, OperatorError> {
        let key = self.nodes.get(&region).ok_or_else(|| OperatorError::UnknownRegion(region.to_string()))?;
        let mut lines = Vec::new();
        let mut from_index = 0;
        loop {
            let req = LinesRequest {
                month: month.to_string(),
                counterpart: counterpart.to_string(),
                as_treatment,
                from_index,
                limit: self.lines_page,
            };
            let env = self
                .transport
                .lines(region, envelope::seal(&self.key, OPERATOR_DOMAIN, "operator", &req))
                .await
                .map_err(|e| unreachable(region, e))?;
            let page: LineList = envelope::open(&env, key, LINES_DOMAIN)
                .map_err(|e| OperatorError::BadSignature(format!("{region}: {e}")))?;
            let answers = page.region == region.to_string()
                && page.month == req.month
                && page.counterpart == req.counterpart
                && page.as_treatment == as_treatment
                && page.from_index == from_index
                && (!page.more || page.next_index > from_index);
            if !answers {
                return Err(OperatorError::BadRegionAnswer(
                    region.to_string(),
                    "a page of lines for another request".into(),
                ));
            }
            for l in &page.lines {
                lines.push(line_from_proto(l).map_err(OperatorError::region_answer(region))?);
            }
            let side = if as_treatment { "t" } else { "h" };
            let digest = hex::encode(Sha256::digest(&env.body));
            let k = index::keys::lines(month, region, counterpart, side, from_index, &digest);
            self.record(EntryKind::Report, &k, &env).await.map_err(ledger_err)?;
            if !page.more {
                return Ok(lines);
            }
            from_index = page.next_index;
        }
    }

    /// Closes `month`: every node's report, pairs reconciled, disputes and
    /// adjustments applied, netted, signed, recorded. [`Operator::close`]
    /// checks first that it may.
    async fn close_month(
        &self,
        month: Month,
        disputes: &[Dispute],
        carried: &[PendingItem],
    ) -> Result<Closed, OperatorError> {
        let mut reports = BTreeMap::new();
        for region in self.nodes.keys() {
            reports.insert(*region, self.report(*region, month, true).await?);
        }
        let mut adjustments = self.adjustments_of(month)?;
        for (region, report) in &reports {
            adjustments.extend(refusal_adjustments(*region, report)?);
        }
        let activity = reports
            .iter()
            .map(|(r, rep)| {
                (*r, crate::clearing::statement::Activity { settled: rep.settled_count, refused: rep.refused_count })
            })
            .filter(|(_, a)| a.settled + a.refused > 0)
            .collect();
        let mut input = ClosingInput {
            activity,
            adjustments,
            disputes: disputes.to_vec(),
            carried: carried.to_vec(),
            quotas: self.quotas_for(month)?,
            node_heads: reports
                .iter()
                .map(|(r, rep)| (*r, HeadRef { size: rep.head_size, root: rep.head_root.clone() }))
                .collect(),
            answers_applied: self.month_entries(month)?.disputes.len() as u32,
            ..ClosingInput::default()
        };
        self.month_lines(month, &pair_sides(&reports)?, &mut input).await?;
        self.carried_lines(carried, &mut input).await?;
        let statement = close(month, &input, |a, b| self.pairs.are_partners(a, b));
        self.issue(statement).await
    }

    /// The month's lines of every pair into `input`: a pair whose two sides
    /// agree as one aggregate line, any other (or one with a disputing
    /// region in it, so the disputed line can leave it) line by line.
    async fn month_lines(
        &self,
        month: Month,
        sides: &PairSides,
        input: &mut ClosingInput,
    ) -> Result<(), OperatorError> {
        let disputing: BTreeSet<RegionCode> = input.disputes.iter().map(|d| d.region).collect();
        for ((home, treatment), (t, h)) in sides {
            let pair = crate::clearing::Pair { home: *home, treatment: *treatment };
            let disputed = disputing.contains(home) || disputing.contains(treatment);
            match (t, h) {
                (Some(t), Some(h)) if t == h && !disputed => {
                    input.matched_roots.insert(pair, hex::encode(t.ids_root));
                    let aggregate = Line {
                        setl_id: format!("{}{home}:{treatment}", crate::clearing::statement::AGGREGATE_PREFIX),
                        home: *home,
                        treatment: *treatment,
                        channel: if self.pairs.are_partners(*home, *treatment) {
                            Channel::CorpsLocal
                        } else {
                            Channel::National
                        },
                        month,
                        amounts: t.amounts,
                        // Many types: `amounts.by_type` holds the split.
                        med_type: crate::med_type::MedType::DEFAULT,
                        count: t.count,
                    };
                    input.treatment_lines.push(aggregate.clone());
                    input.home_lines.push(aggregate);
                }
                _ => {
                    if self.nodes.contains_key(treatment) {
                        input.treatment_lines.extend(self.lines(*treatment, month, *home, true).await?);
                    }
                    if self.nodes.contains_key(home) {
                        input.home_lines.extend(self.lines(*home, month, *treatment, false).await?);
                    }
                }
            }
            if let Some(h) = h {
                *input.usage.entry(*home).or_default() =
                    input.usage.get(home).copied().unwrap_or_default() + h.amounts.owed();
            }
        }
        Ok(())
    }

    /// The lines of carried items into `input`: their pairs' lines of the
    /// month each was held out, from both sides.
    async fn carried_lines(&self, carried: &[PendingItem], input: &mut ClosingInput) -> Result<(), OperatorError> {
        let carried_pairs: BTreeSet<(RegionCode, RegionCode, Month)> =
            carried.iter().map(|p| (p.pair.home, p.pair.treatment, p.since)).collect();
        for (home, treatment, since) in carried_pairs {
            let ids: BTreeSet<&str> = carried
                .iter()
                .filter(|p| p.pair.home == home && p.pair.treatment == treatment)
                .map(|p| p.setl_id.as_str())
                .collect();
            let wanted = |lines: Vec<Line>| lines.into_iter().filter(|l| ids.contains(l.setl_id.as_str()));
            if self.nodes.contains_key(&treatment) {
                input.treatment_lines.extend(wanted(self.lines(treatment, since, home, true).await?));
            }
            if self.nodes.contains_key(&home) {
                input.home_lines.extend(wanted(self.lines(home, since, treatment, false).await?));
            }
        }
        Ok(())
    }

    /// Signs and records `statement` as the month's next revision, or
    /// returns the latest statement when nothing changed.
    async fn issue(&self, mut statement: Statement) -> Result<Closed, OperatorError> {
        let month = statement.month;
        if let Some(latest) = self.statement_of(month)? {
            statement.revision = latest.statement.revision;
            if statement == latest.statement {
                return Ok(latest); // nothing new: the same statement
            }
            statement.revision = latest.statement.revision.saturating_add(1);
        }
        let bytes = statement.canonical_json();
        let hash = hex::encode(Sha256::digest(&bytes));
        let signature = crate::crypto::sign(&self.key, STATEMENT_DOMAIN, &bytes).to_bytes().to_vec();
        let signed = Signed { body: bytes, signature, signer: "operator".into(), batch: None };
        self.record(EntryKind::Statement, &index::keys::statement(month, &hash), &signed).await.map_err(ledger_err)?;
        Ok(Closed { statement, signed, hash })
    }

    /// Closes `month` with everything the ledger holds for it: the disputes
    /// filed (and not withdrawn) against its statements, the adjustments,
    /// and the items the previous month's final statement carried over.
    ///
    /// Refused: a month not over (its end in Asia/Shanghai plus the grace),
    /// a month whose statement is final (a correction is an adjustment in a
    /// later month), and a month whose previous month was closed but is not
    /// final, or not closed while an earlier one was (months close in order).
    pub async fn close(&self, month: Month) -> Result<Closed, OperatorError> {
        let _alone = self.month_end.lock().await;
        let carried = self.check_closable(month)?;
        // Every node holds the previous month's final statement before this
        // month closes (sent when it became final; again here, once each).
        if let Some(previous) = self.statement_of(month.previous())? {
            if self.is_final(&previous)? {
                self.send_final(&previous).await?;
            }
        }
        let disputes = self.disputes_of(month)?;
        let closed = self.close_month(month, &disputes, &carried).await?;
        // On the ledger already: a failed copy is reported, and closing
        // again (the same statement) writes it.
        if let Some(dir) = &self.statement_files {
            files::write_statement(dir, &closed).map_err(|e| {
                OperatorError::Internal(format!("{month} is closed, but its statement files were not written: {e}"))
            })?;
        }
        Ok(closed)
    }

    /// Tells every node that `closed` is its month's final statement.
    async fn send_final(&self, closed: &Closed) -> Result<(), OperatorError> {
        let notice = crate::proto::FinalNotice {
            month: closed.statement.month.to_string(),
            statement: Some(closed.signed.clone()),
        };
        let env = envelope::seal(&self.key, envelope::FINAL_DOMAIN, "operator", &notice);
        let sends = self.nodes.keys().map(|r| {
            let env = env.clone();
            async move { (*r, self.transport.final_statement(*r, env).await) }
        });
        for (region, sent) in futures_util::future::join_all(sends).await {
            sent.map_err(|e| unreachable(region, e))?;
        }
        Ok(())
    }

    /// Why `month` cannot be closed now, if it cannot; else the items the
    /// previous month carried into it.
    fn check_closable(&self, month: Month) -> Result<Vec<PendingItem>, OperatorError> {
        let now = self.clock.now_ms();
        let grace_ms = i64::try_from(self.close_grace.as_millis()).unwrap_or(i64::MAX);
        let closable_at = month_end_ms(month).saturating_add(grace_ms);
        if now < closable_at {
            let at = crate::time::shanghai_minute(closable_at);
            return Err(OperatorError::MonthNotOver(format!(
                "{month} is not over: it can be closed from {at} Asia/Shanghai (its end plus {} min of grace)",
                self.close_grace.as_secs() / 60
            )));
        }
        if let Some(current) = self.statement_of(month)? {
            if self.is_final(&current)? {
                return Err(OperatorError::MonthFinal(format!(
                    "{month}'s statement {} is final (confirmed by every region); a correction is an adjustment in a later month",
                    short(&current.hash)
                )));
            }
        }
        // Carried items of a later month's close would land in a month
        // already cleared past: a month before a closed one stays closed out.
        if let Some(later) = self.closed_months()?.into_iter().find(|m| *m > month) {
            return Err(OperatorError::MonthOutOfOrder(format!(
                "{later} is already closed; {month}, before it, can no longer be (months close in order)"
            )));
        }
        let previous = month.previous();
        match self.statement_of(previous)? {
            Some(prev) if self.is_final(&prev)? => Ok(prev.statement.pending),
            Some(prev) => {
                let waiting = self.unconfirmed(&prev)?;
                Err(OperatorError::MonthOutOfOrder(format!(
                    "{previous} must be final before {month} closes: its statement {} awaits {}",
                    short(&prev.hash),
                    waiting.join(", ")
                )))
            }
            None => match self.last_closed_before(month)? {
                Some(earlier) => Err(OperatorError::MonthOutOfOrder(format!(
                    "months close in order: {earlier} is the last closed month, close {} next",
                    earlier.next()
                ))),
                None => Ok(Vec::new()),
            },
        }
    }

    /// The latest month before `month` with a statement, if any.
    fn last_closed_before(&self, month: Month) -> Result<Option<Month>, OperatorError> {
        Ok(self.closed_months()?.into_iter().filter(|m| *m < month).max())
    }

    /// The months with a statement, in order.
    pub fn closed_months(&self) -> Result<Vec<Month>, OperatorError> {
        let ix = self.index.read().map_err(|_| OperatorError::Internal("operator index lock poisoned".into()))?;
        Ok(ix.closed_months())
    }

    /// The month a close asks for when none is named: the last closed month
    /// while it is not final, else the month after it; with nothing closed
    /// yet, the last month that is over by the operator's clock and grace.
    pub fn next_month_due(&self) -> Result<Month, OperatorError> {
        let Some(last) = self.closed_months()?.into_iter().max() else {
            let grace_ms = i64::try_from(self.close_grace.as_millis()).unwrap_or(i64::MAX);
            let now = self.clock.now_ms();
            let this = crate::time::month_at(now)
                .ok_or_else(|| OperatorError::Internal("clock outside the calendar".into()))?;
            let over = now >= month_end_ms(this.previous()).saturating_add(grace_ms);
            return Ok(if over { this.previous() } else { this.previous().previous() });
        };
        match self.statement_of(last)? {
            Some(s) if self.is_final(&s)? => Ok(last.next()),
            _ => Ok(last),
        }
    }

    /// The regions that confirmed this exact statement.
    pub fn confirmed_by(&self, closed: &Closed) -> Result<BTreeSet<String>, OperatorError> {
        let month = self.month_entries(closed.statement.month)?;
        Ok(month.confirmations.get(&closed.hash).cloned().unwrap_or_default())
    }

    /// Regions in a statement that have not confirmed it.
    fn unconfirmed(&self, closed: &Closed) -> Result<Vec<String>, OperatorError> {
        let month = self.month_entries(closed.statement.month)?;
        let confirmed = month.confirmations.get(&closed.hash).cloned().unwrap_or_default();
        Ok(closed.statement.node_heads.keys().map(|r| r.to_string()).filter(|r| !confirmed.contains(r)).collect())
    }

    /// The latest statement of `month` on the operator's ledger.
    pub fn statement_of(&self, month: Month) -> Result<Option<Closed>, OperatorError> {
        let [closed] = self.statements_of([month])?;
        Ok(closed)
    }

    /// The latest statement of each of `months`.
    fn statements_of<const N: usize>(&self, months: [Month; N]) -> Result<[Option<Closed>; N], OperatorError> {
        let mut out: [Option<Closed>; N] = [const { None }; N];
        for (i, month) in months.into_iter().enumerate() {
            let Some(key) = self.month_entries(month)?.statements.pop() else { continue };
            let signed = self.recorded_envelope(&key)?;
            let statement = serde_json::from_slice(&signed.body)
                .map_err(|e| OperatorError::Internal(format!("statement of {month} on the ledger: {e}")))?;
            let hash = hex::encode(Sha256::digest(&signed.body));
            out[i] = Some(Closed { statement, signed, hash });
        }
        Ok(out)
    }

    /// Advance-fund quotas for `month`: the configured ones, else 2 × each
    /// home region's average monthly payable in the statements of the three
    /// months before (a month not closed counts as 0).
    pub fn quotas_for(&self, month: Month) -> Result<BTreeMap<RegionCode, Amount>, OperatorError> {
        let m1 = month.previous();
        let earlier = self.statements_of([m1, m1.previous(), m1.previous().previous()])?;
        let statements = earlier.each_ref().map(|c| c.as_ref().map(|c| &c.statement));
        Ok(crate::clearing::advance::quotas(&self.quotas, &statements))
    }

    /// Records a region's signed confirmation or dispute of a statement.
    /// Whether `key` is one of the federation's node keys.
    pub fn is_node_key(&self, key: &[u8; 32]) -> bool {
        self.nodes.values().any(|k| k.as_bytes() == key)
    }

    /// The node key of `region`, if it is in the federation.
    pub fn node_key(&self, region: RegionCode) -> Option<VerifyingKey> {
        self.nodes.get(&region).copied()
    }

    pub async fn answer(&self, env: Signed) -> Result<Confirmation, OperatorError> {
        let _alone = self.month_end.lock().await;
        let region = RegionCode::parse(&env.signer).map_err(|_| OperatorError::UnknownRegion(env.signer.clone()))?;
        let key = self.nodes.get(&region).ok_or_else(|| OperatorError::UnknownRegion(region.to_string()))?;
        let c: Confirmation = envelope::open(&env, key, CONFIRMATION_DOMAIN)
            .map_err(|e| OperatorError::BadSignature(format!("{region}: {e}")))?;
        if c.region != region.to_string() {
            return Err(OperatorError::NotAuthorised(format!("{region} cannot answer for {}", c.region)));
        }
        let month = Month::parse(&c.month).ok_or_else(|| OperatorError::bad("month", "not YYYY-MM"))?;
        for (field, id) in c
            .disputes
            .iter()
            .map(|d| ("disputes.setl_id", d.setl_id.as_str()))
            .chain(c.withdrawn.iter().map(|w| ("withdrawn", w.as_str())))
        {
            setl_id(field, id)?;
        }
        match self.statement_of(month)? {
            Some(closed) if closed.hash == c.statement_hash => {
                if (!c.disputes.is_empty() || !c.withdrawn.is_empty()) && self.is_final(&closed)? {
                    return Err(OperatorError::MonthFinal(format!(
                        "{month} is final; a line of it can no longer be disputed (ask the operator for an adjustment)"
                    )));
                }
            }
            Some(_) => {
                return Err(OperatorError::bad("statement_hash", format!("not the current statement of {month}")))
            }
            None => return Err(OperatorError::NotClosed(month.to_string())),
        }
        // An answer that disputes or withdraws a dispute changes what the
        // month's next close holds; only a plain confirmation confirms.
        let kind =
            if c.disputes.is_empty() && c.withdrawn.is_empty() { EntryKind::Confirmation } else { EntryKind::Dispute };
        let k = index::keys::answer(month, region, &c.statement_hash);
        self.record(kind, &k, &env).await.map_err(|e| match e {
            LedgerError::IdempotencyConflict { .. } => OperatorError::bad(
                "statement_hash",
                format!("{region} has already answered this revision of {month}; close {month} again and answer the new one"),
            ),
            other => ledger_err(other),
        })?;
        // The last confirmation makes the statement final: the nodes are told
        // now if they can be, else with the next month's close.
        if kind == EntryKind::Confirmation {
            if let Some(closed) = self.statement_of(month)?.filter(|s| s.hash == c.statement_hash) {
                if self.is_final(&closed)? {
                    if let Err(e) = self.send_final(&closed).await {
                        tracing::warn!(month = %month, error = %e, "the final statement will reach the nodes with the next close");
                    }
                }
            }
        }
        Ok(c)
    }

    /// Records an operator-side adjustment of `month` (a deduction, 拒付, is
    /// negative: it reduces what the home region owes), signed by the operator.
    pub async fn adjust(
        &self,
        month: Month,
        adjustment: crate::clearing::netting::Adjustment,
    ) -> Result<String, OperatorError> {
        let req = AdjustmentRequest {
            month: month.to_string(),
            home: adjustment.home.to_string(),
            treatment: adjustment.treatment.to_string(),
            amount: adjustment.amount.to_string(),
            reason: adjustment.reason,
            setl_id: adjustment.setl_id.unwrap_or_default(),
        };
        self.record_adjustment(envelope::seal(&self.key, ADJUSTMENT_DOMAIN, "operator", &req)).await
    }

    /// Records a signed adjustment request; only the operator's key may sign
    /// one. Returns its ledger key (the same request twice is one entry).
    pub async fn record_adjustment(&self, env: Signed) -> Result<String, OperatorError> {
        let req: AdjustmentRequest = envelope::open(&env, &self.key.verifying_key(), ADJUSTMENT_DOMAIN)
            .map_err(|e| OperatorError::NotAuthorised(format!("an adjustment must be signed by the operator: {e}")))?;
        let (month, a) = adjustment_of(&req)?;
        let _alone = self.month_end.lock().await;
        // It would enter no statement: a final month is not closed again.
        if let Some(current) = self.statement_of(month)? {
            if self.is_final(&current)? {
                return Err(OperatorError::MonthFinal(format!(
                    "{month} is final; record the adjustment in a month still open (the next one, {})",
                    self.next_month_due()?
                )));
            }
        }
        if let Some(later) = self.closed_months()?.into_iter().find(|m| *m > month) {
            return Err(OperatorError::MonthOutOfOrder(format!(
                "{later} is already closed; {month} will not be closed again"
            )));
        }
        if a.reason.trim().is_empty() {
            return Err(OperatorError::bad("reason", "an adjustment needs a reason"));
        }
        for r in [a.home, a.treatment] {
            if !self.nodes.contains_key(&r) {
                return Err(OperatorError::UnknownRegion(r.to_string()));
            }
        }
        let key = index::keys::adjustment(month, &hex::encode(Sha256::digest(&env.body)));
        self.record(EntryKind::Adjustment, &key, &env).await.map_err(ledger_err)?;
        Ok(key)
    }

    /// The operator's adjustments of `month`, from its ledger.
    pub fn adjustments_of(&self, month: Month) -> Result<Vec<crate::clearing::netting::Adjustment>, OperatorError> {
        let mut out = Vec::new();
        for key in self.month_entries(month)?.adjustments {
            let env = self.recorded_envelope(&key)?;
            let req: AdjustmentRequest =
                envelope::peek(&env).map_err(|e| OperatorError::Internal(format!("{key}: {e}")))?;
            out.push(adjustment_of(&req)?.1);
        }
        Ok(out)
    }

    /// Disputes the regions filed against statements of `month` and have
    /// not withdrawn, in the order filed: a withdrawal removes the region's
    /// dispute of that line, a later dispute files it again.
    pub fn disputes_of(&self, month: Month) -> Result<Vec<Dispute>, OperatorError> {
        let mut open: BTreeMap<(RegionCode, String), Dispute> = BTreeMap::new();
        for key in self.month_entries(month)?.disputes {
            let env = self.recorded_envelope(&key)?;
            let c: Confirmation = envelope::peek(&env).map_err(|e| OperatorError::Internal(format!("{key}: {e}")))?;
            let region = RegionCode::parse(&c.region).map_err(|e| OperatorError::Internal(format!("{key}: {e}")))?;
            for id in c.withdrawn {
                open.remove(&(region, id));
            }
            for d in c.disputes {
                open.insert((region, d.setl_id.clone()), Dispute { region, setl_id: d.setl_id, reason: d.reason });
            }
        }
        Ok(open.into_values().collect())
    }

    /// Advance funds now: each home region's payable so far in `month`
    /// (uncleared) against its quota.
    pub async fn advance(
        &self,
        month: Month,
        warning_pct: u32,
    ) -> Result<Vec<crate::clearing::advance::AdvanceStatus>, OperatorError> {
        let mut usage: BTreeMap<RegionCode, Amount> = BTreeMap::new();
        for region in self.nodes.keys() {
            let r = self.report(*region, month, false).await?;
            for p in r.pairs.iter().filter(|p| !p.as_treatment) {
                let (_, _, summary) =
                    crate::api::convert::pair_report_from_proto(p).map_err(OperatorError::region_answer(*region))?;
                *usage.entry(*region).or_default() =
                    usage.get(region).copied().unwrap_or_default() + summary.amounts.owed();
            }
        }
        let ratio = crate::money::Ratio::from_percent(warning_pct.into()).unwrap_or(crate::money::Ratio::ONE);
        Ok(self
            .quotas_for(month)?
            .iter()
            .map(|(r, q)| crate::clearing::advance::status(*r, *q, usage.get(r).copied().unwrap_or_default(), ratio))
            .collect())
    }

    /// Whether every region in the statement confirmed this exact statement.
    pub fn is_final(&self, closed: &Closed) -> Result<bool, OperatorError> {
        let month = self.month_entries(closed.statement.month)?;
        let confirmed = month.confirmations.get(&closed.hash);
        Ok(closed.statement.node_heads.keys().all(|r| confirmed.is_some_and(|c| c.contains(&r.to_string()))))
    }
}
