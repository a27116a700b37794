//! A region's node: the home side of settlements (persons, registrations,
//! counters, benefit computation), the treatment side (its hospitals, its
//! catalogue, intents and outcomes), over one ledger. Pure of transport: peers
//! are reached through [`PeerTransport`] (gRPC in production, in-process in
//! tests), and time comes from a [`Clock`].

pub mod accounts;
pub mod audit;
pub mod batch_signer;
pub mod clearing_side;
pub mod config;
pub mod console;
pub mod designation;
pub mod grpc;
pub mod home;
pub mod hospital_statements;
pub mod keys;
pub mod metrics;
pub mod peer_batch;
pub mod persons;
pub mod reconcile;
pub mod records;
mod registration;
pub mod state;
mod treatment;

use std::future::Future;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;

use crate::api::NodeError;
use crate::clock::Clock;
use crate::ledger::{Ledger, LedgerError};
use crate::proto::Signed;
use crate::region::RegionCode;
use crate::rules::RuleBook;
pub use crate::transport::{BoxFuture, PeerTransport, TransportError};
pub use config::NodeConfig;
use state::HomeState;

/// Person-level locks: a person's counters move under one of these stripes.
const PERSON_LOCK_STRIPES: usize = 1024;
/// Requests one hospital may have in flight, by default.
pub const MAX_HOSPITAL_IN_FLIGHT: usize = 64;
/// Settlements awaiting their home nodes, by default.
pub const MAX_PENDING_INTENTS: usize = 100_000;

/// What one node takes on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests one hospital may have in flight; more are refused (overloaded).
    pub hospital_in_flight: usize,
    /// Settlements awaiting their home node's answer; past this, new ones are
    /// refused until the homes answer (the intents are kept and re-driven).
    pub pending_intents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { hospital_in_flight: MAX_HOSPITAL_IN_FLIGHT, pending_intents: MAX_PENDING_INTENTS }
    }
}

/// Runs `work` in its own task and waits for it. A caller going away (a
/// timeout, a dropped connection) drops the waiting future but not the work:
/// a commit is never cancelled between its durable append and the in-memory
/// state that append moves (counters, ids, registrations, running totals).
pub(crate) async fn run_to_completion<T: Send + 'static>(
    what: &str,
    work: impl Future<Output = Result<T, NodeError>> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::spawn(work).await.map_err(|e| NodeError::Internal(format!("{what} task: {e}")))?
}

