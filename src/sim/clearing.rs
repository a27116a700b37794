//! Month-end clearing in the simulation, as the operator and the regions do
//! it: only months that are over are closed, in order; regions dispute lines,
//! withdraw disputes and confirm until the statement is final; early closes
//! are tried and must be refused. After every final statement each line it
//! clears is expanded back to its settlement ids (checked against the pair
//! line's count, amounts and ids root) from the home ledgers, and the
//! invariant is checked: **every committed settlement and reversal is
//! cleared exactly once across all statements**, with the amounts both
//! ledgers hold (the model checks the two ledgers hold the same result).

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

use super::world::key;
use super::Sim;
use crate::api::envelope::{seal, CONFIRMATION_DOMAIN};
use crate::clearing::{Amounts, Line, Month, PendingItem, PendingReason, Statement};
use crate::clock::Clock;
use crate::money::Amount;
use crate::operator::OperatorError;
use crate::operator::{Closed, DEFAULT_CLOSE_GRACE};
use crate::proto::{Confirmation, DisputedLine};
use crate::region::RegionCode;
use crate::time::month_end_ms;

/// What the clearing side of a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClearingCounts {
    /// Lines disputed on a statement.
    pub disputes: u64,
    /// Disputes withdrawn before the month was final.
    pub withdrawn: u64,
    /// Closes tried before the month was over, and refused.
    pub early_close_refused: u64,
    /// Home commits that landed after their clock's month (it was sealed).
    pub late_commits: u64,
    /// Settlements and reversals cleared, each exactly once.
    pub cleared_once: u64,
    /// Audit refusals cleared between the regions, each exactly once.
    pub refusals_cleared: u64,
    /// Final months whose institutions' statements were checked.
    pub statement_months: u64,
}

impl ClearingCounts {
    pub fn add(&mut self, o: &ClearingCounts) {
        self.disputes += o.disputes;
        self.withdrawn += o.withdrawn;
        self.early_close_refused += o.early_close_refused;
        self.late_commits += o.late_commits;
        self.cleared_once += o.cleared_once;
        self.refusals_cleared += o.refusals_cleared;
        self.statement_months += o.statement_months;
    }
}

impl std::fmt::Display for ClearingCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "disputes={} withdrawn={} early_close_refused={} late_commits={} cleared_once={} refusals_cleared={} \
             statement_months={}",
            self.disputes,
            self.withdrawn,
            self.early_close_refused,
            self.late_commits,
            self.cleared_once,
            self.refusals_cleared,
            self.statement_months
        )
    }
}

fn grace_ms() -> i64 {
    i64::try_from(DEFAULT_CLOSE_GRACE.as_millis()).unwrap_or(i64::MAX)
}

/// When `month` may be closed by the operator's clock.
fn closable_at(month: Month) -> i64 {
    month_end_ms(month).saturating_add(grace_ms())
}

impl Sim {
    /// Tries to close the open month, or the one after, before it is over:
    /// the operator must refuse.
    pub(super) async fn try_early_close(&mut self) -> Result<(), String> {
        let month = if self.rng.gen_bool(0.5) { self.open_month } else { self.open_month.next() };
        if self.world.clock.now_ms() >= closable_at(month) {
            return Ok(()); // due: the regular close takes it
        }
        match self.world.operator.close(month).await {
            Err(OperatorError::MonthNotOver(_)) => {
                self.counts.early_close_refused += 1;
                Ok(())
            }
            Err(e) => Err(format!("closing {month} early: {e}")),
            Ok(_) => Err(format!("{month} was closed before it was over")),
        }
    }

