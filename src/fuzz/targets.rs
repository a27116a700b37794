//! The fuzz targets: each decoder that sees outside input, reached the way
//! the outside reaches it. RPC targets feed a live in-process federation
//! (the simulation's) both raw envelopes and mutated bodies that are
//! properly signed, so the fuzzing gets past the signature checks.

use std::sync::Arc;

use prost::Message;

use crate::api::envelope::{
    ADMIN_DOMAIN, CLAIM_DOMAIN, CONFIRMATION_DOMAIN, HOSPITAL_DOMAIN, OPERATOR_DOMAIN, PEER_QUERY_DOMAIN,
};
use crate::clock::ManualClock;
use crate::proto::{
    hospital_request::Action, registration_request::Op, BillItem, Claim, Confirmation, ContributionYearsRequest,
    HospitalRequest, LinesRequest, RegistrationRequest, ReportRequest, Signed,
};
use crate::rules::RuleBook;
use crate::sim::network::{FaultRates, SimNetwork};
use crate::sim::world::{code, key, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// HospitalService.Submit: a hospital's signed request.
    Hospital,
    /// PeerService.SubmitClaim: a treatment node's signed claim.
    Claim,
    /// PeerService.ContributionYears: a partner's signed query.
    PeerQuery,
    /// RegistrationService.Apply: an agency's signed registration.
    Registration,
    /// ReportService and the operator: report and line requests, confirmations.
    Report,
    /// `xclear calc` case JSON.
    Calc,
    /// Rules files (policies, catalogues, corps–local pairs).
    Rules,
    /// Node and operator config files.
    Config,
    /// Ledger exports (`xclear ledger verify-export`).
    Export,
}

