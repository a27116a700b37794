//! The simulated hospitals of `xclear bench e2e`: a closed loop (each
//! hospital sends its next bill when the last is answered) and an open loop
//! (bills due at a fixed rate, whatever the answers' pace).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tonic::transport::Channel;

use xclear::api::envelope::{seal, HOSPITAL_DOMAIN};
use xclear::proto::hospital_service_client::HospitalServiceClient;
use xclear::proto::{hospital_request::Action, BillItem, HospitalRequest};

/// An institution's key, derived once per code: signing costs what it would
/// with the institution's own key, and the derivation stays out of the loop.
fn institution_key(code: &str) -> Arc<SigningKey> {
    static KEYS: std::sync::Mutex<BTreeMap<String, Arc<SigningKey>>> = std::sync::Mutex::new(BTreeMap::new());
    let mut keys = KEYS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = keys
        .entry(code.to_string())
        .or_insert_with(|| Arc::new(xclear::federation::key(super::bench_e2e::FEDERATION, code)));
    Arc::clone(key)
}

/// Where the simulated institutions send: the treatment node's URL, and the
/// federation's CA when its connections are TLS (each institution's
/// connection then carries the institution's own certificate).
#[derive(Clone)]
pub(super) struct Target {
    pub url: String,
    pub ca: Option<Arc<xclear::federation::FederationCa>>,
}

impl Target {
    /// A connected client of the institution `code` (of 110000).
    async fn client(&self, code: &str) -> Result<HospitalServiceClient<Channel>, String> {
        let tls = match &self.ca {
            Some(ca) => Some(ca.client(&institution_key(code), code)?),
            None => None,
        };
        let endpoint = xclear::tls::endpoint(&self.url, tls.as_deref(), None)?;
        Ok(HospitalServiceClient::new(endpoint.connect().await.map_err(|e| format!("{}: {e}", self.url))?))
    }
}

/// What the simulated hospitals send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Traffic {
    /// Every bill a stay (med_type 21).
    Inpatient,
    /// The country's mix: of every 20 bills, 10 general outpatient, 1
    /// emergency, 2 chronic-disease, 5 pharmacy purchases (sent by the
    /// hospital's pharmacy `P{h}`), 2 stays.
    Mix,
}

/// The bench's chronic disease: every bench person is qualified for it.
pub(super) const BENCH_DISEASE: &str = "M03900";

/// `hospitals` concurrent hospitals (codes H0.., one connection each) settle
/// one bill after another at the treatment node for `seconds`; returns every
/// settlement's latency. `phase` keeps msgids of different phases apart.
pub(super) async fn drive(
    target: &Target,
    hospitals: usize,
    seconds: u64,
    persons: usize,
    phase: &'static str,
    traffic: Traffic,
) -> Result<Vec<Duration>, String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for h in 0..hospitals {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            // The hospital's connection, and its pharmacy's for the mix.
            let mut clients = BTreeMap::new();
            let code = format!("H{h}");
            clients.insert(code.clone(), target.client(&code).await?);
            let mut latencies = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let req = bill(&code, format!("{phase}{h}n{i}"), (h * 7919 + i) % persons, traffic, i);
                if !clients.contains_key(&req.fixmedins_code) {
                    clients.insert(req.fixmedins_code.clone(), target.client(&req.fixmedins_code).await?);
                }
                let client = clients.get_mut(&req.fixmedins_code).ok_or("no client")?;
                let started = Instant::now();
                settle(client, &req).await?;
                latencies.push(started.elapsed());
                i += 1;
            }
            Ok::<Vec<Duration>, String>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// The `n`th bill of simulated hospital `code` (`H{h}`): `msgid` fresh, the
