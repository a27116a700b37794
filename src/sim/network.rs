//! The simulated network between nodes: every claim's fate (dropped before or
//! after delivery, delivered twice, delayed past the clock, an old claim
//! replayed first, a partition) is drawn from the run's seed and the claim's
//! own bytes, so a run replays exactly even when requests overlap.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::Faults;
use crate::clock::ManualClock;
use crate::federation::LocalNetwork;
use crate::node::{BoxFuture, Node, PeerTransport, TransportError};
use crate::proto::{ClaimResult, Signed};
use crate::region::RegionCode;

/// Claims remembered for replays (oldest forgotten first).
const HISTORY: usize = 256;

/// Probabilities of each fault, per delivery attempt, in percent.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    pub drop_request: u32,
    pub drop_reply: u32,
    pub duplicate: u32,
    pub replay: u32,
    pub delay: u32,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates { drop_request: 6, drop_reply: 6, duplicate: 6, replay: 6, delay: 4 }
    }
}

struct Delivered {
    to: RegionCode,
    claim: Signed,
    result: Signed,
}

#[derive(Default)]
struct NetState {
    /// Faults are off while the simulation settles everything (quiescence).
    quiet: bool,
    step: u64,
    /// How many times each claim body was sent in this step (decides its fate).
    sent: HashMap<[u8; 32], u32>,
    /// (treatment, home) pairs cut off, until the step given.
    partitions: BTreeMap<(RegionCode, RegionCode), u64>,
    history: VecDeque<Delivered>,
    faults: Faults,
    /// Nodes whose answer was lost after they committed (crash candidates).
    reply_lost: BTreeSet<RegionCode>,
    violations: Vec<String>,
}

pub struct SimNetwork {
    seed: u64,
    rates: FaultRates,
    clock: Arc<ManualClock>,
    /// Who is up, and delivery itself; faults are decided here, around it.
    nodes: Arc<LocalNetwork>,
    state: Mutex<NetState>,
}

impl SimNetwork {
    pub fn new(seed: u64, rates: FaultRates, clock: Arc<ManualClock>) -> Arc<SimNetwork> {
        Arc::new(SimNetwork { seed, rates, clock, nodes: LocalNetwork::new(), state: Mutex::new(NetState::default()) })
    }

    pub fn attach(&self, node: &Arc<Node>) {
        self.nodes.attach(node);
    }

    pub fn detach(&self, region: RegionCode) {
        self.nodes.detach(region);
    }

