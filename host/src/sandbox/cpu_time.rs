//! A call's CPU time, charged to its fuel.
//!
//! Fuel counts guest instructions, yet some of a call's work costs far
//! more CPU than its instructions: a host call (`log` with a 24 MiB line
//! makes wasmtime lift, validate and copy 24 MiB for a few instructions),
//! a bulk memory instruction (one `memory.fill` over 32 MiB), lifting and
//! lowering, the page faults of a fresh memory. Counted by instructions
//! alone, a plugin looping on such work burns a core until its deadline,
//! and again at every retry. So a call's fuel is charged at least
//! [`FUEL_PER_CPU_MICROSECOND`] for each microsecond of CPU time its
//! thread spent on it: measured over each poll of the call
//! ([`CallClock`], by the scheduler) with the thread's own CPU clock, so
//! that waiting (on I/O, for a turn, on a lock) and time the thread was
//! not running cost nothing. The charge is made at every epoch tick
//! ([`CpuCharge::charge`]); past the fuel left the call ends with
//! [`CpuTimeExceeded`], reported as the CPU limit.
//!
//! What runs between two ticks without a check in it (one host call, one
//! bulk memory instruction) cannot be interrupted; the memory limit bounds
//! how much one can touch, and it is charged at the next tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use tocsin_core::caps::FUEL_PER_CPU_MICROSECOND;
use wasmtime::StoreContextMut;

/// The error a call whose CPU time used up its fuel traps with; the
/// sandbox reports it as the CPU limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the plugin ran out of fuel: {cpu_us} µs of CPU time, charged at {FUEL_PER_CPU_MICROSECOND} fuel a µs"
)]
pub(crate) struct CpuTimeExceeded {
    /// The call's CPU time when it ran out, in microseconds.
    pub cpu_us: u64,
}

/// The current thread's CPU time, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    let nanos = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    u64::try_from(nanos).unwrap_or(0)
}

/// The CPU time of one call: the sum over the polls of its future, each
/// measured on the thread that ran it.
#[derive(Debug, Default)]
pub(crate) struct CallClock {
    /// Of the polls that ended.
    ended_ns: AtomicU64,
    /// The thread's CPU time when the current poll began; 0 between polls.
    poll_began_ns: AtomicU64,
}

impl CallClock {
    /// A poll of the call begins on this thread.
    pub(crate) fn poll_begins(&self) {
        self.poll_began_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    /// The poll that began on this thread ends; returns its CPU time, in
    /// nanoseconds.
    pub(crate) fn poll_ends(&self) -> u64 {
        let began = self.poll_began_ns.swap(0, Ordering::Relaxed);
        if began == 0 {
            return 0;
        }
        let took = thread_cpu_ns().saturating_sub(began);
        self.ended_ns.fetch_add(took, Ordering::Relaxed);
        took
    }

    /// The call's CPU time so far; from inside a poll (the epoch callback),
    /// the current poll's included.
    pub(crate) fn cpu_time(&self) -> Duration {
        let began = self.poll_began_ns.load(Ordering::Relaxed);
        let current = if began > 0 { thread_cpu_ns().saturating_sub(began) } else { 0 };
        Duration::from_nanos(self.ended_ns.load(Ordering::Relaxed).saturating_add(current))
    }
}

/// Charges a call's fuel for its CPU time; see the module docs.
#[derive(Debug)]
pub(crate) struct CpuCharge {
    clock: std::sync::Arc<CallClock>,
    fuel: u64,
}

impl CpuCharge {
    /// For a call given `fuel`, timed by `clock`.
    pub fn new(clock: std::sync::Arc<CallClock>, fuel: u64) -> Self {
        CpuCharge { clock, fuel }
    }

    /// The fuel the call has used: its instructions, or its CPU time's
    /// worth when that is more.
    pub fn used(&self, left: u64) -> u64 {
        self.fuel.saturating_sub(left).max(self.floor())
    }

    fn floor(&self) -> u64 {
        let micros = u64::try_from(self.clock.cpu_time().as_micros()).unwrap_or(u64::MAX);
        micros.saturating_mul(FUEL_PER_CPU_MICROSECOND)
    }

    /// Takes from the fuel left what the CPU time has used beyond the
    /// instructions.
    ///
    /// # Errors
    /// [`CpuTimeExceeded`] when that is more than is left.
    pub(crate) fn charge<T>(&self, mut store: StoreContextMut<'_, T>) -> wasmtime::Result<()> {
        let left = store.get_fuel()?;
        let beyond = self.floor().saturating_sub(self.fuel.saturating_sub(left));
        if beyond == 0 {
            return Ok(());
        }
        match left.checked_sub(beyond) {
            Some(left) => store.set_fuel(left),
            None => {
                store.set_fuel(0)?;
                let cpu_us = u64::try_from(self.clock.cpu_time().as_micros()).unwrap_or(u64::MAX);
                Err(wasmtime::Error::new(CpuTimeExceeded { cpu_us }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_polls_count_and_waiting_between_them_does_not() {
        let clock = CallClock::default();
        clock.poll_begins();
        // Until this thread has run 20 ms, not until 20 ms have passed: on a
        // busy machine it gets less CPU than wall time. Bounded all the same.
        let (spin, started) = (std::time::Instant::now(), thread_cpu_ns());
        while thread_cpu_ns() - started < 20_000_000 && spin.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(spin.elapsed());
        }
        clock.poll_ends();
        let after_spin = clock.cpu_time();
        assert!(after_spin >= Duration::from_millis(15), "{after_spin:?}");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(clock.cpu_time(), after_spin, "sleeping between polls costs nothing");
        clock.poll_begins();
        std::thread::sleep(Duration::from_millis(30));
        assert!(clock.cpu_time() < after_spin + Duration::from_millis(10), "nor sleeping in one");
    }
}
