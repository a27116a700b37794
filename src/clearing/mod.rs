//! Monthly clearing (清算), pure: settlement lines from both sides, pair
//! summaries with id commitments, reconciliation by id, national netting and
//! the corps–local bilateral channel, advance-fund checks, the statement, and
//! each institution's monthly statement with its holdback.

pub mod advance;
pub mod audit;
pub mod hospital;
pub mod lines;
pub mod month;
pub mod netting;
pub mod reconcile;
pub mod statement;

pub use lines::{Amounts, Channel, Line, Pair, PairSummary, RunningPair, TypeSplit};
pub use month::Month;
pub use reconcile::{reconcile, PendingItem, PendingReason, Reconciliation};
pub use statement::{close, ClosingInput, Dispute, Statement};
