//! The HTTP receiver both notifiers deliver to: on 127.0.0.1, HTTP/1.1
//! with keep-alive, notes when each alarm arrived and answers 200, at once
//! or after a set pause (the slow endpoint).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use tokio::net::TcpListener;

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
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Starts a sink that records arrivals in `timeline` and answers after
    /// `pause`.
    ///
    /// # Errors
    /// No loopback port to bind.
    pub async fn start(timeline: Arc<Timeline>, pause: Duration) -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/alarm", listener.local_addr()?);
        let app = Router::new().fallback(receive).with_state(Arc::new(Receiver { timeline, pause }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink { url, task })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
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
