//! The audit sample (抽查复审) at a treatment node: once a month's statement
//! is final, the node draws at least its configured share of its month's
//! settlements ([`crate::clearing::audit`]: seeded from the final statement's
//! hash and the node's sealed month report, so anyone holding the ledger
//! draws the same), records it in pages, and its admins record each
//! reviewed settlement's outcome, signed. A refusal (拒付) clears with the
//! first month not yet sealed here: the node's report of that month carries
//! it, the operator turns it into an adjustment between the two regions, and
//! the institution's statement of that month deducts it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::clearing_side::{line_of, FinalStatementEntry, Side};
use super::records::{to_payload, EnvelopeRecord};
use super::{ledger_error, Node};
use crate::api::convert::msgid;
use crate::api::envelope::AUDIT_DOMAIN;
use crate::api::NodeError;
use crate::clearing::audit::{sample, seed, SamplePolicy};
use crate::clearing::Month;
use crate::ledger::EntryKind;
use crate::money::Amount;
use crate::proto::{AuditItem, AuditRefusal, AuditReviewRequest, AuditSample, AuditSampleRequest, Signed};
use crate::region::RegionCode;

/// Items per sample page (one ledger entry each).
pub const SAMPLE_PAGE: usize = 1_000;
/// Longest reason a review may carry.
pub const MAX_REVIEW_REASON: usize = 200;

/// One sampled settlement, as the node recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleItem {
    pub setl_id: String,
    pub fixmedins_code: String,
    pub msgid: String,
    pub home: String,
    pub med_type: String,
    pub medfee_sumamt: Amount,
    pub fund_pay_sumamt: Amount,
    pub acct_pay: Amount,
}

/// One page of a month's sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplePage {
    pub month: Month,
    pub seed: String,
    pub population: u64,
    pub page: usize,
    pub pages: usize,
    pub items: Vec<SampleItem>,
}

/// A reviewer's outcome for one sampled settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    pub request: EnvelopeRecord,
    pub item: SampleItem,
    pub refused: bool,
    pub amount: Amount,
    pub reason: String,
    /// A refusal's: the month it clears (and is deducted) in.
    pub clearing_month: Month,
}

/// What a month's draw is made from, gathered from ledger entries in any
/// order: the node's own, or an export's ([`DrawInputs::note`] each).
#[derive(Debug)]
pub struct DrawInputs {
    region: RegionCode,
    month: Month,
    statement_hash: Option<Vec<u8>>,
    report: Option<Vec<u8>>,
    /// Each settlement of the month and its ledger index.
    population: BTreeMap<String, (u64, SampleItem)>,
}

/// A month's sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub seed: [u8; 32],
    pub population: u64,
    /// In rank order.
    pub items: Vec<SampleItem>,
}

impl DrawInputs {
    pub fn new(region: RegionCode, month: Month) -> DrawInputs {
        DrawInputs { region, month, statement_hash: None, report: None, population: BTreeMap::new() }
    }

    /// Takes what the draw needs from one ledger entry, at index `seq`.
    pub fn note(&mut self, seq: u64, kind: EntryKind, key: &str, payload: &[u8]) {
        match kind {
            EntryKind::FinalStatement if key == super::keys::final_statement(self.month) => {
                if let Ok(e) = serde_json::from_slice::<FinalStatementEntry>(payload) {
                    self.statement_hash = hex::decode(e.statement_hash).ok();
                }
            }
            EntryKind::MonthSeal if key == super::keys::seal(self.month) => {
                let record = serde_json::from_slice::<EnvelopeRecord>(payload).ok();
                self.report = record.and_then(|r| r.to_signed()).map(|s| s.body);
            }
            // Settlements, not reversals: a reversal is no bill to review.
            EntryKind::Settlement => {
                let Some((code, msgid)) = super::keys::outcome_parts(key) else { return };
                if let Some((Side::AsTreatment, line)) = line_of(kind, key, payload, self.region) {
                    if line.month == self.month {
                        let item = SampleItem {
                            setl_id: line.setl_id.clone(),
                            fixmedins_code: code.to_string(),
                            msgid: msgid.to_string(),
                            home: line.home.to_string(),
                            med_type: line.med_type.code().to_string(),
                            medfee_sumamt: line.amounts.medfee_sumamt,
                            fund_pay_sumamt: line.amounts.fund_pay_sumamt,
                            acct_pay: line.amounts.acct_pay,
                        };
                        self.population.insert(line.setl_id, (seq, item));
                    }
                }
            }
            _ => {}
        }
    }

