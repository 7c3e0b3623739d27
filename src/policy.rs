//! The policy stage: Rego policies evaluated with regorus for every message.
//!
//! A [`PolicySet`] is compiled once and swapped whole in a [`PolicyStore`]; a request
//! reads the current set once, so a reload never mixes two sets in one decision.

pub mod cache;
pub mod decision_log;
pub mod engine;
pub mod filter;
pub mod input;
pub mod layer;
pub mod reads;
pub mod reload;
pub mod testing;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

pub use engine::{PolicyError, PolicySet};
pub use filter::{AnswerFilterStage, AnswerOptions};
pub use layer::{PolicyOptions, PolicyStage};

/// The current policy set, shared by every request and the reloader.
#[derive(Default)]
pub struct PolicyStore {
    current: ArcSwapOption<PolicySet>,
}

impl PolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set to decide with; `None` means nothing loaded (not ready, deny all).
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.current.load_full()
    }

    pub fn replace(&self, set: PolicySet) {
        self.current.store(Some(Arc::new(set)));
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }
}