    /// Closes every month that is over by the operator's clock. At the end of
    /// a run (`everything`), time moves on past month ends until every month
    /// with traffic is closed and nothing is held out, and every settlement
    /// committed anywhere must then have been cleared exactly once.
    pub(super) async fn close_due_months(&mut self, everything: bool) -> Result<(), String> {
        let now = super::month_at(self.world.clock.now_ms()).ok_or("clock month")?;
        let mut last = now;
        for round in 0.. {
            let due = self.world.clock.now_ms() >= closable_at(self.open_month);
            if !due {
                // The last month anything was committed into (a request
                // answered while quiescing commits in the month it lands in).
                self.model.scan(&self.world)?;
                last = self.model.home_lines().values().map(|l| l.month).max().unwrap_or(now).max(now);
                let more = everything && (self.open_month <= last || !self.carried.is_empty());
                if !more {
                    break;
                }
                if round > 24 {
                    return Err(format!("items still held out after {round} closes: {:?}", self.carried.first()));
                }
                self.world.clock.set(closable_at(self.open_month));
            }
            // Usually every hospital has its answer first; otherwise what is
            // in flight is held out and carried to a later month.
            let quiet = everything || self.rng.gen_bool(0.7);
            if quiet {
                self.quiesce().await?;
            }
            // At the run's end, months with traffic are still disputed; the
            // months after them only clear what was carried.
            self.close(self.open_month, quiet, !everything || self.open_month <= last).await?;
            self.open_month = self.open_month.next();
        }
        if everything {
            self.check_all_cleared()?;
            self.check_institution_statements(true).await?;
            self.counts.refusals_cleared = self.books.refusals_cleared;
            self.counts.statement_months = self.books.statements_checked;
        }
        Ok(())
    }

    /// Closes `month`, has regions dispute, withdraw and confirm, checks the
    /// final statement line by line, and carries what it holds out.
    async fn close(&mut self, month: Month, quiet: bool, answers: bool) -> Result<(), String> {
        let mut current = self.close_checked(month).await?;
        // With every hospital answered, both sides hold every line: nothing
        // is held out (disputed lines carried in return now).
        if let Some(first) = current.statement.pending.first().filter(|_| quiet) {
            return Err(format!("{month}: held out after quiescence: {first:?}"));
        }
        if answers && self.rng.gen_bool(0.3) {
            current = self.dispute_some(current).await?;
        }
        for region in current.statement.node_heads.keys().copied().collect::<Vec<_>>() {
            self.answer(&current, region, vec![], vec![]).await?;
        }
        if !self.world.operator.is_final(&current).map_err(|e| e.to_string())? {
            return Err(format!("{month}: confirmed by every region, yet not final"));
        }
        match self.world.operator.close(month).await {
            Err(OperatorError::MonthFinal(_)) => {}
            Err(e) => return Err(format!("{month}: re-closing a final month: {e}")),
            Ok(_) => return Err(format!("{month}: a final month was closed again")),
        }
        self.record_final(&current.statement)?;
        self.months_closed += 1;
        self.review_some(month).await?;
        self.adjust_some(month).await?;
        self.check_institution_statements(false).await
    }

    /// Closes `month` through the operator and checks what any statement
    /// must hold: positions summing to zero, the same statement on a second
    /// close, and every line expanding to its settlements.
    async fn close_checked(&mut self, month: Month) -> Result<Closed, String> {
        let closed = self.world.operator.close(month).await.map_err(|e| format!("close {month}: {e}"))?;
        let s = &closed.statement;
        if s.positions_sum() != Amount::ZERO {
            return Err(format!("{month}: positions sum to {}", s.positions_sum()));
        }
        let again = self.world.operator.close(month).await.map_err(|e| format!("re-close {month}: {e}"))?;
        if again.signed.body != closed.signed.body {
            return Err(format!("{month}: closing twice gave two statements"));
        }
        self.model.scan(&self.world)?;
        self.check_positions(s)?;
        Ok(closed)
    }