/// person `P{person}` of 611000, treated in 110000; a stay, or in the mix
/// the type its turn gives (a purchase comes from the pharmacy `P{h}`).
fn bill(code: &str, msgid: String, person: usize, traffic: Traffic, n: usize) -> HospitalRequest {
    let (med_type, dise_codg, fixmedins_code) = match (traffic, n % 20) {
        (Traffic::Inpatient, _) | (Traffic::Mix, 18..) => ("21", "", code.to_string()),
        (Traffic::Mix, 0..=9) => ("11", "", code.to_string()),
        (Traffic::Mix, 10) => ("13", "", code.to_string()),
        (Traffic::Mix, 11..=12) => ("14", BENCH_DISEASE, code.to_string()),
        (Traffic::Mix, _) => ("41", "", code.replacen('H', "P", 1)),
    };
    let items = if med_type == "41" {
        vec![BillItem { code: "XA002".into(), qty: "2".into(), price: "36.80".into() }]
    } else {
        vec![
            BillItem { code: "XA001".into(), qty: "1".into(), price: "1200.00".into() },
            BillItem { code: "XB001".into(), qty: "2".into(), price: "88.50".into() },
        ]
    };
    HospitalRequest {
        fixmedins_code,
        msgid,
        action: Action::Settle as i32,
        psn_no: format!("P{person}"),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-10".into(),
        items,
        med_type: med_type.into(),
        dise_codg: dise_codg.into(),
        ..Default::default()
    }
}

/// Signs `req` as its institution (the benchmark federation's key of its
/// code), submits it and insists it settled.
async fn settle(client: &mut HospitalServiceClient<Channel>, req: &HospitalRequest) -> Result<(), String> {
    let code = &req.fixmedins_code;
    let key = institution_key(code);
    let r = client.submit(seal(&key, HOSPITAL_DOMAIN, code, req)).await.map_err(|e| e.to_string())?.into_inner();
    if r.settled {
        Ok(())
    } else {
        Err(format!("not settled: {} {}", r.refusal, r.message))
    }
}

/// What an open-loop phase measured.
pub(super) struct Paced {
    /// Each settlement's latency from the moment it was due to be sent.
    pub latencies: Vec<Duration>,
    /// From the first due moment to the last answer.
    pub elapsed: Duration,
}

/// Settlements offered at `rate` per second for `seconds`, whatever the
/// answers' pace (open loop), spread over `hospitals` hospitals (one
/// connection each) in turn. Each latency runs from the moment the bill was
/// due, not from when it could be sent: a node that falls behind is charged
/// for the queue it builds (no coordinated omission). At most
/// `32 * hospitals` settlements are in flight at once (a node takes 64 per
/// hospital); a bill that waits for room waits on its own clock.
pub(super) async fn drive_at_rate(
    target: &Target,
    hospitals: usize,
    rate: u32,
    seconds: u64,
    persons: usize,
    phase: &'static str,
) -> Result<Paced, String> {
    let mut clients = Vec::with_capacity(hospitals);
    for h in 0..hospitals {
        clients.push(target.client(&format!("H{h}")).await?);
    }
    let room = Arc::new(tokio::sync::Semaphore::new(32 * hospitals.max(1)));
    let total = u64::from(rate) * seconds;
    let period = Duration::from_secs(1) / rate.max(1);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        // Answered settlements are collected as they finish: a finished
        // task holds its memory until it is joined.
        while let Some(r) = tasks.try_join_next() {
            latencies.push(r.map_err(|e| e.to_string())??);
        }
        let due = start + period * u32::try_from(i).map_err(|_| "too many settlements")?;
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&room).acquire_owned().await.map_err(|e| e.to_string())?;
        let h = i as usize % hospitals.max(1);
        let mut client = clients[h].clone();
        let req = bill(&format!("H{h}"), format!("{phase}{i}"), (i as usize * 7919) % persons, Traffic::Inpatient, 0);
        tasks.spawn(async move {
            settle(&mut client, &req).await?;
            drop(permit);
            Ok::<Duration, String>(due.elapsed())
        });
    }
    while let Some(r) = tasks.join_next().await {
        latencies.push(r.map_err(|e| e.to_string())??);
    }
    Ok(Paced { latencies, elapsed: start.elapsed() })
}