    fn with<T>(&self, f: impl FnOnce(&mut NetState) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn begin_step(&self, step: u64) {
        self.with(|s| {
            s.step = step;
            s.sent.clear();
            let live: BTreeMap<_, _> =
                s.partitions.iter().filter(|(_, until)| **until > step).map(|(k, v)| (*k, *v)).collect();
            s.partitions = live;
        });
    }

    /// Faults off (`true`) or on again. Partitions stay as they were.
    pub fn set_quiet(&self, quiet: bool) {
        self.with(|s| s.quiet = quiet);
    }

    /// Heals every partition.
    pub fn heal(&self) {
        self.with(|s| s.partitions.clear());
    }

    pub fn partition(&self, treatment: RegionCode, home: RegionCode, until_step: u64) {
        self.with(|s| {
            s.partitions.insert((treatment, home), until_step);
            s.faults.partitions += 1;
        });
    }

    pub fn faults(&self) -> Faults {
        self.with(|s| s.faults.clone())
    }

    pub fn take_reply_lost(&self) -> BTreeSet<RegionCode> {
        self.with(|s| std::mem::take(&mut s.reply_lost))
    }

    pub fn take_violations(&self) -> Vec<String> {
        self.with(|s| std::mem::take(&mut s.violations))
    }

    /// The fate of this sending of `claim`, drawn from the seed, the step,
    /// the claim's bytes and how often it was sent before in this step.
    fn fate(&self, claim: &Signed) -> StdRng {
        let digest: [u8; 32] = Sha256::digest(&claim.body).into();
        let (n, step) = self.with(|s| {
            let c = s.sent.entry(digest).or_insert(0);
            *c += 1;
            (*c, s.step)
        });
        let mut h = Sha256::new();
        h.update(self.seed.to_be_bytes());
        h.update(step.to_be_bytes());
        h.update(digest);
        h.update(n.to_be_bytes());
        StdRng::from_seed(h.finalize().into())
    }

    async fn deliver(&self, to: RegionCode, claim: Signed) -> Result<Signed, TransportError> {
        self.nodes.submit_claim(to, claim).await
    }

    /// Delivers an old claim again and checks the home node gives the same answer.
    async fn replay_one(&self, pick: usize) {
        let old = self.with(|s| {
            let i = pick % s.history.len().max(1);
            s.history.get(i).map(|d| (d.to, d.claim.clone(), d.result.clone()))
        });
        let Some((to, claim, result)) = old else { return };
        self.with(|s| s.faults.replayed += 1);
        match self.deliver(to, claim).await {
            Ok(again) if again == result => {}
            Ok(_) => self.with(|s| s.violations.push(format!("a replayed claim to {to} got a different answer"))),
            Err(TransportError::Unreachable(_)) => {}
            Err(e) => self.with(|s| s.violations.push(format!("a replayed claim to {to} was refused: {e}"))),
        }
    }
}

fn settled(result: &Signed) -> bool {
    crate::api::envelope::peek::<ClaimResult>(result).is_ok_and(|r| r.settled)
}

impl PeerTransport for SimNetwork {
    fn submit_claim(&self, to: RegionCode, claim: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            let from = RegionCode::parse(&claim.signer).map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let mut fate = self.fate(&claim);
            let roll = |fate: &mut StdRng, pct: u32| fate.gen_range(0..100) < pct;
            let (quiet, cut) = self.with(|s| (s.quiet, s.partitions.contains_key(&(from, to))));
            if quiet {
                return self.deliver(to, claim).await;
            }
            if cut {
                return Err(TransportError::Unreachable(format!("{from} and {to} are partitioned")));
            }
            let r = self.rates;
            if roll(&mut fate, r.drop_request) {
                self.with(|s| s.faults.dropped_requests += 1);
                return Err(TransportError::Unreachable("request lost".into()));
            }
            if roll(&mut fate, r.replay) {
                let pick = fate.gen_range(0..usize::MAX);
                self.replay_one(pick).await;
            }
            if roll(&mut fate, r.delay) {
                let minutes = fate.gen_range(1..=360);
                self.clock.advance(minutes * 60_000);
                self.with(|s| s.faults.delayed += 1);
            }
            let answer = self.deliver(to, claim.clone()).await?;
            if roll(&mut fate, r.duplicate) {
                self.with(|s| s.faults.duplicated += 1);
                match self.deliver(to, claim.clone()).await {
                    Ok(again) if again == answer || !settled(&answer) => {}
                    Ok(_) => {
                        self.with(|s| s.violations.push(format!("a duplicated claim to {to} got a different answer")))
                    }
                    Err(e) => self.with(|s| s.violations.push(format!("a duplicated claim to {to} was refused: {e}"))),
                }
            }
            if settled(&answer) {
                self.with(|s| {
                    if s.history.len() >= HISTORY {
                        s.history.pop_front();
                    }
                    s.history.push_back(Delivered { to, claim: claim.clone(), result: answer.clone() });
                });
            }
            if roll(&mut fate, r.drop_reply) {
                self.with(|s| {
                    s.faults.dropped_replies += 1;
                    s.reply_lost.insert(to);
                    s.reply_lost.insert(from);
                });
                return Err(TransportError::Unreachable("reply lost".into()));
            }
            Ok(answer)
        })
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: Signed,
    ) -> BoxFuture<'_, Result<std::collections::BTreeMap<String, u32>, TransportError>> {
        self.nodes.contribution_years(to, query)
    }
}

impl crate::operator::ReportTransport for SimNetwork {
    fn month_report(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        self.nodes.month_report(to, req)
    }

    fn lines(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        self.nodes.lines(to, req)
    }

    fn final_statement(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        self.nodes.final_statement(to, notice)
    }
}
