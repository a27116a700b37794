//! Why a settlement is refused: a closed set with stable reason codes.

/// A refusal the hospital can act on (the patient then claims by hand at home).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("a registration (备案) for the treatment area is required for this care")]
    RegistrationRequired,
    #[error("the registration does not cover the treatment region")]
    RegistrationTargetMismatch,
    #[error("the registration is not in force on the settlement date")]
    RegistrationNotInForce,
    #[error("no benefit policy of the home region is in force on the settlement date")]
    PolicyNotInForce,
    #[error("no catalogue is in force for the treatment region on the settlement date")]
    CatalogueNotInForce,
    #[error(
        "the person holds no qualification in force for this chronic disease, or the home policy does not list it"
    )]
    ChronicNotQualified,
}

impl Refusal {
    /// Stable machine-readable reason.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::RegistrationRequired => "registration_required",
            Refusal::RegistrationTargetMismatch => "registration_target_mismatch",
            Refusal::RegistrationNotInForce => "registration_not_in_force",
            Refusal::PolicyNotInForce => "policy_not_in_force",
            Refusal::CatalogueNotInForce => "catalogue_not_in_force",
            Refusal::ChronicNotQualified => "chronic_not_qualified",
        }
    }
}
