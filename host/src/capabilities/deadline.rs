//! The `deadline` capability: how long the call has left, so that a plugin
//! can fit its own timeouts inside it.

use std::time::Instant;

use tocsin_core::bindings::tocsin::notifier::deadline::{self as contract, Host};
use tocsin_core::time::millis;
use wasmtime::component::{HasData, Linker};

use super::CallReport;

/// The interface of `tocsin:notifier` this capability serves.
pub const INTERFACE: &str = "deadline";

/// The deadline of one call.
#[derive(Debug)]
pub struct CallDeadline {
    deadline: Instant,
}

impl CallDeadline {
    /// The state of a call that must end by `deadline`.
    pub fn new(deadline: Instant) -> Self {
        CallDeadline { deadline }
    }

    /// Ends the call: nothing to report.
    pub(crate) fn finish(&mut self, _report: &mut CallReport) {}
}

impl Host for CallDeadline {
    fn remaining_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(millis(self.deadline.saturating_duration_since(Instant::now())))
    }
}

/// Links `deadline` into `linker`, with each call's state found by `state`.
///
/// # Errors
/// Only if it is linked twice: a bug.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut CallDeadline,
) -> wasmtime::Result<()> {
    struct Data;
    impl HasData for Data {
        type Data<'a> = &'a mut CallDeadline;
    }
    contract::add_to_linker::<T, Data>(linker, state)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_time_left_counts_down_to_zero() {
        let mut later = CallDeadline::new(Instant::now() + Duration::from_secs(60));
        let left = later.remaining_ms().unwrap();
        assert!((59_000..=60_000).contains(&left), "{left}");
        let mut passed = CallDeadline::new(Instant::now());
        assert_eq!(passed.remaining_ms().unwrap(), 0);
    }
}
