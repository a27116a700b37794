//! A seeded, deterministic simulation of a federation in one process, in the
//! style of TigerBeetle's VOPR. One seed drives everything: which hospital
//! sends what, what the network does to each claim (drops, duplicates,
//! replays of old claims, delays, partitions), which node crashes and how
//! (cleanly, with a torn tail, with its index lost), and the clock, which
//! crosses month ends. After every step an independent model (what the
//! hospitals were told, and every ledger read back) checks the invariants:
//! no acknowledged settlement lost, none applied twice, home counters equal
//! the sum of committed results, both sides agree, every ledger's chain and
//! signatures hold; at each month end the month is closed and its positions
//! must sum to zero and equal the hospitals' receipts. A failure names its
//! seed and step; `make sim SEED=N STEPS=M` replays it.

mod clearing;
mod hospitals;
mod model;
pub mod network;
pub(crate) mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN};
use crate::api::NodeError;
use crate::clearing::{Month, PendingItem};
use crate::clock::{Clock, ManualClock};
use crate::med_type::MedType;
use crate::money::Amount;
use crate::node::records::PersonRecord;
use crate::proto::{
    hospital_request::Action, registration_request::Op, BillItem, HospitalRequest, RegistrationRequest, Signed,
};
use crate::region::RegionCode;
use crate::rules::RuleBook;
pub use clearing::ClearingCounts;
use model::Model;
use network::{FaultRates, SimNetwork};
use world::{code, key, World, AGENCY, HOSPITALS, PHARMACIES, REGIONS};

/// 2026-03-30 12:00 Asia/Shanghai: March ends about a third of the way into
/// a 200-step run, so most runs close it with traffic still flowing (late
/// commits into April at nodes whose clocks are behind) and dispute it.
const START_MS: i64 = 1_774_843_200_000;
const PERSONS_PER_REGION: usize = 8;
/// Employees' opening account balance.
const INITIAL_BALANCE: &str = "800.00";
/// The chronic disease every third person is qualified for.
const CHRONIC_DISEASE: &str = "M03900";
const ITEM_CODES: [&str; 4] = ["XA001", "XB001", "XC001", "FW001"];

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub steps: u64,
    pub rates: FaultRates,
}

/// Faults injected in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub dropped_requests: u64,
    pub dropped_replies: u64,
    pub duplicated: u64,
    pub replayed: u64,
    pub delayed: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub torn_tails: u64,
    pub lost_indexes: u64,
    /// The node's state store deleted: rebuilt from the ledger.
    pub lost_states: u64,
    /// The node's state store put back as an earlier stop left it: caught up
    /// from the position it records.
    pub stale_states: u64,
}

impl Faults {
    pub fn total(&self) -> u64 {
        self.dropped_requests
            + self.dropped_replies
            + self.duplicated
            + self.replayed
            + self.delayed
            + self.partitions
            + self.crashes
            + self.torn_tails
            + self.lost_indexes
            + self.lost_states
            + self.stale_states
    }

    pub fn add(&mut self, o: &Faults) {
        self.dropped_requests += o.dropped_requests;
        self.dropped_replies += o.dropped_replies;
        self.duplicated += o.duplicated;
        self.replayed += o.replayed;
        self.delayed += o.delayed;
        self.partitions += o.partitions;
        self.crashes += o.crashes;
        self.torn_tails += o.torn_tails;
        self.lost_indexes += o.lost_indexes;
        self.lost_states += o.lost_states;
        self.stale_states += o.stale_states;
    }
}

impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped_requests={} dropped_replies={} duplicated={} replayed={} delayed={} partitions={} crashes={} torn_tails={} lost_indexes={} lost_states={} stale_states={}",
            self.dropped_requests,
            self.dropped_replies,
            self.duplicated,
            self.replayed,
            self.delayed,
            self.partitions,
            self.crashes,
            self.torn_tails,
            self.lost_indexes,
            self.lost_states,
            self.stale_states
        )
    }
}