pub struct Node {
    pub config: NodeConfig,
    key: SigningKey,
    rules: Arc<RuleBook>,
    ledger: Arc<Ledger>,
    /// Persons, registrations, counters, balances, settlements: in the
    /// node's state store, applied in ledger order.
    home: HomeState,
    /// Intent keys that have no outcome yet (re-driven until answered), with
    /// the time each intent was recorded.
    pending_intents: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
    /// Re-drive attempts that failed, per intent: (attempts, not before ms).
    redrive_backoff: std::sync::Mutex<std::collections::BTreeMap<String, (u32, i64)>>,
    /// Months sealed at this node (one a month: bounded by the years run).
    seals: RwLock<std::collections::BTreeSet<crate::clearing::Month>>,
    /// Home commits hold it shared from choosing their month to their append;
    /// a seal holds it alone, so no commit lands in a month as it is sealed.
    seal_gate: tokio::sync::RwLock<()>,
    person_locks: Vec<tokio::sync::Mutex<()>>,
    /// Claims and results are signed in batches of the moment.
    signer: batch_signer::BatchSigner,
    /// Peers' batch signatures already verified.
    verified: crate::api::batch_sig::VerifiedRoots,
    /// Where the time of settlements goes, stage by stage.
    stages: metrics::StageTimes,
    transport: Arc<dyn PeerTransport>,
    clock: Arc<dyn Clock>,
    /// The wait before the second attempt at a home node (doubled after).
    claim_backoff: std::time::Duration,
    limits: Limits,
    /// Requests in flight per hospital.
    hospital_in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Institutions suspended or revoked, here and by corps–local partners.
    designations: RwLock<designation::Designations>,
    /// Designation changes one at a time.
    designation_lock: tokio::sync::Mutex<()>,
    /// Institutions' latest statements and the final months held.
    issued: RwLock<hospital_statements::Issued>,
    /// Audit samples drawn and refusals by the month they clear in.
    audits: RwLock<audit::Audits>,
    /// Statements and samples are written one at a time (and reviews, each
    /// checked against what is recorded before it is appended).
    statements_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// Opens the node's ledger and rebuilds its state from it.
    pub fn open(
        config: NodeConfig,
        key: SigningKey,
        rules: Arc<RuleBook>,
        clock: Arc<dyn Clock>,
        transport: Arc<dyn PeerTransport>,
    ) -> Result<Node, LedgerError> {
        // Half the cache each: every settlement writes to both stores.
        let cache = config.store_cache_bytes / 2;
        let options = crate::ledger::Options { index_cache_bytes: cache, ..Default::default() };
        let ledger = Ledger::open_with(&config.data_dir, key.clone(), Arc::clone(&clock), options)?;
        let home = open_home(&config.data_dir, &ledger, config.region, cache)?;
        let partners: Vec<RegionCode> =
            config.peers.keys().copied().filter(|p| rules.pairs().are_partners(config.region, *p)).collect();
        let (pending_intents, seals, designations, issued, audits) =
            read_at_open(&home, &ledger, config.region, &partners)?;
        let signer = batch_signer::BatchSigner::new(key.clone(), config.region.to_string());
        Ok(Node {
            config,
            key,
            rules,
            ledger: Arc::new(ledger),
            home,
            pending_intents: std::sync::Mutex::new(pending_intents),
            redrive_backoff: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            seals: RwLock::new(seals),
            seal_gate: tokio::sync::RwLock::new(()),
            person_locks: (0..PERSON_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            signer,
            verified: crate::api::batch_sig::VerifiedRoots::default(),
            stages: metrics::StageTimes::default(),
            transport,
            clock,
            claim_backoff: treatment::CLAIM_BACKOFF,
            limits: Limits::default(),
            hospital_in_flight: std::sync::Mutex::new(std::collections::HashMap::new()),
            designations: RwLock::new(designations),
            designation_lock: tokio::sync::Mutex::new(()),
            issued: RwLock::new(issued),
            audits: RwLock::new(audits),
            statements_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> Node {
        self.limits = limits;
        self
    }

    /// Counts a hospital's request in flight until the guard is dropped;
    /// refuses it when the hospital already has its limit in flight.
    fn enter_hospital(&self, hospital: &str) -> Result<HospitalSlot<'_>, NodeError> {
        let mut m = self.hospital_in_flight.lock().map_err(|_| NodeError::Internal("in-flight lock".into()))?;
        let n = m.entry(hospital.to_string()).or_insert(0);
        if *n >= self.limits.hospital_in_flight {
            return Err(NodeError::Overloaded(format!(
                "hospital {hospital} already has {n} requests in flight (limit {})",
                self.limits.hospital_in_flight
            )));
        }
        *n += 1;
        Ok(HospitalSlot { node: self, hospital: hospital.to_string() })
    }

    /// Sets the wait between attempts at a home node (the simulation, whose
    /// network decides each attempt's fate, does not wait).
    pub fn with_claim_backoff(mut self, backoff: std::time::Duration) -> Node {
        self.claim_backoff = backoff;
        self
    }

    pub fn region(&self) -> RegionCode {
        self.config.region
    }

    /// The key this node signs with (its statements, results, reports).
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Where this node's settlements spend their time, stage by stage.
    pub fn stage_times(&self) -> &metrics::StageTimes {
        &self.stages
    }

    /// How many intents await their home node's answer.
    pub fn pending_intents(&self) -> usize {
        self.pending_intents.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// How long the oldest intent has awaited its home node's answer, in
    /// milliseconds (0 when none does).
    pub fn oldest_pending_intent_ms(&self) -> i64 {
        let oldest = self.pending_intents.lock().ok().and_then(|p| p.values().min().copied());
        oldest.map(|t| (self.clock.now_ms() - t).max(0)).unwrap_or(0)
    }

    /// The months with a settlement here, either side.
    pub fn months_with_lines(&self) -> Vec<crate::clearing::Month> {
        self.lines_months().unwrap_or_default()
    }

    /// Up to `limit` intents awaiting their home node (institution, msgid,
    /// how long, ms), oldest first, and how many there are.
    pub fn waiting(&self, limit: usize) -> (Vec<(String, String, i64)>, usize) {
        let now = self.clock.now_ms();
        let Ok(p) = self.pending_intents.lock() else { return (Vec::new(), 0) };
        let mut all: Vec<(String, String, i64)> = p
            .iter()
            .filter_map(|(k, t)| keys::parse_intent(k).map(|(h, m)| (h.to_string(), m.to_string(), (now - t).max(0))))
            .collect();
        all.sort_by_key(|w| std::cmp::Reverse(w.2));
        let total = all.len();
        all.truncate(limit);
        (all, total)
    }

    /// The months sealed at this node.
    pub fn sealed_months(&self) -> Vec<crate::clearing::Month> {
        self.seals.read().map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// The first month after every month sealed here, if any is.
    pub fn month_floor(&self) -> Option<crate::clearing::Month> {
        self.seals.read().ok().and_then(|s| s.last().map(|m| m.next()))
    }

    pub fn rules(&self) -> &RuleBook {
        &self.rules
    }

    /// The home state, to read.
    fn home(&self) -> &HomeState {
        &self.home
    }

    /// Brings the home state up to the ledger: called after every append
    /// that moves it, before the caller answers or lets go of the person.
    pub fn apply_home(&self) -> Result<(), NodeError> {
        self.home.catch_up(&self.ledger).map(|_| ()).map_err(state_error)
    }

    /// [`Node::apply_home`], and the state store reopened when it is due
    /// ([`state::HomeState::reopen_if_due`]): for the node's own loop and
    /// bulk loads, not a request's path (a reopening waits about a second).
    pub fn maintain_state(&self) -> Result<(), NodeError> {
        self.apply_home()?;
        self.home.reopen_if_due().map(|_| ()).map_err(state_error)
    }

    /// Entries the node's state store holds the effects of.
    pub fn state_position(&self) -> u64 {
        self.home.at()
    }

    /// The rows of the node's state and a digest over them.
    pub fn state_digest(&self) -> Result<(u64, [u8; 32]), NodeError> {
        self.home.digest().map_err(state_error)
    }

    fn person_lock(&self, psn_no: &str) -> &tokio::sync::Mutex<()> {
        &self.person_locks[self.person_stripe(psn_no)]
    }

    fn person_stripe(&self, psn_no: &str) -> usize {
        let d = crate::ledger::entry::entry_hash(psn_no.as_bytes());
        u16::from_be_bytes([d[0], d[1]]) as usize % self.person_locks.len()
    }

    /// The peer whose region covers `region`.
    fn peer_for(&self, region: RegionCode) -> Option<&config::Peer> {
        region.lineage().find_map(|r| self.config.peers.get(&r))
    }
}

impl Drop for Node {
    /// The state store at the ledger's end, written out: the next start
    /// replays nothing.
    fn drop(&mut self) {
        if let Err(e) = self.home.catch_up(&self.ledger).and_then(|_| self.home.flush()) {
            tracing::warn!(error = %e, "node state at close");
        }
    }
}

/// A hospital's request in flight (released on drop).
struct HospitalSlot<'a> {
    node: &'a Node,
    hospital: String,
}

impl Drop for HospitalSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.node.hospital_in_flight.lock() {
            if let Some(n) = m.get_mut(&self.hospital) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.hospital);
                }
            }
        }
    }
}