    /// The sample, once the final statement and the seal are in: drawn from
    /// the settlements on the ledger when the month was sealed (the sealed
    /// report's tree head), so an outcome recorded later cannot change it.
    pub fn draw(mut self, policy: SamplePolicy) -> Result<Draw, String> {
        use prost::Message;
        let hash = self.statement_hash.ok_or_else(|| format!("no final statement of {}", self.month))?;
        let report = self.report.ok_or_else(|| format!("{} is not sealed", self.month))?;
        let sealed_at = crate::proto::MonthReport::decode(report.as_slice())
            .map_err(|e| format!("the seal of {}: {e}", self.month))?
            .head_size;
        let seed = seed(&hash, &report);
        self.population.retain(|_, (seq, _)| *seq < sealed_at);
        let ids: Vec<String> = self.population.keys().cloned().collect();
        let items = sample(&seed, &ids, policy)
            .into_iter()
            .filter_map(|id| self.population.remove(&id).map(|(_, i)| i))
            .collect();
        Ok(Draw { seed, population: ids.len() as u64, items })
    }
}

/// The audits the node holds in memory: the months sampled, and the
/// refusals by the month they clear in (bounded by the samples).
#[derive(Debug, Default)]
pub struct Audits {
    sampled: BTreeSet<Month>,
    refusals: BTreeMap<Month, Vec<AuditRefusal>>,
}

