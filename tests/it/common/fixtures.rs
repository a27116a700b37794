//! The in-process federation most node tests share: four regions (商洛,
//! Beijing, 伊犁, the 4th division), their hospitals, and helpers to insure,
//! register and settle.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use xclear::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN};
use xclear::api::NodeError;
use xclear::clock::{Clock, ManualClock};
use xclear::federation::LocalNetwork;
use xclear::node::records::PersonRecord;
use xclear::node::{Node, NodeConfig};
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, Claim, HospitalRequest, HospitalResponse,
    RegistrationRequest,
};
use xclear::region::RegionCode;

pub(crate) const REGIONS: [&str; 4] = ["611000", "110000", "654000", "660400"];
pub(crate) const BJ_HOSPITAL: &str = "H110105001";
pub(crate) const YILI_HOSPITAL: &str = "H654002001";
pub(crate) const CORPS_HOSPITAL: &str = "H660402001";
/// 2026-03-10 10:00 Asia/Shanghai.
pub(crate) const T0: i64 = 1_773_108_000_000;

pub(crate) fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

pub(crate) fn node_key(region: &str) -> SigningKey {
    common::key(region)
}

pub(crate) fn hospital_key(c: &str) -> SigningKey {
    common::key(c)
}

pub(crate) fn admin_key() -> SigningKey {
    common::key("agency")
}

pub(crate) struct Federation {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) net: Arc<LocalNetwork>,
    pub(crate) nodes: BTreeMap<&'static str, Arc<Node>>,
    pub(crate) clock: Arc<ManualClock>,
}

pub(crate) fn config(region: &'static str, dir: &std::path::Path) -> NodeConfig {
    use xclear::federation::{Institution, NodePlan};
    let institutions = match region {
        "110000" => vec![
            Institution::hospital(BJ_HOSPITAL, 3),
            Institution { designated: false, ..Institution::hospital("H110105999", 2) },
        ],
        "654000" => vec![Institution { cross_region: false, ..Institution::hospital(YILI_HOSPITAL, 2) }],
        "660400" => vec![Institution { cross_region: false, ..Institution::hospital(CORPS_HOSPITAL, 3) }],
        _ => Vec::new(),
    };
    let mut plan = NodePlan::new(common::FEDERATION, code(region), dir.join(region), common::rules_dir())
        .with_peers(REGIONS.iter().map(|r| (code(r), "http://in-process".to_string())))
        .with(institutions);
    plan.operator = false;
    plan.config()
}

pub(crate) fn open_node(
    region: &'static str,
    dir: &std::path::Path,
    net: &Arc<LocalNetwork>,
    clock: &Arc<ManualClock>,
) -> Arc<Node> {
    open_via(region, dir, net, net.clone(), clock, |n| n)
}

/// Opens a region's node that reaches its peers through `transport`,
/// adjusted by `tune`, and makes it reachable on `net`.
pub(crate) fn open_via(
    region: &'static str,
    dir: &std::path::Path,
    net: &Arc<LocalNetwork>,
    transport: Arc<dyn xclear::node::PeerTransport>,
    clock: &Arc<ManualClock>,
    tune: impl FnOnce(Node) -> Node,
) -> Arc<Node> {
    let rules = Arc::new(common::rules());
    let clock: Arc<dyn Clock> = clock.clone();
    let node = Node::open(config(region, dir), node_key(region), rules, clock, transport).expect("open node");
    let node = Arc::new(tune(node));
    net.attach(&node);
    node
}

pub(crate) fn federation() -> Federation {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(T0));
    let nodes = REGIONS.iter().map(|r| (*r, open_node(r, dir.path(), &net, &clock))).collect();
    Federation { _dir: dir, net, nodes, clock }
}

pub(crate) fn person(psn: &str, region: &str, insutype: &str) -> PersonRecord {
    PersonRecord {
        psn_no: psn.into(),
        insuplc_admdvs: region.into(),
        insutype: insutype.into(),
        retired: false,
        special_group: None,
        contribution_years: BTreeMap::new(),
        acct_balance: None,
        chronic: Vec::new(),
    }
}

/// A request creating a registration from 2026-01-01, open-ended.
pub(crate) fn registration(msgid: &str, psn: &str, kind: &str, target: &str) -> RegistrationRequest {
    RegistrationRequest {
        msgid: msgid.into(),
        op: Op::Create as i32,
        psn_no: psn.into(),
        kind: kind.into(),
        target_admdvs: target.into(),
        begndate: "2026-01-01".into(),
        ..Default::default()
    }
}

pub(crate) async fn register(
    node: &Arc<Node>,
    msgid: &str,
    psn: &str,
    kind: &str,
    target: &str,
) -> Result<String, NodeError> {
    let req = registration(msgid, psn, kind, target);
    node.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &req)).await.map(|r| r.reg_id)
}

pub(crate) fn example_items() -> Vec<BillItem> {
    [("XC001", "1", "3000.00"), ("FW001", "10", "150.00"), ("XB001", "1", "10000.00"), ("XA001", "1", "35500.00")]
        .iter()
        .map(|(c, q, p)| BillItem { code: c.to_string(), qty: q.to_string(), price: p.to_string() })
        .collect()
}

pub(crate) fn request(
    hospital: &str,
    msgid: &str,
    action: Action,
    psn: &str,
    home: &str,
    items: Vec<BillItem>,
) -> HospitalRequest {
    HospitalRequest {
        fixmedins_code: hospital.into(),
        msgid: msgid.into(),
        action: action as i32,
        psn_no: psn.into(),
        insuplc_admdvs: home.into(),
        setl_date: "2026-03-10".into(),
        items,
        ..Default::default()
    }
}

pub(crate) async fn submit(node: &Arc<Node>, req: &HospitalRequest) -> Result<HospitalResponse, NodeError> {
    node.handle_hospital(seal(&hospital_key(&req.fixmedins_code), HOSPITAL_DOMAIN, &req.fixmedins_code, req)).await
}

/// Sets up the 商洛 patient of the worked examples with a long-term registration in Beijing.
pub(crate) async fn shangluo_patient(f: &Federation) {
    let home = &f.nodes["611000"];
    home.import_persons(&[person("P0001", "611000", "390")]).await.expect("import");
    register(home, "r1", "P0001", "long_term_resident", "110000").await.expect("register");
}

/// A federation with the 商洛 patient registered, and the ledger sizes before the attempt.
pub(crate) async fn secured() -> (Federation, (u64, u64)) {
    let f = federation();
    shangluo_patient(&f).await;
    let lens = (f.nodes["110000"].ledger().len(), f.nodes["611000"].ledger().len());
    (f, lens)
}

/// Nothing was recorded anywhere and the counters did not move.
pub(crate) fn nothing_recorded(f: &Federation, before: (u64, u64)) {
    assert_eq!((f.nodes["110000"].ledger().len(), f.nodes["611000"].ledger().len()), before);
    assert_eq!(f.nodes["611000"].counters_of("P0001", 2026).expect("c"), Default::default());
}

pub(crate) fn claim(msgid: &str) -> Claim {
    Claim {
        mdtrtarea_admvs: "110105".into(),
        fixmedins_code: BJ_HOSPITAL.into(),
        hosp_lv: 3,
        msgid: msgid.into(),
        action: Action::Settle as i32,
        psn_no: "P0001".into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-10".into(),
        medfee_sumamt: "50000.00".into(),
        fulamt_ownpay_amt: "0.00".into(),
        overlmt_selfpay: "0.00".into(),
        preselfpay_amt: "0.00".into(),
        inscp_scp_amt: "50000.00".into(),
        ..Default::default()
    }
}
