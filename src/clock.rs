//! Time comes in as an argument: the core never reads the clock.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The machine's clock, for real nodes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told, for tests and simulation.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(start_ms))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Another clock, `offset_ms` off (negative: behind). The simulation gives
/// nodes clocks behind the operator's, to commit late into sealed months.
pub struct OffsetClock {
    base: std::sync::Arc<dyn Clock>,
    offset_ms: i64,
}

impl OffsetClock {
    pub fn new(base: std::sync::Arc<dyn Clock>, offset_ms: i64) -> OffsetClock {
        OffsetClock { base, offset_ms }
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        self.base.now_ms().saturating_add(self.offset_ms)
    }
}