impl Target {
    pub const ALL: [Target; 9] = [
        Target::Hospital,
        Target::Claim,
        Target::PeerQuery,
        Target::Registration,
        Target::Report,
        Target::Calc,
        Target::Rules,
        Target::Config,
        Target::Export,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Hospital => "hospital",
            Target::Claim => "claim",
            Target::PeerQuery => "peer-query",
            Target::Registration => "registration",
            Target::Report => "report",
            Target::Calc => "calc",
            Target::Rules => "rules",
            Target::Config => "config",
            Target::Export => "export",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

const POLICY: &str = include_str!("../../clearing_rules/policies/611000-390-2026.toml");
const CATALOGUE: &str = include_str!("../../clearing_rules/catalogues/110000.toml");
const NATIONAL: &str = include_str!("../../clearing_rules/catalogues/national_base.toml");
const PAIRS: &str = include_str!("../../clearing_rules/corps_local.toml");
const NODE_CONFIG: &str = include_str!("../../examples/110000.toml");
const CASE: &str = include_str!("../../tests/cases/example_a.json");
const OPERATOR_CONFIG: &str = "data_dir = \"operator\"\nkey_file = \"operator.key\"\nrules_dir = \"clearing_rules\"\nwarning_pct = 90\n\
[[nodes]]\nregion = \"611000\"\nendpoint = \"http://127.0.0.1:7001\"\npublic_key = \"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\"\n\
[[quotas]]\nregion = \"611000\"\namount = \"50000.00\"\n";

pub(super) struct Harness {
    target: Target,
    rt: tokio::runtime::Runtime,
    world: Option<World>,
    rules: Arc<RuleBook>,
    export: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn sealed(signer: &str, domain: &[u8], body: &[u8]) -> Signed {
    let signature = crate::crypto::sign(&key(signer), domain, body).to_bytes().to_vec();
    Signed { body: body.to_vec(), signature, signer: signer.to_string(), batch: None }
}

fn bill() -> HospitalRequest {
    HospitalRequest {
        fixmedins_code: "H110000A".into(),
        msgid: "F1".into(),
        action: Action::Settle as i32,
        psn_no: "P611000000".into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-27".into(),
        items: vec![
            BillItem { code: "XB001".into(), qty: "1".into(), price: "1000.00".into() },
            BillItem { code: "XA001".into(), qty: "2".into(), price: "35.50".into() },
        ],
        sent_at_ms: 1,
        emergency: true,
        ..HospitalRequest::default()
    }
}

impl Harness {
    pub(super) fn new(target: Target) -> Result<Harness, String> {
        let dir = crate::sim::scratch_dir()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let rules = Arc::new(
            RuleBook::parse_files(
                &[("policy.toml".into(), POLICY.into())],
                &[("110000.toml".into(), CATALOGUE.into()), ("national_base.toml".into(), NATIONAL.into())],
                Some(&("corps_local.toml".into(), PAIRS.into())),
                Vec::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        let needs_world = matches!(
            target,
            Target::Hospital
                | Target::Claim
                | Target::PeerQuery
                | Target::Registration
                | Target::Report
                | Target::Export
        );
        let mut world = None;
        let mut export = Vec::new();
        if needs_world {
            let full = Arc::new(
                RuleBook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clearing_rules"))
                    .map_err(|e| e.to_string())?,
            );
            let clock = Arc::new(ManualClock::new(1_774_573_200_000));
            let net = SimNetwork::new(0, FaultRates::default(), Arc::clone(&clock));
            net.set_quiet(true);
            let w = World::build(dir.path(), full, clock, net, Default::default())?;
            let home = w.node(code("611000"))?;
            let person = crate::node::records::PersonRecord {
                psn_no: "P611000000".into(),
                insuplc_admdvs: "611000".into(),
                insutype: "390".into(),
                retired: true,
                special_group: None,
                contribution_years: Default::default(),
                acct_balance: None,
                chronic: Vec::new(),
            };
            rt.block_on(home.import_persons(&[person])).map_err(|e| e.to_string())?;
            if target == Target::Export {
                let bj = w.node(code("110000"))?;
                let env = sealed("H110000A", HOSPITAL_DOMAIN, &bill().encode_to_vec());
                rt.block_on(bj.handle_hospital(env)).map_err(|e| e.to_string())?;
                let data = w.data_dir(code("110000"));
                rt.block_on(w.shut_down_and_verify())?;
                crate::ledger::export::export_dir(&data, &mut export)?;
            } else {
                world = Some(w);
            }
        }
        Ok(Harness { target, rt, world, rules, export, _dir: dir })
    }

    /// Valid inputs to start mutating from.
    pub(super) fn corpus(&self) -> Vec<Vec<u8>> {
        let mut settle = bill();
        let hospital = settle.encode_to_vec();
        settle.action = Action::Reverse as i32;
        settle.reversed_msgid = "F0".into();
        let reverse = settle.encode_to_vec();
        match self.target {
            Target::Hospital => {
                vec![hospital.clone(), reverse, sealed("H110000A", HOSPITAL_DOMAIN, &hospital).encode_to_vec()]
            }
            Target::Claim => {
                let claim = Claim {
                    mdtrtarea_admvs: "110000".into(),
                    fixmedins_code: "H110000A".into(),
                    hosp_lv: 3,
                    msgid: "F1".into(),
                    action: Action::Settle as i32,
                    psn_no: "P611000000".into(),
                    insuplc_admdvs: "611000".into(),
                    setl_date: "2026-03-27".into(),
                    medfee_sumamt: "1071.00".into(),
                    fulamt_ownpay_amt: "0.00".into(),
                    overlmt_selfpay: "0.00".into(),
                    preselfpay_amt: "100.00".into(),
                    inscp_scp_amt: "971.00".into(),
                    hospital_request: Some(sealed("H110000A", HOSPITAL_DOMAIN, &hospital)),
                    emergency: true,
                    ..Claim::default()
                };
                let mut presettle = claim.clone();
                presettle.action = Action::Presettle as i32;
                vec![claim.encode_to_vec(), presettle.encode_to_vec()]
            }
            Target::PeerQuery => vec![ContributionYearsRequest { psn_no: "P654000000".into() }.encode_to_vec()],
            Target::Registration => {
                let r = RegistrationRequest {
                    msgid: "reg-F1".into(),
                    op: Op::Create as i32,
                    psn_no: "P611000000".into(),
                    kind: "long_term_resident".into(),
                    target_admdvs: "110000".into(),
                    begndate: "2026-01-01".into(),
                    ..RegistrationRequest::default()
                };
                let mut cancel = r.clone();
                cancel.op = Op::Cancel as i32;
                cancel.reg_id = "R1".into();
                vec![r.encode_to_vec(), cancel.encode_to_vec()]
            }
            Target::Report => vec![
                ReportRequest { month: "2026-03".into(), seal: true }.encode_to_vec(),
                LinesRequest { month: "2026-03".into(), counterpart: "110000".into(), ..LinesRequest::default() }
                    .encode_to_vec(),
                Confirmation {
                    month: "2026-03".into(),
                    region: "611000".into(),
                    statement_hash: "00".repeat(32),
                    disputes: vec![],
                    withdrawn: vec![],
                }
                .encode_to_vec(),
            ],
            Target::Calc => vec![CASE.as_bytes().to_vec()],
            Target::Rules => vec![POLICY.as_bytes().to_vec(), CATALOGUE.as_bytes().to_vec(), PAIRS.as_bytes().to_vec()],
            Target::Config => vec![NODE_CONFIG.as_bytes().to_vec(), OPERATOR_CONFIG.as_bytes().to_vec()],
            Target::Export => vec![self.export.clone()],
        }
    }

    /// Feeds one input; `salt` picks among the ways in. Returns whether it
    /// was accepted. Must not panic.
    pub(super) fn feed(&mut self, input: &[u8], salt: u64) -> bool {
        let raw = salt.is_multiple_of(4);
        let envelope = |signer: &str, domain: &[u8]| {
            if raw {
                Signed::decode(input).ok()
            } else {
                Some(sealed(signer, domain, input))
            }
        };
        let text = || std::str::from_utf8(input).ok();
        match self.target {
            Target::Calc => text().is_some_and(|t| crate::calc::run_case(&self.rules, t).is_ok()),
            Target::Rules => {
                let Some(t) = text() else { return false };
                let mut policies = vec![("policy.toml".to_string(), POLICY.to_string())];
                let mut catalogues = vec![
                    ("110000.toml".to_string(), CATALOGUE.to_string()),
                    ("national_base.toml".to_string(), NATIONAL.to_string()),
                ];
                let mut pairs = ("corps_local.toml".to_string(), PAIRS.to_string());
                match salt % 3 {
                    0 => policies[0].1 = t.to_string(),
                    1 => catalogues[0].1 = t.to_string(),
                    _ => pairs.1 = t.to_string(),
                }
                RuleBook::parse_files(&policies, &catalogues, Some(&pairs), Vec::new()).is_ok()
            }
            Target::Config => {
                let Some(t) = text() else { return false };
                let base = std::path::Path::new("/nonexistent");
                if salt.is_multiple_of(2) {
                    crate::node::config::NodeConfig::parse(t, "fuzz.toml", base).is_ok()
                } else {
                    crate::operator::config::OperatorConfig::parse(t, "fuzz.toml", base).is_ok()
                }
            }
            Target::Export => {
                crate::ledger::export::verify_export(&mut &input[..], &key("110000").verifying_key()).is_ok()
            }
            Target::Hospital | Target::Claim | Target::PeerQuery | Target::Registration | Target::Report => {
                let Some(w) = &self.world else { return false };
                let node = |r: &str| w.node(code(r)).ok().cloned();
                let (Some(home), Some(bj), Some(yili)) = (node("611000"), node("110000"), node("654000")) else {
                    return false;
                };
                match self.target {
                    Target::Hospital => envelope("H110000A", HOSPITAL_DOMAIN)
                        .is_some_and(|e| self.rt.block_on(bj.handle_hospital(e)).is_ok()),
                    Target::Claim => {
                        envelope("110000", CLAIM_DOMAIN).is_some_and(|e| self.rt.block_on(home.handle_claim(e)).is_ok())
                    }
                    Target::PeerQuery => {
                        envelope("660400", PEER_QUERY_DOMAIN).is_some_and(|e| yili.handle_contribution_years(e).is_ok())
                    }
                    Target::Registration => envelope("agency", ADMIN_DOMAIN)
                        .is_some_and(|e| self.rt.block_on(home.apply_registration(e)).is_ok()),
                    _ => match (salt / 4) % 3 {
                        0 => envelope("operator", OPERATOR_DOMAIN)
                            .is_some_and(|e| self.rt.block_on(home.handle_report_request(e)).is_ok()),
                        1 => {
                            envelope("operator", OPERATOR_DOMAIN).is_some_and(|e| home.handle_lines_request(e).is_ok())
                        }
                        _ => envelope("611000", CONFIRMATION_DOMAIN)
                            .is_some_and(|e| self.rt.block_on(w.operator.answer(e)).is_ok()),
                    },
                }
            }
        }
    }
}
