//! Every outcome a node can answer with, as a closed enum with a stable
//! machine-readable reason, mapped to a gRPC status in one place.

use tonic::{Code, Status};

use crate::settlement::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    // --- who is asking ---
    #[error("the request is not signed")]
    Unsigned,
    #[error("the signature does not verify for {0}")]
    BadSignature(String),
    #[error("hospital {0} is not registered at this node")]
    UnknownHospital(String),
    #[error("hospital {0} is not designated for this care")]
    HospitalNotDesignated(String),
    #[error("region {0} is not a configured peer")]
    UnknownPeer(String),
    #[error("{0}")]
    NotAuthorised(String),
    // --- what is asked ---
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("msgid {0} was already used with a different request")]
    MsgidReused(String),
    #[error("person {0} is not insured at this node")]
    UnknownPerson(String),
    #[error("no settlement {0} to reverse")]
    UnknownSettlement(String),
    #[error("settlement {0} is already reversed")]
    AlreadyReversed(String),
    #[error("registration {0} does not exist")]
    UnknownRegistration(String),
    #[error("{0}")]
    HoldingPeriod(String),
    #[error("{0}")]
    NoStatement(String),
    #[error("{0}")]
    NotInSample(String),
    #[error("{0}")]
    AlreadyReviewed(String),
    // --- the settlement rules ---
    #[error("{0}")]
    Refused(Refusal),
    // --- the federation ---
    #[error("home region {0} is unreachable; the settlement will complete when it answers")]
    HomeUnreachable(String),
    #[error("home region {0} answered with an invalid result: {1}")]
    BadPeerAnswer(String, String),
    /// The home node refused a claim: its reason (one of this table's) and
    /// its message, passed on to the hospital as they are.
    #[error("{1}")]
    HomeRefused(&'static str, String),
    #[error("too many requests in flight: {0}")]
    Overloaded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NodeError::Unsigned => "unsigned",
            NodeError::BadSignature(_) => "bad_signature",
            NodeError::UnknownHospital(_) => "unknown_hospital",
            NodeError::HospitalNotDesignated(_) => "hospital_not_designated",
            NodeError::UnknownPeer(_) => "unknown_peer",
            NodeError::NotAuthorised(_) => "not_authorised",
            NodeError::BadRequest { .. } => "bad_request",
            NodeError::MsgidReused(_) => "msgid_reused",
            NodeError::UnknownPerson(_) => "unknown_person",
            NodeError::UnknownSettlement(_) => "unknown_settlement",
            NodeError::AlreadyReversed(_) => "already_reversed",
            NodeError::UnknownRegistration(_) => "unknown_registration",
            NodeError::HoldingPeriod(_) => "holding_period",
            NodeError::NoStatement(_) => "no_statement",
            NodeError::NotInSample(_) => "not_in_sample",
            NodeError::AlreadyReviewed(_) => "already_reviewed",
            NodeError::Refused(r) => r.code(),
            NodeError::HomeUnreachable(_) => "home_unreachable",
            NodeError::BadPeerAnswer(..) => "bad_peer_answer",
            NodeError::HomeRefused(reason, _) => reason,
            NodeError::Overloaded(_) => "overloaded",
            NodeError::Internal(_) => "internal",
        }
    }

    pub fn code(&self) -> Code {
        code_of(self.reason())
    }

    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> NodeError {
        NodeError::BadRequest { field: field.into(), message: message.into() }
    }
}

/// Metadata key carrying the machine-readable reason.
pub const REASON_KEY: &str = "xclear-reason";

