//! Every outcome the operator answers with: a closed enum with stable
//! reasons, mapped to gRPC statuses through the same table as the nodes'
//! ([`crate::api::error::code_of`]).

use tonic::{Code, Status};

use crate::api::NodeError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    // --- who is asking ---
    #[error("the request is not signed")]
    Unsigned,
    #[error("the signature does not verify for {0}")]
    BadSignature(String),
    #[error("{0}")]
    NotAuthorised(String),
    #[error("region {0} is not one the operator clears")]
    UnknownRegion(String),
    // --- what is asked ---
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{0} is not closed yet")]
    NotClosed(String),
    /// A month that has not ended (plus the grace) cannot be closed.
    #[error("{0}")]
    MonthNotOver(String),
    /// A final month is not closed, disputed or adjusted again.
    #[error("{0}")]
    MonthFinal(String),
    /// Months close in order, each after the one before is final.
    #[error("{0}")]
    MonthOutOfOrder(String),
    // --- the regions' nodes ---
    #[error("region {0} did not answer the operator")]
    RegionUnreachable(String),
    /// A region's node refused the operator's request.
    #[error("region {0} refused: {1}")]
    RegionRefused(String, String),
    /// A region's node answered with something the operator cannot use.
    #[error("region {0} answered with an invalid report: {1}")]
    BadRegionAnswer(String, String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl OperatorError {
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            OperatorError::Unsigned => "unsigned",
            OperatorError::BadSignature(_) => "bad_signature",
            OperatorError::NotAuthorised(_) => "not_authorised",
            OperatorError::UnknownRegion(_) => "unknown_region",
            OperatorError::BadRequest { .. } => "bad_request",
            OperatorError::NotClosed(_) => "not_closed",
            OperatorError::MonthNotOver(_) => "month_not_over",
            OperatorError::MonthFinal(_) => "month_final",
            OperatorError::MonthOutOfOrder(_) => "month_out_of_order",
            OperatorError::RegionUnreachable(_) => "region_unreachable",
            OperatorError::RegionRefused(..) => "region_refused",
            OperatorError::BadRegionAnswer(..) => "bad_region_answer",
            OperatorError::Internal(_) => "internal",
        }
    }

    pub fn code(&self) -> Code {
        crate::api::error::code_of(self.reason())
    }

    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> OperatorError {
        OperatorError::BadRequest { field: field.into(), message: message.into() }
    }

    /// A region's answer that a wire conversion refused.
    pub(crate) fn region_answer(region: impl std::fmt::Display) -> impl Fn(NodeError) -> OperatorError {
        move |e| OperatorError::BadRegionAnswer(region.to_string(), e.to_string())
    }

    /// The operator's own request that a wire conversion refused.
    pub(crate) fn request(e: NodeError) -> OperatorError {
        match e {
            NodeError::BadRequest { field, message } => OperatorError::BadRequest { field, message },
            other => OperatorError::Internal(other.to_string()),
        }
    }
}

impl From<OperatorError> for Status {
    fn from(e: OperatorError) -> Status {
        crate::api::error::status(e.reason(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_reason_and_the_shared_code() {
        let all = [
            (OperatorError::Unsigned, Code::Unauthenticated),
            (OperatorError::BadSignature("611000".into()), Code::Unauthenticated),
            (OperatorError::NotAuthorised("x".into()), Code::PermissionDenied),
            (OperatorError::UnknownRegion("990000".into()), Code::PermissionDenied),
            (OperatorError::bad("month", "x"), Code::InvalidArgument),
            (OperatorError::NotClosed("2026-03".into()), Code::NotFound),
            (OperatorError::MonthNotOver("x".into()), Code::FailedPrecondition),
            (OperatorError::MonthFinal("x".into()), Code::FailedPrecondition),
            (OperatorError::MonthOutOfOrder("x".into()), Code::FailedPrecondition),
            (OperatorError::RegionUnreachable("611000".into()), Code::Unavailable),
            (OperatorError::RegionRefused("611000".into(), "x".into()), Code::FailedPrecondition),
            (OperatorError::BadRegionAnswer("611000".into(), "x".into()), Code::Internal),
            (OperatorError::Internal("x".into()), Code::Internal),
        ];
        let mut reasons = std::collections::HashSet::new();
        for (e, code) in all {
            let status: Status = e.clone().into();
            assert_eq!((status.code(), e.code()), (code, code), "{e:?}");
            assert_eq!(crate::api::error::reason_of(&status).as_deref(), Some(e.reason()));
            assert!(reasons.insert(e.reason()), "duplicate reason {}", e.reason());
        }
    }
}