#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub steps: u64,
    pub settled: usize,
    pub reversed: usize,
    pub refused: usize,
    pub hospital_retries: u64,
    pub months_closed: usize,
    pub ledger_entries: u64,
    pub faults: Faults,
    pub clearing: ClearingCounts,
    /// Digest of every answer the hospitals hold: the same seed gives the same digest.
    pub digest: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("simulation failed: seed {seed}, step {step}: {what}\n  replay: make sim SEED={seed} STEPS={steps}")]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub steps: u64,
    pub what: String,
}

/// How a node is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    Clean,
    /// A partial record after the last durable one, as a write cut short leaves.
    TornTail,
    /// The sled index is gone; the node rebuilds it from its log.
    LostIndex,
    /// The node's state store is gone; the node rebuilds it from its log.
    LostState,
    /// The node's state store is as an earlier stop left it (a store behind
    /// its ledger); the node replays the entries after its position.
    StaleState,
}

/// A request a hospital has sent and not yet had a final answer to.
#[derive(Debug, Clone)]
struct Outstanding {
    hospital: String,
    treatment: RegionCode,
    msgid: String,
    env: Signed,
}

struct Person {
    psn_no: String,
    home: RegionCode,
    registered: bool,
}

struct Sim {
    rng: StdRng,
    world: World,
    model: Model,
    persons: Vec<Person>,
    outstanding: BTreeMap<(String, String), Outstanding>,
    /// (hospital, msgid) of acknowledged settlements a reversal was sent for.
    reversal_sent: BTreeSet<(String, String)>,
    next_msgid: u64,
    retries: u64,
    step: u64,
    /// Every month before this one is closed and final.
    open_month: Month,
    /// What the last final statement held out.
    carried: Vec<PendingItem>,
    /// setl_id -> the month whose final statement cleared it.
    cleared: BTreeMap<String, Month>,
    counts: ClearingCounts,
    months_closed: usize,
    crash_faults: Faults,
    /// Audit refusals and institutions' statements still to check.
    books: hospitals::Books,
}

/// Node clocks behind the operator's: each region, by chance, 30 minutes
/// to 4 hours behind (past the operator's grace), or on time.
fn clock_skews(seed: u64) -> BTreeMap<RegionCode, i64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c10c);
    REGIONS
        .iter()
        .map(|(r, _)| {
            let behind = if rng.gen_bool(0.4) { rng.gen_range(30..=240) * 60_000 } else { 0 };
            (code(r), -behind)
        })
        .collect()
}

/// Runs one simulation in `dir` (which it fills with the nodes' data).
pub async fn run(opts: &SimOptions, dir: &Path, rules: Arc<RuleBook>) -> Result<SimReport, SimFailure> {
    let fail = |step: u64, what: String| SimFailure { seed: opts.seed, step, steps: opts.steps, what };
    let clock = Arc::new(ManualClock::new(START_MS));
    let net = SimNetwork::new(opts.seed, opts.rates, Arc::clone(&clock));
    let world = World::build(dir, rules, clock, Arc::clone(&net), clock_skews(opts.seed)).map_err(|e| fail(0, e))?;
    let open_month = month_at(START_MS).ok_or_else(|| fail(0, "start month".into()))?;
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(opts.seed),
        world,
        model: Model::default(),
        persons: Vec::new(),
        outstanding: BTreeMap::new(),
        reversal_sent: BTreeSet::new(),
        next_msgid: 0,
        retries: 0,
        step: 0,
        open_month,
        carried: Vec::new(),
        cleared: BTreeMap::new(),
        counts: ClearingCounts::default(),
        months_closed: 0,
        crash_faults: Faults::default(),
        books: hospitals::Books::default(),
    };
    sim.populate().await.map_err(|e| fail(0, e))?;
    for step in 1..=opts.steps {
        sim.step = step;
        net.begin_step(step);
        sim.one_step().await.map_err(|e| fail(step, e))?;
        if let Some(v) = net.take_violations().into_iter().next() {
            return Err(fail(step, v));
        }
        sim.model.check(&sim.world).map_err(|e| fail(step, e))?;
    }
    let end = opts.steps + 1;
    sim.step = end;
    sim.close_due_months(true).await.map_err(|e| fail(end, e))?;
    let mut faults = net.faults();
    faults.add(&sim.crash_faults);
    let settled = sim.model.acked.values().filter(|a| !a.reversal).count();
    let reversed = sim.model.acked.values().filter(|a| a.reversal).count();
    let refused = sim.model.refused.len();
    let digest = sim.model.digest();
    let (retries, months_closed, clearing) = (sim.retries, sim.months_closed, sim.counts.clone());
    let ledger_entries = sim.world.shut_down_and_verify().await.map_err(|e| fail(end, e))?;
    Ok(SimReport {
        seed: opts.seed,
        steps: opts.steps,
        settled,
        reversed,
        refused,
        hospital_retries: retries,
        months_closed,
        ledger_entries,
        faults,
        clearing,
        digest,
    })
}

