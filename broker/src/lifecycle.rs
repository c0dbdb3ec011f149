//! Where the broker is in its life (recovering, ready, shutting down), shared between
//! start-up and shutdown, which move it on, and the readiness probe, which reports it.
//!
//! A handle of its own so that the HTTP API can read the phase without reaching into
//! the broker that sets it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where a broker is in its life; the readiness probe reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Partition logs are being opened and recovered.
    Recovering = 0,
    /// Storage recovered, metadata loaded, every listener bound and serving.
    Ready = 1,
    /// Graceful shutdown has begun.
    ShuttingDown = 2,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Recovering,
            1 => Self::Ready,
            _ => Self::ShuttingDown,
        }
    }

    /// Why a broker in this phase is not ready, for the readiness probe.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Recovering => "recovering partition logs",
            Self::Ready => "ready",
            Self::ShuttingDown => "shutting down",
        }
    }
}

/// The broker's current [`Phase`]; clones share it.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// A [`Phase`] as its `u8`.
    phase: Arc<AtomicU8>,
}

impl Lifecycle {
    /// A broker that has begun to recover its storage.
    pub fn recovering() -> Self {
        Self {
            phase: Arc::new(AtomicU8::new(Phase::Recovering as u8)),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Storage recovered, metadata loaded and every listener bound and serving.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase set through one handle is what every clone reads.
    #[test]
    fn clones_share_the_phase() {
        let lifecycle = Lifecycle::recovering();
        let probe = lifecycle.clone();
        assert_eq!(probe.phase(), Phase::Recovering);
        assert!(!probe.is_ready());
        lifecycle.set(Phase::Ready);
        assert!(probe.is_ready());
        lifecycle.set(Phase::ShuttingDown);
        assert_eq!(probe.phase(), Phase::ShuttingDown);
        assert_eq!(probe.phase().describe(), "shutting down");
    }
}
