//! The threads tenants' sandbox calls run on: a runtime of their own,
//! apart from the one that serves the API, the intake, the
//! acknowledgements and the platform's own plugins.
//!
//! A call gives its turn back about once a millisecond ([`super::epoch`]),
//! but not inside one host call: lifting a 24 MiB string a plugin logs
//! takes the host ~10 ms that nothing can interrupt, and a tenant can make
//! one such lift after another. On the service's own runtime that held its
//! worker threads, so `/healthz` and every other tenant's intake waited for
//! the lifts in flight. Here:
//! - there is one thread more than the tenant slots ([`super::scheduler`]),
//!   so a thread is free to start new calls and serve the calls' sockets
//!   and timers while every slot is in a turn;
//! - each thread looks at its sockets, timers and new calls after every task
//!   it polls (tokio's defaults are every 61 tasks and every few), since
//!   one task here may be a 10 ms turn;
//! - they are `sandbox.nice` nicer than the service, for an operator who
//!   wants the kernel to run the service's own threads first.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio_util::task::AbortOnDropHandle;

/// Why a call did not run to its end on the sandbox threads.
#[derive(Debug, thiserror::Error)]
#[error("the sandbox threads are shutting down")]
pub(crate) struct ShuttingDown;

/// The sandbox's runtime; shut down, without waiting, when dropped.
#[derive(Debug)]
pub(crate) struct CallThreads {
    runtime: Option<Runtime>,
}

impl CallThreads {
    /// Starts one thread more than `tenant_slots`, each `nicer` than the
    /// calling thread (the sum capped at 19).
    ///
    /// # Errors
    /// When the threads cannot be spawned.
    pub fn start(tenant_slots: usize, nicer: i32) -> std::io::Result<Self> {
        // Set once from the caller's value, not added to each thread's own:
        // a thread the runtime starts from one of its threads inherits that
        // thread's nice value.
        let nice = rustix::process::getpriority_process(None).unwrap_or(0).saturating_add(nicer).min(19);
        let runtime = Builder::new_multi_thread()
            .worker_threads(tenant_slots.max(1) + 1)
            .thread_name("tocsin-sandbox")
            .event_interval(1)
            .global_queue_interval(1)
            .on_thread_start(move || {
                if nicer == 0 {
                    return;
                }
                // On Linux the nice value is the calling thread's own.
                if let Err(error) = rustix::process::setpriority_process(None, nice) {
                    tracing::warn!(
                        nice, error = %error,
                        "sandbox: Cannot set the nice value of a sandbox thread; it runs at the process's."
                    );
                }
            })
            .enable_all()
            .build()?;
        Ok(CallThreads { runtime: Some(runtime) })
    }

    /// Runs `call` on the sandbox threads. Dropping the returned future
    /// cancels the call; a panic in it is resumed in the caller.
    ///
    /// # Errors
    /// [`ShuttingDown`] when the runtime stopped before the call ended.
    pub async fn run<F>(&self, call: F) -> Result<F::Output, ShuttingDown>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or(ShuttingDown)?;
        match AbortOnDropHandle::new(runtime.spawn(call)).await {
            Ok(output) => Ok(output),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_cancelled) => Err(ShuttingDown),
        }
    }
}

impl Drop for CallThreads {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context
        // forbids; calls still running end with their runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_on_threads_of_their_own_at_the_configured_nice_value() {
        let service = rustix::process::getpriority_process(None).unwrap();
        let threads = CallThreads::start(1, 7).unwrap();
        let here = std::thread::current().id();
        let (nice, blocking_nice, there) = threads
            .run(async {
                // A blocking thread (a DNS lookup's, say) started from a
                // sandbox thread.
                let blocking = tokio::task::spawn_blocking(|| rustix::process::getpriority_process(None));
                let blocking_nice = blocking.await.unwrap();
                (rustix::process::getpriority_process(None), blocking_nice, std::thread::current().id())
            })
            .await
            .unwrap();
        assert_eq!(nice.unwrap(), (service + 7).min(19), "7 nicer than the service");
        assert_eq!(blocking_nice.unwrap(), (service + 7).min(19), "not 7 nicer again");
        assert_ne!(there, here, "the call ran on a sandbox thread");
    }

    #[tokio::test]
    async fn a_dropped_call_is_cancelled_on_the_sandbox_threads() {
        let threads = CallThreads::start(1, 0).unwrap();
        let (started, started_rx) = tokio::sync::oneshot::channel();
        let (dropped, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let call = threads.run(async move {
            // Dropped with the task: the receiver then sees the channel closed.
            let _dropped = dropped;
            let _ = started.send(());
            std::future::pending::<()>().await;
        });
        tokio::select! {
            _ = call => panic!("a pending call ended"),
            _ = started_rx => {}
        }
        assert!(dropped_rx.await.is_err(), "the task was dropped, not left running");
    }
}