    /// One region disputes one or two lines the statement clears (its own
    /// pairs'); sometimes it withdraws one again. Returns the statement
    /// closed after the answers.
    async fn dispute_some(&mut self, closed: Closed) -> Result<Closed, String> {
        let month = closed.statement.month;
        let lines = self.expand(&closed.statement)?;
        let regions: BTreeSet<RegionCode> = lines.values().flat_map(|l| [l.home, l.treatment]).collect();
        let Some(region) = regions.into_iter().collect::<Vec<_>>().choose(&mut self.rng).copied() else {
            return Ok(closed);
        };
        let mut ids: Vec<String> =
            lines.values().filter(|l| l.home == region || l.treatment == region).map(|l| l.setl_id.clone()).collect();
        ids.shuffle(&mut self.rng);
        ids.truncate(self.rng.gen_range(1..=2));
        let disputes = ids
            .iter()
            .map(|id| DisputedLine { setl_id: id.clone(), reason: "amount questioned in review".into() })
            .collect();
        self.answer(&closed, region, disputes, vec![]).await?;
        self.counts.disputes += ids.len() as u64;
        let mut current = self.close_checked(month).await?;
        for id in &ids {
            let out = current.statement.pending.iter().any(|p| p.setl_id == *id && p.reason == PendingReason::Disputed);
            if !out || self.expand(&current.statement)?.contains_key(id) {
                return Err(format!("{month}: {id} was disputed by {region} and is still cleared"));
            }
        }
        if self.rng.gen_bool(0.4) {
            let id = ids[0].clone();
            self.answer(&current, region, vec![], vec![id.clone()]).await?;
            self.counts.withdrawn += 1;
            current = self.close_checked(month).await?;
            if !self.expand(&current.statement)?.contains_key(&id) {
                return Err(format!("{month}: {id}'s dispute was withdrawn and it is not cleared"));
            }
        }
        Ok(current)
    }

    async fn answer(
        &self,
        closed: &Closed,
        region: RegionCode,
        disputes: Vec<DisputedLine>,
        withdrawn: Vec<String>,
    ) -> Result<(), String> {
        let c = Confirmation {
            month: closed.statement.month.to_string(),
            region: region.to_string(),
            statement_hash: closed.hash.clone(),
            disputes,
            withdrawn,
        };
        let env = seal(&key(&region.to_string()), CONFIRMATION_DOMAIN, &region.to_string(), &c);
        self.world.operator.answer(env).await.map(|_| ()).map_err(|e| format!("{region} answering: {e}"))
    }

