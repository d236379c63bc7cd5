//! What enforces a call's limits inside wasmtime: the store limiter
//! (memory, tables, instances) and the deadline check of host calls, with
//! the errors they trap with so the sandbox can name the limit hit.

use tocsin_core::caps::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use tocsin_core::limits::Limits;
use wasmtime::ResourceLimiter;

/// The error a memory or table growth past the limit traps with; the
/// sandbox recognises it to report [`Limit::Memory`](tocsin_core::limits::Limit::Memory).
#[derive(Debug, thiserror::Error)]
#[error("{what} limit of {limit} exceeded (wanted {wanted} in all)")]
pub(crate) struct MemoryLimitExceeded {
    /// `linear memory bytes` or `table elements`.
    pub what: &'static str,
    /// The configured limit.
    pub limit: u64,
    /// The total the guest asked to grow to.
    pub wanted: u64,
}

/// The error a host call made past the call's deadline traps with: a guest
/// that keeps the host busy in synchronous host calls (which the async
/// timeout cannot interrupt) is stopped there. Reported as
/// [`Limit::Deadline`](tocsin_core::limits::Limit::Deadline).
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its deadline inside a host call")]
pub(crate) struct DeadlineExceeded;

/// Traps with [`DeadlineExceeded`] once `deadline` has passed.
///
/// # Errors
/// The trap, past the deadline.
pub(crate) fn check_deadline(deadline: std::time::Instant) -> wasmtime::Result<()> {
    if std::time::Instant::now() > deadline { Err(wasmtime::Error::new(DeadlineExceeded)) } else { Ok(()) }
}

/// A running total against a limit, for one kind of growable resource.
#[derive(Debug)]
struct Budget {
    what: &'static str,
    limit: u64,
    total: u64,
    /// The last growth approved, given back if wasmtime then fails it (a
    /// memory's own declared maximum is checked after the limiter).
    last: u64,
}

impl Budget {
    fn new(what: &'static str, limit: u64) -> Self {
        Budget { what, limit, total: 0, last: 0 }
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let wanted = self.total.saturating_add(growth);
        if wanted > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                what: self.what,
                limit: self.limit,
                wanted,
            }));
        }
        self.total = wanted;
        self.last = growth;
        Ok(true)
    }

    fn give_back(&mut self) {
        self.total -= std::mem::take(&mut self.last);
    }
}

/// Enforces [`Limits::memory_bytes`] over the sum of all linear memories
/// of the call (a component may hold several), and a table-element cap.
/// A refused growth traps (as wasmtime's `trap_on_grow_failure` does) with
/// a [`MemoryLimitExceeded`], so the hit is classified, not a bare trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    memory: Budget,
    tables: Budget,
}

impl MemoryLimiter {
    /// A limiter for one call.
    pub fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            memory: Budget::new("linear memory bytes", limits.memory_bytes),
            tables: Budget::new("table elements", MAX_TABLE_ELEMENTS),
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory.grow(current, desired)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.give_back();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.tables.grow(current, desired)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.tables.give_back();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_traps_with_a_typed_error() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 1 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let hit = error.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(hit.limit, 1 << 20);
    }

    #[test]
    fn the_memory_limit_covers_all_memories_of_the_call() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 3 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap(), "first memory");
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap(), "second memory");
        assert!(limiter.memory_growing(1 << 20, (1 << 20) + 1, None).is_err(), "one byte over in all");
        assert!(limiter.table_growing(0, 100_001, None).is_err());
    }

    #[test]
    fn a_growth_that_fails_later_is_given_back() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 2 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        limiter.memory_grow_failed(wasmtime::format_err!("past the declared maximum")).unwrap();
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap(), "the failed growth no longer counts");
    }
}
