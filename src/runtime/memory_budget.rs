//! `[delivery] max_memory`: when a batch leaves the process's memory (see [`crate::memory`])
//! over it, freed pages go back to the system and, if that is not enough, the pipeline
//! checkpoints, which releases what open files and dead letters hold. When a checkpoint made
//! for memory releases too little (what holds it is window state, or weir's own constant
//! part), another would not help either: weir says what holds the memory and forces no more
//! checkpoints until it is back under.

use crate::memory::Memory;

pub(super) struct MemoryBudget {
    max: usize,
    memory: Option<Memory>,
    /// A checkpoint made for memory left less than an eighth of the budget free; cleared once
    /// memory is under three quarters of it.
    held: bool,
}

/// Why the pipeline checkpoints early because of memory.
pub(super) const OVER_MAX_MEMORY: &str = "memory over max_memory";

impl MemoryBudget {
    pub(super) fn new(max: usize) -> Self {
        let memory = Memory::new();
        if memory.is_none() {
            tracing::warn!("the system does not tell resident memory: max_memory is not enforced");
        }
        Self {
            max,
            memory,
            held: false,
        }
    }

    /// The memory held now, if the system tells it.
    pub(super) fn resident(&self) -> Option<usize> {
        self.memory.as_ref().and_then(Memory::resident)
    }

    /// After every checkpoint: what it freed goes back to the system.
    pub(super) fn release_freed(&self) {
        if let Some(memory) = &self.memory {
            memory.release_freed();
        }
    }

    /// Whether memory is over the budget, after freed pages went back, and a checkpoint may
    /// bring it under. `resident`: the memory held after the last batch.
    pub(super) fn checkpoint_due(&mut self, resident: usize) -> bool {
        let resident = if resident >= self.max {
            self.release_freed();
            self.resident().unwrap_or(resident)
        } else {
            resident
        };
        self.over(resident)
    }

    fn over(&mut self, resident: usize) -> bool {
        if self.held && resident < self.max - self.max / 4 {
            self.held = false;
        }
        resident >= self.max && !self.held
    }

    /// After a checkpoint made because [`MemoryBudget::checkpoint_due`] said so.
    /// `window_state`: the bytes open windows hold, which a checkpoint does not release.
    pub(super) fn checkpointed(&mut self, window_state: usize) {
        let Some(resident) = self.resident() else {
            return;
        };
        if resident >= self.max - self.max / 8 {
            self.held = true;
            tracing::warn!(
                memory_bytes = resident,
                max_memory = self.max,
                window_state_bytes = window_state,
                "memory stays near max_memory after a checkpoint: what holds it is not \
                 released by checkpoints (open windows hold window_state_bytes). No more \
                 early checkpoints until it falls under three quarters of max_memory; raise \
                 max_memory, or shorten windows / spread partitions over more instances"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_a_checkpoint_cannot_meet_stops_forcing_checkpoints_until_memory_falls() {
        let mut budget = MemoryBudget {
            max: 1000,
            memory: None,
            held: false,
        };
        assert!(!budget.over(999));
        assert!(budget.over(1000));
        budget.held = true;
        assert!(!budget.over(1200), "held: no checkpoint");
        assert!(!budget.over(800), "at or over three quarters");
        assert!(budget.held);
        assert!(!budget.over(700));
        assert!(!budget.held, "released under three quarters");
        assert!(budget.over(1100));
    }
}
