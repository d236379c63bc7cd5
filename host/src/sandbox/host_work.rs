//! The host's work for a call, charged to the call's fuel.
//!
//! Fuel counts guest instructions, and a host call costs the guest a few.
//! Yet a host call can cost the host a lot: `log` with a 24 MiB line makes
//! wasmtime lift, validate and copy 24 MiB, `wasi:random` fills 64 KiB.
//! Uncharged, a plugin looping on such calls burns a core until its
//! deadline, and again at every retry. So every host call (capabilities,
//! WASI, libcalls) is charged [`FUEL_PER_HOST_MICROSECOND`] for the time
//! it held the thread: from entering the host to returning to the guest,
//! minus the time the call was suspended (waiting on I/O or for its turn,
//! see [`super::scheduler::PausedTime`]). Time, rather than bytes, so that
//! work no byte count predicts (a poll over a long list of handles) is
//! charged too. A charge past the remaining fuel ends the call with
//! [`HostWorkExceeded`], reported as the CPU limit.
//!
//! One host call stays uninterruptible, lift included; the memory limit
//! bounds what a single lift can copy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{CallHook, StoreContextMut};

use super::scheduler::PausedTime;

/// Fuel charged per microsecond of host work. A guest burns 1,000 to
/// 8,000 fuel in a microsecond of its own running (a tight loop: 7,500 on
/// the 2-core test machine); this rate sits in that range, so the default
/// fuel (200 M) allows about 100 ms of host work on top of the guest's.
/// A notification's host calls take tens of microseconds.
pub const FUEL_PER_HOST_MICROSECOND: u64 = 2_000;

/// The error a call whose host work used up its fuel traps with; the
/// sandbox reports it as the CPU limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin ran out of fuel, {charged_us} µs of host work for it charged")]
pub struct HostWorkExceeded {
    /// Host time charged to the call when it ran out, in microseconds.
    pub charged_us: u64,
}

/// Measures the host calls of one call; see the module docs.
#[derive(Debug)]
pub struct HostWorkMeter {
    paused: Arc<PausedTime>,
    /// Host calls entered and not returned: a lowering may run guest code
    /// (its allocator) that calls the host again; the outermost call is
    /// measured as a whole.
    depth: u32,
    entered: Instant,
    paused_at_entry: u64,
    charged: Duration,
}

impl HostWorkMeter {
    /// A meter for one call, subtracting the suspended time in `paused`.
    pub fn new(paused: Arc<PausedTime>) -> Self {
        HostWorkMeter {
            paused,
            depth: 0,
            entered: Instant::now(),
            paused_at_entry: 0,
            charged: Duration::ZERO,
        }
    }

    /// The call hook: times host calls and charges them on return.
    ///
    /// # Errors
    /// [`HostWorkExceeded`] when the charge exceeds the fuel left.
    pub fn hook<T>(&mut self, mut store: StoreContextMut<'_, T>, hook: CallHook) -> wasmtime::Result<()> {
        match hook {
            CallHook::CallingHost => {
                if self.depth == 0 {
                    self.entered = Instant::now();
                    self.paused_at_entry = self.paused.nanos();
                }
                self.depth += 1;
            }
            CallHook::ReturningFromHost => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    let paused =
                        Duration::from_nanos(self.paused.nanos().saturating_sub(self.paused_at_entry));
                    let worked = self.entered.elapsed().saturating_sub(paused);
                    self.charged += worked;
                    let nanos = u64::try_from(worked.as_nanos()).unwrap_or(u64::MAX);
                    let charge = nanos.saturating_mul(FUEL_PER_HOST_MICROSECOND) / 1_000;
                    match store.get_fuel()?.checked_sub(charge) {
                        Some(left) => store.set_fuel(left)?,
                        None => {
                            store.set_fuel(0)?;
                            let charged_us = u64::try_from(self.charged.as_micros()).unwrap_or(u64::MAX);
                            return Err(wasmtime::Error::new(HostWorkExceeded { charged_us }));
                        }
                    }
                }
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
        }
        Ok(())
    }
}