impl Node {
    /// Answers a partner's signed query for a person's contribution years.
    pub fn handle_contribution_years(&self, env: Signed) -> Result<std::collections::BTreeMap<String, u32>, NodeError> {
        let signer = RegionCode::parse(&env.signer).map_err(|_| NodeError::UnknownPeer(env.signer.clone()))?;
        let peer = self.config.peers.get(&signer).ok_or_else(|| NodeError::UnknownPeer(signer.to_string()))?;
        if !self.rules.pairs().are_partners(signer, self.region()) {
            return Err(NodeError::NotAuthorised(format!(
                "{signer} is not a corps–local partner of {}",
                self.region()
            )));
        }
        let q: crate::proto::ContributionYearsRequest =
            crate::api::envelope::open(&env, &peer.public_key, crate::api::envelope::PEER_QUERY_DOMAIN)
                .map_err(|e| NodeError::BadSignature(format!("{signer}: {e}")))?;
        Ok(self
            .home()
            .person(&q.psn_no)
            .map_err(state_error)?
            .map(|p| p.contribution_years.iter().map(|(r, y)| (r.to_string(), *y)).collect())
            .unwrap_or_default())
    }
}

/// Where a node keeps its state store, in its data directory.
pub const STATE_DIR: &str = "state";

type ReadAtOpen = (
    std::collections::BTreeMap<String, i64>,
    std::collections::BTreeSet<crate::clearing::Month>,
    designation::Designations,
    hospital_statements::Issued,
    audit::Audits,
);