impl Audits {
    /// Replays one ledger entry.
    pub fn note(&mut self, kind: EntryKind, payload: &[u8]) {
        match kind {
            EntryKind::AuditSample => {
                if let Ok(p) = serde_json::from_slice::<SamplePage>(payload) {
                    if p.page + 1 == p.pages {
                        self.sampled.insert(p.month);
                    }
                }
            }
            EntryKind::AuditReview => {
                if let Ok(r) = serde_json::from_slice::<ReviewEntry>(payload) {
                    if r.refused {
                        let month = r
                            .request
                            .to_signed()
                            .and_then(|s| crate::api::envelope::peek::<AuditReviewRequest>(&s).ok().map(|q| q.month));
                        self.refusals.entry(r.clearing_month).or_default().push(AuditRefusal {
                            setl_id: r.item.setl_id,
                            home: r.item.home,
                            month: month.unwrap_or_default(),
                            amount: r.amount.to_string(),
                            reason: r.reason,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// The refusals that clear in `month`.
    pub fn refusals(&self, month: Month) -> Vec<AuditRefusal> {
        self.refusals.get(&month).cloned().unwrap_or_default()
    }
}

fn item_proto(i: &SampleItem, review: Option<&ReviewEntry>) -> AuditItem {
    AuditItem {
        setl_id: i.setl_id.clone(),
        fixmedins_code: i.fixmedins_code.clone(),
        msgid: i.msgid.clone(),
        home: i.home.clone(),
        med_type: i.med_type.clone(),
        medfee_sumamt: i.medfee_sumamt.to_string(),
        fund_pay_sumamt: i.fund_pay_sumamt.to_string(),
        acct_pay: i.acct_pay.to_string(),
        outcome: match review {
            None => String::new(),
            Some(r) if r.refused => "refused".into(),
            Some(_) => "accepted".into(),
        },
        refused_amount: review.filter(|r| r.refused).map(|r| r.amount.to_string()).unwrap_or_default(),
        reason: review.map(|r| r.reason.clone()).unwrap_or_default(),
        clearing_month: review.filter(|r| r.refused).map(|r| r.clearing_month.to_string()).unwrap_or_default(),
    }
}

impl Node {
    fn read_audits<T>(&self, f: impl FnOnce(&Audits) -> T) -> Result<T, NodeError> {
        self.audits.read().map(|a| f(&a)).map_err(|_| NodeError::Internal("audits lock poisoned".into()))
    }

    /// The audit refusals clearing in `month` (its report carries them).
    pub(super) fn refusals_clearing_in(&self, month: Month) -> Result<Vec<AuditRefusal>, NodeError> {
        self.read_audits(|a| a.refusals(month))
    }

    /// Draws the sample of every final month not yet sampled. Idempotent:
    /// each page is keyed, and the draw is the same every time.
    pub async fn draw_audit_samples(&self) -> Result<usize, NodeError> {
        let _alone = self.statements_lock.lock().await;
        let due: Vec<Month> = {
            let finals = self.read_issued(|i| i.months_with_finals())?;
            let sampled = self.read_audits(|a| a.sampled.clone())?;
            finals.into_iter().filter(|m| !sampled.contains(m)).collect()
        };
        let mut n = 0;
        for month in due {
            n += self.draw_month(month).await?;
        }
        Ok(n)
    }

    /// The draw of `month` from this node's ledger.
    pub fn audit_draw(&self, month: Month) -> Result<Draw, NodeError> {
        let mut inputs = DrawInputs::new(self.region(), month);
        for key in [super::keys::final_statement(month), super::keys::seal(month)] {
            if let Some(e) = self.ledger.entry_by_key(&key).map_err(ledger_error)? {
                inputs.note(e.frame.seq, e.body.kind, &e.body.key, &e.body.payload);
            }
        }
        let first = self.first_line_index(month, [])?;
        if let Some(first) = first {
            self.ledger
                .scan(first, |e| {
                    inputs.note(e.frame.seq, e.body.kind, &e.body.key, &e.body.payload);
                    Ok(ControlFlow::Continue(()))
                })
                .map_err(ledger_error)?;
        }
        inputs.draw(self.config.audit_sample).map_err(NodeError::Internal)
    }

    async fn draw_month(&self, month: Month) -> Result<usize, NodeError> {
        let draw = self.audit_draw(month)?;
        let pages = draw.items.len().div_ceil(SAMPLE_PAGE).max(1);
        for page in 0..pages {
            let items = draw.items.iter().skip(page * SAMPLE_PAGE).take(SAMPLE_PAGE).cloned().collect();
            let p = SamplePage { month, seed: hex::encode(draw.seed), population: draw.population, page, pages, items };
            let payload = to_payload(&p);
            self.ledger
                .append(EntryKind::AuditSample, &super::keys::audit_sample(month, page), payload.clone())
                .await
                .map_err(ledger_error)?;
            self.audits
                .write()
                .map_err(|_| NodeError::Internal("audits lock poisoned".into()))?
                .note(EntryKind::AuditSample, &payload);
        }
        tracing::info!(month = %month, drawn = draw.items.len(), of = draw.population, "audit sample drawn");
        Ok(draw.items.len())
    }

    fn sample_page(&self, month: Month, page: usize) -> Result<Option<SamplePage>, NodeError> {
        let Some(e) = self.ledger.entry_by_key(&super::keys::audit_sample(month, page)).map_err(ledger_error)? else {
            return Ok(None);
        };
        serde_json::from_slice(&e.body.payload).map(Some).map_err(|e| NodeError::Internal(format!("sample page: {e}")))
    }

    fn review_of(&self, month: Month, setl_id: &str) -> Result<Option<ReviewEntry>, NodeError> {
        let Some(e) = self.ledger.entry_by_key(&super::keys::audit_review(month, setl_id)).map_err(ledger_error)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&e.body.payload).map(Some).map_err(|e| NodeError::Internal(format!("review: {e}")))
    }

    /// One page of a month's sample with each item's outcome, for an admin.
    pub fn audit_sample(&self, env: &Signed) -> Result<AuditSample, NodeError> {
        let req: AuditSampleRequest = self.open_as_admin(env, AUDIT_DOMAIN)?;
        let month = Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        let page = usize::try_from(req.page).unwrap_or(usize::MAX);
        let p = self.sample_page(month, page)?.ok_or_else(|| match self.sample_page(month, 0) {
            Ok(Some(first)) => NodeError::bad("page", format!("{month}'s sample has {} pages", first.pages)),
            _ => NodeError::NoStatement(format!(
                "{month} has no audit sample here: it is drawn once {month}'s clearing statement is final"
            )),
        })?;
        let items = p
            .items
            .iter()
            .map(|i| Ok(item_proto(i, self.review_of(month, &i.setl_id)?.as_ref())))
            .collect::<Result<Vec<_>, NodeError>>()?;
        Ok(AuditSample {
            month: month.to_string(),
            seed: p.seed,
            population: p.population,
            items,
            page: req.page,
            pages: u32::try_from(p.pages).unwrap_or(u32::MAX),
        })
    }

    /// A month's sample (its first page: at most 1,000 items) with each
    /// item's outcome, and the month's settlements drawn from; `None` before
    /// it is drawn.
    pub fn sample_view(&self, month: Month) -> Result<Option<(u64, Vec<AuditItem>)>, NodeError> {
        let Some(p) = self.sample_page(month, 0)? else { return Ok(None) };
        let items = p
            .items
            .iter()
            .map(|i| Ok(item_proto(i, self.review_of(month, &i.setl_id)?.as_ref())))
            .collect::<Result<Vec<_>, NodeError>>()?;
        Ok(Some((p.population, items)))
    }

    /// Records a reviewer's outcome for a sampled settlement, once: the same
    /// request again is answered as before; another outcome for it refused.
    pub async fn review(&self, env: Signed) -> Result<AuditItem, NodeError> {
        let req: AuditReviewRequest = self.open_as_admin(&env, AUDIT_DOMAIN)?;
        msgid("msgid", &req.msgid)?;
        let _alone = self.statements_lock.lock().await;
        let month = Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        let key = super::keys::audit_review(month, &req.setl_id);
        let item = self.sampled_item(month, &req.setl_id)?;
        if let Some(held) = self.review_of(month, &req.setl_id)? {
            if held.request.body == super::records::to_hex(&env.body) {
                return Ok(item_proto(&held.item, Some(&held)));
            }
            return Err(NodeError::AlreadyReviewed(format!(
                "{} of {month} was reviewed already ({})",
                req.setl_id,
                if held.refused { "refused" } else { "accepted" }
            )));
        }
        let reason = req.reason.trim().to_string();
        if reason.chars().count() > MAX_REVIEW_REASON {
            return Err(NodeError::bad("reason", format!("at most {MAX_REVIEW_REASON} characters")));
        }
        let amount = match req.refused {
            true => {
                if reason.is_empty() {
                    return Err(NodeError::bad("reason", "a refusal needs a reason"));
                }
                let a = Amount::parse_non_negative(&req.amount).map_err(|e| NodeError::bad("amount", e.to_string()))?;
                let most = item.fund_pay_sumamt + item.acct_pay;
                if a == Amount::ZERO || a > most {
                    return Err(NodeError::bad(
                        "amount",
                        format!("{a} refused: more than 0 and at most the {most} the home region paid for it"),
                    ));
                }
                a
            }
            false if req.amount.trim().is_empty() => Amount::ZERO,
            false => return Err(NodeError::bad("amount", "an accepted settlement has no amount refused")),
        };
        if req.refused {
            self.refusable(month, &item.setl_id)?;
        }
        // The month it clears in is the first not sealed here (or this
        // node's month, if later); no seal comes between choosing it and the
        // entry being on the ledger.
        let _gate = self.seal_gate.read().await;
        let today = Month::parse(&crate::time::month_of(self.clock.now_ms()))
            .ok_or_else(|| NodeError::Internal("clock outside the calendar".into()))?;
        let clearing_month = self.month_floor().map_or(today, |floor| floor.max(today));
        let entry = ReviewEntry {
            request: EnvelopeRecord::from(&env),
            item,
            refused: req.refused,
            amount,
            reason,
            clearing_month,
        };
        let payload = to_payload(&entry);
        self.ledger.append(EntryKind::AuditReview, &key, payload.clone()).await.map_err(ledger_error)?;
        self.audits
            .write()
            .map_err(|_| NodeError::Internal("audits lock poisoned".into()))?
            .note(EntryKind::AuditReview, &payload);
        Ok(item_proto(&entry.item, Some(&entry)))
    }

    /// Refuses a refusal of a settlement the home region has not paid: one
    /// reversed (the reversal refunded it), or one the latest final
    /// statement holds out (disputed or unmatched: not paid yet).
    fn refusable(&self, month: Month, setl_id: &str) -> Result<(), NodeError> {
        let latest = self.read_issued(|i| i.months_with_finals().last().copied())?;
        if let Some(latest) = latest {
            if let Some(signed) = self.final_statement(latest)? {
                let s = super::hospital_statements::parse_statement(&signed)?;
                if s.pending.iter().any(|p| p.setl_id == setl_id) {
                    return Err(NodeError::bad(
                        "setl_id",
                        format!("{setl_id} is held out of {latest}'s statement: the home region has not paid it"),
                    ));
                }
            }
        }
        let first = self.first_line_index(month, [])?;
        let mut reversed = false;
        if let Some(first) = first {
            self.ledger
                .scan(first, |e| {
                    if e.body.kind != EntryKind::Reversal {
                        return Ok(ControlFlow::Continue(()));
                    }
                    let Some(intent) = super::keys::intent_of_outcome(&e.body.key) else {
                        return Ok(ControlFlow::Continue(()));
                    };
                    let claim = self
                        .ledger
                        .entry_by_key(&intent)?
                        .and_then(|i| serde_json::from_slice::<super::records::IntentEntry>(&i.body.payload).ok())
                        .and_then(|i| i.claim.to_signed())
                        .and_then(|c| crate::api::envelope::peek::<crate::proto::Claim>(&c).ok());
                    if claim.is_some_and(|c| c.reversed_setl_id == setl_id) {
                        reversed = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok(ControlFlow::Continue(()))
                })
                .map_err(ledger_error)?;
        }
        if reversed {
            return Err(NodeError::bad("setl_id", format!("{setl_id} was reversed: its reversal refunded it")));
        }
        Ok(())
    }

    /// The sampled settlement `setl_id` of `month`.
    fn sampled_item(&self, month: Month, setl_id: &str) -> Result<SampleItem, NodeError> {
        let not_in = || NodeError::NotInSample(format!("{setl_id} is not in {month}'s audit sample at this node"));
        let first = self.sample_page(month, 0)?.ok_or_else(not_in)?;
        for page in 0..first.pages {
            let p = if page == 0 { first.clone() } else { self.sample_page(month, page)?.ok_or_else(not_in)? };
            if let Some(i) = p.items.into_iter().find(|i| i.setl_id == setl_id) {
                return Ok(i);
            }
        }
        Err(not_in())
    }
}