/// A fresh directory for a run, on tmpfs when the machine has one (a
/// simulation's crashes are logical; its disks need not be real).
/// `XCLEAR_SIM_DIR` chooses another place.
pub fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let shm = Path::new("/dev/shm");
    let base = std::env::var_os("XCLEAR_SIM_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    });
    tempfile::Builder::new().prefix("xclear-sim-").tempdir_in(&base).map_err(|e| format!("{}: {e}", base.display()))
}

use crate::time::month_at;

impl Sim {
    async fn populate(&mut self) -> Result<(), String> {
        for (r, insutype) in REGIONS.iter().filter(|(_, t)| !t.is_empty()) {
            let home = code(r);
            let records: Vec<PersonRecord> = (0..PERSONS_PER_REGION)
                .map(|i| PersonRecord {
                    psn_no: format!("P{r}{i:03}"),
                    insuplc_admdvs: r.to_string(),
                    insutype: insutype.to_string(),
                    retired: i % 4 == 3,
                    special_group: None,
                    contribution_years: [(r.to_string(), 5 + i as u32)].into_iter().collect(),
                    acct_balance: (*insutype == "310").then(|| INITIAL_BALANCE.to_string()),
                    // Every third person is qualified for the simulation's chronic disease.
                    chronic: if i % 3 == 0 {
                        vec![crate::node::records::QualificationRecord {
                            dise_codg: CHRONIC_DISEASE.into(),
                            begndate: "2026-01-01".into(),
                            enddate: None,
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            self.world.node(home)?.import_persons(&records).await.map_err(|e| e.to_string())?;
            for p in &records {
                if let Some(b) = &p.acct_balance {
                    self.model.opening_balance(home, &p.psn_no, b);
                }
            }
            for p in records {
                self.persons.push(Person { psn_no: p.psn_no, home, registered: false });
            }
        }
        for i in 0..self.persons.len() {
            if self.rng.gen_bool(0.5) {
                self.register(i).await?;
            }
        }
        self.model.check(&self.world)
    }

    /// Files a long-term-resident registration in Beijing for a person.
    async fn register(&mut self, i: usize) -> Result<(), String> {
        let p = &self.persons[i];
        let req = RegistrationRequest {
            msgid: format!("reg-{}", p.psn_no),
            op: Op::Create as i32,
            psn_no: p.psn_no.clone(),
            kind: "long_term_resident".into(),
            target_admdvs: "110000".into(),
            begndate: "2026-01-01".into(),
            ..RegistrationRequest::default()
        };
        let env = seal(&key(AGENCY), ADMIN_DOMAIN, AGENCY, &req);
        self.world.node(p.home)?.apply_registration(env).await.map_err(|e| format!("registration: {e}"))?;
        self.persons[i].registered = true;
        Ok(())
    }

    async fn one_step(&mut self) -> Result<(), String> {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=39 => self.new_settlement(1).await,
            40..=51 => self.retry_outstanding().await,
            52..=58 => self.repeat_acked().await,
            59..=62 => {
                // Copies in flight at once interleave as the ledger threads
                // happen to run; with the network quiet their answers do not
                // depend on that, so the run still replays exactly.
                let n = self.rng.gen_range(2..=3);
                self.world.net.set_quiet(true);
                let sent = self.new_settlement(n).await;
                self.world.net.set_quiet(false);
                sent
            }
            63..=70 => self.reverse_one().await,
            71..=73 => self.redrive().await,
            74..=76 => self.crash_one().await,
            77..=78 => {
                self.partition();
                Ok(())
            }
            81..=82 => self.try_early_close().await,
            79..=80 => {
                let unregistered: Vec<usize> =
                    (0..self.persons.len()).filter(|i| !self.persons[*i].registered).collect();
                match unregistered.choose(&mut self.rng) {
                    Some(i) => self.register(*i).await,
                    None => Ok(()),
                }
            }
            _ => {
                // Time passes: minutes mostly, sometimes most of a day.
                let minutes =
                    if self.rng.gen_bool(0.9) { self.rng.gen_range(1..90) } else { self.rng.gen_range(60..1200) };
                self.world.clock.advance(minutes * 60_000);
                self.close_due_months(false).await
            }
        }
    }

    fn new_msgid(&mut self) -> String {
        self.next_msgid += 1;
        format!("M{:08}", self.next_msgid)
    }

    fn today(&self) -> String {
        crate::time::shanghai_date(self.world.clock.now_ms())
    }

    async fn new_settlement(&mut self, copies: usize) -> Result<(), String> {
        // Mostly outpatient and pharmacy visits, some chronic care, fewer stays.
        let med_type = match self.rng.gen_range(0..100) {
            0..=39 => MedType::GeneralOutpatient,
            40..=44 => MedType::EmergencyOutpatient,
            45..=54 => MedType::ChronicOutpatient,
            55..=74 => MedType::Pharmacy,
            _ => MedType::Inpatient,
        };
        let institutions: &[(&str, &str)] = if med_type == MedType::Pharmacy { &PHARMACIES } else { &HOSPITALS };
        let (hospital, treatment) = *institutions.choose(&mut self.rng).ok_or("no institutions")?;
        let treatment = code(treatment);
        let candidates: Vec<usize> = (0..self.persons.len()).filter(|i| self.persons[*i].home != treatment).collect();
        let i = *candidates.choose(&mut self.rng).ok_or("no persons")?;
        let items = (0..self.rng.gen_range(1..=4))
            .map(|_| BillItem {
                code: ITEM_CODES.choose(&mut self.rng).map(|c| c.to_string()).unwrap_or_default(),
                qty: self.rng.gen_range(1..=3).to_string(),
                price: Amount::round_half_up(rust_decimal::Decimal::new(self.rng.gen_range(1_000..800_000), 2))
                    .to_string(),
            })
            .collect();
        let req = HospitalRequest {
            fixmedins_code: hospital.to_string(),
            msgid: self.new_msgid(),
            action: Action::Settle as i32,
            psn_no: self.persons[i].psn_no.clone(),
            insuplc_admdvs: self.persons[i].home.to_string(),
            setl_date: self.today(),
            items,
            sent_at_ms: self.world.clock.now_ms(),
            // The flag's filing waiver is for stays; 13 is the emergency visit.
            emergency: med_type == MedType::Inpatient && self.rng.gen_bool(0.4),
            med_type: med_type.code().to_string(),
            dise_codg: if med_type == MedType::ChronicOutpatient { CHRONIC_DISEASE.into() } else { String::new() },
            acct_used_flag: self.rng.gen_bool(0.8),
            ..HospitalRequest::default()
        };
        self.send_new(hospital, treatment, req, copies).await
    }

    async fn send_new(
        &mut self,
        hospital: &str,
        treatment: RegionCode,
        req: HospitalRequest,
        copies: usize,
    ) -> Result<(), String> {
        let env = seal(&key(hospital), HOSPITAL_DOMAIN, hospital, &req);
        let o = Outstanding { hospital: hospital.to_string(), treatment, msgid: req.msgid.clone(), env };
        self.outstanding.insert((o.hospital.clone(), o.msgid.clone()), o.clone());
        self.send(&o, copies).await
    }

    /// Sends a request (`copies` times at once, as a hospital retrying
    /// impatiently does) and records what the hospital is told.
    async fn send(&mut self, o: &Outstanding, copies: usize) -> Result<(), String> {
        let node = Arc::clone(self.world.node(o.treatment)?);
        let calls = (0..copies).map(|_| {
            let node = Arc::clone(&node);
            let env = o.env.clone();
            async move { node.handle_hospital(env).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        for answer in answers {
            match answer {
                Ok(resp) => {
                    self.model.answer(&o.hospital, &o.msgid, &resp)?;
                    self.outstanding.remove(&(o.hospital.clone(), o.msgid.clone()));
                }
                // Not answered yet: the hospital will ask again.
                Err(NodeError::HomeUnreachable(_)) => {}
                Err(e) => return Err(format!("{}/{}: unexpected error: {e}", o.hospital, o.msgid)),
            }
        }
        Ok(())
    }

    async fn retry_outstanding(&mut self) -> Result<(), String> {
        let keys: Vec<(String, String)> = self.outstanding.keys().cloned().collect();
        let Some(k) = keys.choose(&mut self.rng) else { return Ok(()) };
        let o = self.outstanding[k].clone();
        self.retries += 1;
        self.send(&o, 1).await
    }

    /// A hospital asks again about a request it already has an answer to.
    async fn repeat_acked(&mut self) -> Result<(), String> {
        let keys: Vec<(String, String)> = self.model.acked.keys().cloned().collect();
        let Some((hospital, msgid)) = keys.choose(&mut self.rng).cloned() else { return Ok(()) };
        let treatment = self.model.acked[&(hospital.clone(), msgid.clone())].treatment;
        // Re-sign the same request: the node must answer with the first answer.
        let node = self.world.node(treatment)?;
        let intent = node
            .ledger()
            .entry_by_key(&crate::node::keys::intent(&hospital, &msgid))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{hospital}/{msgid}: acknowledged without an intent"))?;
        let rec: crate::node::records::IntentEntry =
            serde_json::from_slice(&intent.body.payload).map_err(|e| e.to_string())?;
        let env = rec.hospital_request().ok_or("stored request")?;
        self.retries += 1;
        self.send(&Outstanding { hospital, treatment, msgid, env }, 1).await
    }

    async fn reverse_one(&mut self) -> Result<(), String> {
        let candidates: Vec<(String, String)> = self
            .model
            .acked
            .iter()
            .filter(|(k, a)| !a.reversal && !self.reversal_sent.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let Some((hospital, msgid)) = candidates.choose(&mut self.rng).cloned() else { return Ok(()) };
        let a = self.model.acked[&(hospital.clone(), msgid.clone())].clone();
        let original: crate::proto::ClaimResult = crate::api::envelope::peek(&a.result).map_err(|e| e.to_string())?;
        let node = self.world.node(a.treatment)?;
        let intent = node
            .ledger()
            .entry_by_key(&crate::node::keys::intent(&hospital, &msgid))
            .map_err(|e| e.to_string())?
            .ok_or("intent missing")?;
        let rec: crate::node::records::IntentEntry =
            serde_json::from_slice(&intent.body.payload).map_err(|e| e.to_string())?;
        let first: HospitalRequest =
            rec.hospital_request().and_then(|s| crate::api::envelope::peek(&s).ok()).ok_or("stored request")?;
        let req = HospitalRequest {
            fixmedins_code: hospital.clone(),
            msgid: self.new_msgid(),
            action: Action::Reverse as i32,
            psn_no: first.psn_no,
            insuplc_admdvs: first.insuplc_admdvs,
            setl_date: self.today(),
            reversed_msgid: original.msgid,
            sent_at_ms: self.world.clock.now_ms(),
            ..HospitalRequest::default()
        };
        self.reversal_sent.insert((hospital.clone(), msgid));
        self.send_new(&hospital, a.treatment, req, 1).await
    }

    async fn redrive(&mut self) -> Result<(), String> {
        let treatments: Vec<RegionCode> = HOSPITALS.iter().map(|(_, r)| code(r)).collect();
        let Some(t) = treatments.choose(&mut self.rng) else { return Ok(()) };
        // An unreachable home is the network's doing, not a failure.
        let _ = self.world.node(*t)?.redrive_intents().await;
        Ok(())
    }

    async fn crash_one(&mut self) -> Result<(), String> {
        // Prefer a node whose answer was just lost: the interesting moment.
        let lost: Vec<RegionCode> = self.world.net.take_reply_lost().into_iter().collect();
        let all: Vec<RegionCode> = self.world.nodes.keys().copied().collect();
        let pool = if !lost.is_empty() && self.rng.gen_bool(0.7) { lost } else { all };
        let Some(region) = pool.choose(&mut self.rng).copied() else { return Ok(()) };
        let how = match self.rng.gen_range(0..5) {
            0 => Crash::Clean,
            1 => Crash::TornTail,
            2 => Crash::LostIndex,
            3 => Crash::LostState,
            _ => Crash::StaleState,
        };
        let mut garbage = Vec::new();
        if how == Crash::TornTail {
            let len: u32 = self.rng.gen_range(200..900);
            garbage.extend_from_slice(&len.to_be_bytes());
            garbage.extend_from_slice(&self.rng.gen::<u32>().to_be_bytes());
            let partial = self.rng.gen_range(0..len as usize);
            garbage.extend((0..partial).map(|_| self.rng.gen::<u8>()));
        }
        self.crash_faults.crashes += 1;
        match how {
            Crash::TornTail => self.crash_faults.torn_tails += 1,
            Crash::LostIndex => self.crash_faults.lost_indexes += 1,
            Crash::LostState => self.crash_faults.lost_states += 1,
            Crash::StaleState => self.crash_faults.stale_states += 1,
            Crash::Clean => {}
        }
        self.world.crash(region, how, &garbage).await?;
        // A restarted treatment node re-drives its open intents, as the server does on start.
        let _ = self.world.node(region)?.redrive_intents().await;
        Ok(())
    }

    fn partition(&mut self) {
        let (_, t) = *HOSPITALS.choose(&mut self.rng).unwrap_or(&HOSPITALS[0]);
        let homes: Vec<RegionCode> =
            REGIONS.iter().filter(|(r, t)| !t.is_empty() && *r != "110000").map(|(r, _)| code(r)).collect();
        if let Some(h) = homes.choose(&mut self.rng) {
            let until = self.step + self.rng.gen_range(1..20);
            self.world.net.partition(code(t), *h, until);
        }
    }

    /// Faults off: every node re-drives, every hospital asks again until
    /// answered. Afterwards both sides hold every settlement.
    async fn quiesce(&mut self) -> Result<(), String> {
        self.world.net.set_quiet(true);
        self.world.net.heal();
        for _ in 0..3 {
            let regions: Vec<RegionCode> = self.world.nodes.keys().copied().collect();
            for r in regions {
                let _ = self.world.node(r)?.redrive_intents().await;
            }
            let pending: Vec<Outstanding> = self.outstanding.values().cloned().collect();
            for o in pending {
                self.send(&o, 1).await?;
            }
            if self.outstanding.is_empty() {
                break;
            }
        }
        self.world.net.set_quiet(false);
        if let Some(((h, m), _)) = self.outstanding.iter().next() {
            return Err(format!("{h}/{m} is still unanswered with the network healed"));
        }
        self.model.check(&self.world)?;
        self.model.check_quiet()
    }
}