/// What a node holds in memory, from its state store (caught up): the
/// intents awaiting their home node, and from the few entries that move
/// them, its seals, designations, statements and audits.
fn read_at_open(
    home: &HomeState,
    ledger: &Ledger,
    region: RegionCode,
    partners: &[RegionCode],
) -> Result<ReadAtOpen, LedgerError> {
    let as_ledger = |e: state::StateError| match e {
        state::StateError::Ledger(l) => l,
        state::StateError::Store(s) => LedgerError::Store(s),
        other => LedgerError::Corrupt { seq: 0, reason: other.to_string() },
    };
    let pending = home.pending_intents().map_err(as_ledger)?;
    let mut seals = std::collections::BTreeSet::new();
    let mut designations = designation::Designations::default();
    let mut issued = hospital_statements::Issued::default();
    let mut audits = audit::Audits::default();
    for seq in home.read_at_open().map_err(as_ledger)? {
        let e = ledger.entry(seq)?.ok_or_else(|| LedgerError::Corrupt {
            seq,
            reason: "the state store names an entry past the ledger".into(),
        })?;
        if e.body.kind == crate::ledger::EntryKind::MonthSeal {
            if let Some(m) = keys::sealed_month(&e.body.key) {
                seals.insert(m);
            }
        }
        designations.note(e.body.kind, &e.body.key, &e.body.payload, region, partners);
        issued.note(e.body.kind, &e.body.key, &e.body.payload);
        audits.note(e.body.kind, &e.body.payload);
    }
    Ok((pending, seals, designations, issued, audits))
}

/// Opens the node's state store and brings it up to the ledger; a store
/// with a bad record is rebuilt from the ledger.
fn open_home(
    dir: &std::path::Path,
    ledger: &Ledger,
    region: RegionCode,
    cache_bytes: u64,
) -> Result<HomeState, LedgerError> {
    let (kv, _) = crate::ledger::open_store(&dir.join(STATE_DIR), cache_bytes)?;
    let started = std::time::Instant::now();
    let caught_up = |kv: Arc<dyn crate::storage::KvStore>| {
        let (home, mut opened) = HomeState::open(kv, ledger, region)?;
        opened.replayed = home.catch_up(ledger)?;
        Ok::<_, state::StateError>((home, opened))
    };
    let opened = match caught_up(Arc::clone(&kv)) {
        Err(state::StateError::Corrupt { key, why }) => {
            tracing::warn!(key, why, "the node state has a bad record; rebuilding it from the ledger");
            state::clear(kv.as_ref())?;
            caught_up(kv)
        }
        other => other,
    };
    let path = dir.join(STATE_DIR);
    let opener: state::Opener = Arc::new(move || {
        Ok(Arc::new(crate::storage::SledStore::open_with_cache(&path, cache_bytes)?)
            as Arc<dyn crate::storage::KvStore>)
    });
    let opened = opened.map(|(home, o)| (home.with_opener(opener, state::REOPEN_EVERY), o));
    let (home, opened) = opened.map_err(|e| match e {
        state::StateError::Ledger(l) => l,
        state::StateError::Store(s) => LedgerError::Store(s),
        other => LedgerError::Corrupt { seq: 0, reason: other.to_string() },
    })?;
    if opened.replayed > 0 || opened.rebuilt {
        tracing::info!(
            was_at = opened.was_at,
            replayed = opened.replayed,
            rebuilt = opened.rebuilt,
            seconds = started.elapsed().as_secs_f64(),
            "node state caught up with the ledger"
        );
    }
    Ok(home)
}

pub(crate) fn state_error(e: state::StateError) -> NodeError {
    NodeError::Internal(e.to_string())
}

pub(crate) fn ledger_error(e: LedgerError) -> NodeError {
    match e {
        LedgerError::IdempotencyConflict { key, .. } => NodeError::MsgidReused(key),
        other => NodeError::Internal(other.to_string()),
    }
}
