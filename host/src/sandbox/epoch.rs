//! The epoch ticker: one thread that advances the engine's epoch every
//! [`TICK`] while calls run, so that running guest code yields to the
//! async runtime about once a millisecond (each store yields when the
//! epoch moves, see `Sandbox::invoke`), whatever it does: a tight loop,
//! or a loop of cheap calls that make the host copy large buffers.
//!
//! Idle for [`IDLE_GRACE`], the thread parks: a service with no calls in
//! flight does not wake a thousand times a second, and one whose calls
//! come one after another does not pay a wake-up of the thread per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances while calls run.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How long the parked thread sleeps before checking that it is still
/// wanted, should a wake-up be missed.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long the thread goes on ticking with no call running before it
/// parks.
const IDLE_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Shared {
    running: AtomicUsize,
    /// Set by the thread before it parks: only then does a call wake it.
    parked: AtomicBool,
    stop: AtomicBool,
}

/// The ticker thread of one engine; stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread for `engine`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let engine = engine.weak();
        let ticking = Arc::clone(&shared);
        let thread = thread::Builder::new().name("tocsin-epoch".into()).spawn(move || {
            let mut idle = Duration::ZERO;
            while !ticking.stop.load(Ordering::Acquire) {
                if ticking.running.load(Ordering::Acquire) > 0 {
                    idle = Duration::ZERO;
                } else if idle >= IDLE_GRACE {
                    // Sequentially consistent with `running`: a call that
                    // began after the store sees `parked` and wakes it; one
                    // that began before is seen here.
                    ticking.parked.store(true, Ordering::SeqCst);
                    if ticking.running.load(Ordering::SeqCst) == 0 {
                        thread::park_timeout(IDLE_CHECK);
                    }
                    ticking.parked.store(false, Ordering::SeqCst);
                    continue;
                } else {
                    idle += TICK;
                }
                thread::sleep(TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
        Ok(EpochTicker { shared, thread: Some(thread) })
    }

    /// Marks a call as running until the guard is dropped: the epoch
    /// advances while any is.
    pub fn running(&self) -> Running<'_> {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst)
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
        Running(self)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The loop ends within one tick; a panic in it has nothing left
            // to report.
            thread.join().unwrap_or(());
        }
    }
}

/// A running call, for [`EpochTicker::running`].
#[derive(Debug)]
pub(crate) struct Running<'a>(&'a EpochTicker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}