    /// The lines `s` clears, by setl_id, read from the home ledgers: for
    /// each pair line, the month's own lines (or the items carried in from
    /// its month) less those held out, checked against the pair line's
    /// count, amounts and ids root. Every line of the month and every item
    /// carried in must be cleared here or held out again.
    fn expand(&self, s: &Statement) -> Result<BTreeMap<String, Line>, String> {
        let month = s.month;
        let all = self.model.home_lines();
        let pending: BTreeSet<&str> = s.pending.iter().map(|p| p.setl_id.as_str()).collect();
        let carried: BTreeMap<&str, &PendingItem> = self.carried.iter().map(|p| (p.setl_id.as_str(), p)).collect();
        let mut out: BTreeMap<String, Line> = BTreeMap::new();
        for pl in &s.pairs {
            let ids: Vec<&str> = if pl.month == month {
                all.values()
                    .filter(|l| l.home == pl.home && l.treatment == pl.treatment && l.month == month)
                    .map(|l| l.setl_id.as_str())
                    .filter(|id| !pending.contains(id))
                    .collect()
            } else {
                carried
                    .values()
                    .filter(|p| p.pair.home == pl.home && p.pair.treatment == pl.treatment && p.since == pl.month)
                    .map(|p| p.setl_id.as_str())
                    .filter(|id| !pending.contains(id))
                    .collect()
            };
            let mut amounts = Amounts::default();
            for id in &ids {
                let line = all.get(*id).ok_or_else(|| format!("{month}: {id} is cleared but on no home ledger"))?;
                if line.channel != pl.channel {
                    return Err(format!("{month}: {id} is cleared on the {:?} channel, not its own", pl.channel));
                }
                amounts = amounts.plus(&line.amounts);
                if out.insert(id.to_string(), line.clone()).is_some() {
                    return Err(format!("{month}: {id} is cleared twice in one statement"));
                }
            }
            let root =
                hex::encode(crate::clearing::lines::ids_root(&ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
            if pl.count != ids.len() as u64 || pl.amounts != amounts || pl.ids_root != root {
                return Err(format!(
                    "{month}: pair {}->{} of {} clears {} lines {:?} root {}, the ledgers give {} {:?} root {root}",
                    pl.home,
                    pl.treatment,
                    pl.month,
                    pl.count,
                    pl.amounts.fund_pay_sumamt,
                    pl.ids_root,
                    ids.len(),
                    amounts.fund_pay_sumamt
                ));
            }
        }
        let owed = all.values().filter(|l| l.month == month).map(|l| l.setl_id.as_str()).chain(carried.keys().copied());
        for id in owed {
            if !out.contains_key(id) && !pending.contains(id) {
                return Err(format!("{month}: {id} is neither cleared nor held out"));
            }
        }
        Ok(out)
    }

    /// The statement pays exactly its cleared lines (as the ledgers hold
    /// them) and the operator's adjustments: positions and the corps–local
    /// channel, recomputed from those alone.
    fn check_positions(&self, s: &Statement) -> Result<(), String> {
        let lines: Vec<Line> = self.expand(s)?.into_values().collect();
        let mut adjustments = self.world.operator.adjustments_of(s.month).map_err(|e| e.to_string())?;
        adjustments.extend(self.refusals_clearing_in(s.month));
        let pairs = self.world.rules.pairs().clone();
        let (positions, corps_local) =
            crate::clearing::netting::net(&lines, &adjustments, |a, b| pairs.are_partners(a, b));
        let nonzero = |m: &BTreeMap<RegionCode, crate::clearing::netting::Position>| -> BTreeMap<RegionCode, Amount> {
            m.iter().map(|(r, p)| (*r, p.net)).filter(|(_, n)| *n != Amount::ZERO).collect()
        };
        if nonzero(&positions) != nonzero(&s.positions) {
            return Err(format!(
                "{}: positions {:?} on the statement, {:?} from its cleared lines",
                s.month,
                nonzero(&s.positions),
                nonzero(&positions)
            ));
        }
        let channel = |b: &[crate::clearing::netting::Bilateral]| -> BTreeMap<(RegionCode, RegionCode), Amount> {
            b.iter().map(|b| ((b.a, b.b), b.a_owes_b)).filter(|(_, v)| *v != Amount::ZERO).collect()
        };
        if channel(&corps_local) != channel(&s.corps_local) {
            return Err(format!("{}: the corps–local channel differs from its cleared lines", s.month));
        }
        Ok(())
    }

    /// Files a final statement's lines as cleared (each id once across all
    /// statements) and carries what it holds out.
    fn record_final(&mut self, s: &Statement) -> Result<(), String> {
        let cleared = self.expand(s)?;
        self.record_final_refusals(s, &cleared)?;
        for id in cleared.into_keys() {
            if let Some(before) = self.cleared.insert(id.clone(), s.month) {
                return Err(format!("{id} was cleared in {before} and again in {}", s.month));
            }
        }
        for p in &s.pending {
            if let Some(when) = self.cleared.get(&p.setl_id) {
                return Err(format!("{} is held out of {} but was cleared in {when}", p.setl_id, s.month));
            }
        }
        self.carried = s.pending.clone();
        Ok(())
    }

    /// The run's end: every settlement and reversal committed at any home
    /// node was cleared exactly once, and nothing else was.
    fn check_all_cleared(&mut self) -> Result<(), String> {
        let all = self.model.home_lines();
        if all.len() != self.model.home_commit_count() {
            return Err(format!(
                "{} home commits, but only {} have a clearing line",
                self.model.home_commit_count(),
                all.len()
            ));
        }
        if let Some(id) = all.keys().find(|id| !self.cleared.contains_key(*id)) {
            return Err(format!("{id} was committed and never cleared"));
        }
        if let Some(id) = self.cleared.keys().find(|id| !all.contains_key(*id)) {
            return Err(format!("{id} was cleared but is on no home ledger"));
        }
        self.counts.cleared_once = self.cleared.len() as u64;
        self.counts.late_commits = self.model.late_commits();
        Ok(())
    }
}
