//! The HTTP receiver both notifiers deliver to: on 127.0.0.1, HTTP/1.1
//! with keep-alive, notes when each alarm arrived and answers 200, at once
//! or after a set pause (the slow endpoint).
//!
//! Each sink runs on a thread of its own with a single-threaded runtime:
//! it shares the machine's cores with the notifier under test and the
//! broker, and one thread taking every ready connection in turn wakes far
//! less often than a pool of workers handing requests to each other.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::load::{Timeline, seq_in};

#[derive(Debug)]
struct Receiver {
    timeline: Arc<Timeline>,
    pause: Duration,
}

/// A running sink; stops when dropped.
#[derive(Debug)]
pub struct Sink {
    /// `http://127.0.0.1:port/alarm`.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts a sink that records arrivals in `timeline` and answers after
    /// `pause`.
    ///
    /// # Errors
    /// No loopback port to bind, or no thread or runtime for the sink.
    pub fn start(timeline: Arc<Timeline>, pause: Duration) -> std::io::Result<Sink> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}/alarm", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let app = Router::new().fallback(receive).with_state(Arc::new(Receiver { timeline, pause }));
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new().name("sink".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        // The run then stalls without arrivals and says so.
                        eprintln!("    the sink cannot listen: {error}");
                        return;
                    }
                };
                // Stopping drops the runtime, and with it every connection.
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Sink { url, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    if let Some(seq) = seq_in(&body) {
        receiver.timeline.arrived(seq);
    }
    if !receiver.pause.is_zero() {
        tokio::time::sleep(receiver.pause).await;
    }
    StatusCode::OK
}