/// The gRPC code of every machine-readable reason a node or the operator
/// answers with: the one table both error types (and a home refusal passed
/// on by a treatment node) are mapped through.
pub fn code_of(reason: &str) -> Code {
    match reason {
        "unsigned" | "bad_signature" => Code::Unauthenticated,
        "unknown_hospital" | "hospital_not_designated" | "unknown_peer" | "unknown_region" | "not_authorised" => {
            Code::PermissionDenied
        }
        "bad_request" => Code::InvalidArgument,
        "msgid_reused" | "already_reversed" | "already_reviewed" => Code::AlreadyExists,
        "unknown_person"
        | "unknown_settlement"
        | "unknown_registration"
        | "not_closed"
        | "no_statement"
        | "not_in_sample" => Code::NotFound,
        "home_unreachable" | "region_unreachable" => Code::Unavailable,
        "bad_peer_answer" | "bad_region_answer" | "internal" => Code::Internal,
        "overloaded" | "too_large" => Code::ResourceExhausted,
        // holding_period, month_not_over, month_final, month_out_of_order,
        // region_refused, and every settlement refusal (registration_required, …)
        _ => Code::FailedPrecondition,
    }
}

/// A status carrying `reason` in the `xclear-reason` metadata.
pub fn status(reason: &str, message: String) -> Status {
    let mut status = Status::new(code_of(reason), message);
    if let Ok(v) = reason.parse() {
        status.metadata_mut().insert(REASON_KEY, v);
    }
    status
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        status(e.reason(), e.to_string())
    }
}

/// The machine-readable reason of a status from a node.
pub fn reason_of(status: &Status) -> Option<String> {
    status.metadata().get(REASON_KEY).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_its_reason_and_code() {
        let all = [
            NodeError::Unsigned,
            NodeError::BadSignature("H1".into()),
            NodeError::UnknownHospital("H1".into()),
            NodeError::HospitalNotDesignated("H1".into()),
            NodeError::UnknownPeer("110000".into()),
            NodeError::NotAuthorised("x".into()),
            NodeError::bad("items", "empty"),
            NodeError::MsgidReused("m".into()),
            NodeError::UnknownPerson("P".into()),
            NodeError::UnknownSettlement("S".into()),
            NodeError::AlreadyReversed("S".into()),
            NodeError::UnknownRegistration("R".into()),
            NodeError::HoldingPeriod("x".into()),
            NodeError::NoStatement("x".into()),
            NodeError::NotInSample("x".into()),
            NodeError::AlreadyReviewed("x".into()),
            NodeError::Refused(Refusal::RegistrationRequired),
            NodeError::HomeUnreachable("611000".into()),
            NodeError::BadPeerAnswer("611000".into(), "x".into()),
            NodeError::Overloaded("x".into()),
            NodeError::Internal("x".into()),
        ];
        // The table itself, as docs/PROTOCOL.md ("Errors") states it.
        let table = [
            ("unsigned", Code::Unauthenticated),
            ("bad_signature", Code::Unauthenticated),
            ("unknown_hospital", Code::PermissionDenied),
            ("not_authorised", Code::PermissionDenied),
            ("bad_request", Code::InvalidArgument),
            ("msgid_reused", Code::AlreadyExists),
            ("unknown_person", Code::NotFound),
            ("registration_required", Code::FailedPrecondition),
            ("month_final", Code::FailedPrecondition),
            ("home_unreachable", Code::Unavailable),
            ("internal", Code::Internal),
            ("overloaded", Code::ResourceExhausted),
        ];
        for (reason, code) in table {
            assert_eq!(code_of(reason), code, "{reason}");
        }
        let passed_on = NodeError::HomeRefused("unknown_person", "person P9 is not insured at this node".into());
        assert_eq!(passed_on.to_string(), "person P9 is not insured at this node", "no words added");
        assert_eq!((passed_on.reason(), passed_on.code()), ("unknown_person", Code::NotFound));
        let mut reasons = std::collections::HashSet::new();
        for e in all {
            let status: Status = e.clone().into();
            assert_eq!(status.code(), e.code());
            assert_eq!(reason_of(&status).as_deref(), Some(e.reason()));
            assert!(reasons.insert(e.reason()), "duplicate reason {}", e.reason());
        }
    }
}
