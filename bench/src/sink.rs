//! The HTTP receiver the notifiers deliver to: on 127.0.0.1, HTTP/1.1
//! with keep-alive, notes when each alarm arrived (its id in the body or
//! the path) and answers 200, at once or after a set pause (the slow
//! endpoint).
//!
//! Each sink runs on a thread of its own with a single-threaded runtime:
//! it shares the machine's cores with the notifier under test and the
//! broker, and one thread taking every ready connection in turn wakes far
//! less often than a pool of workers handing requests to each other. It
//! serves with hyper's own HTTP/1.1 connection and a plain function, no
//! router or extractors: what it costs is charged to neither notifier but
//! is taken from the cores the faster one needs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
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
        let receiver = Arc::new(Receiver { timeline, pause });
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
                    () = accept(listener, receiver) => {}
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

/// Serves each connection `listener` accepts on a task of its own.
async fn accept(listener: TcpListener, receiver: Arc<Receiver>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors, say: the connection waits in the
            // listen backlog, and is taken once one is free again.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // The response is one write; no reason to hold it for an ACK.
        let _ = stream.set_nodelay(true);
        let receiver = Arc::clone(&receiver);
        let service = service_fn(move |request| receive(Arc::clone(&receiver), request));
        tokio::spawn(async move {
            // A notifier closing its connection ends it; nothing to report.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn receive(
    receiver: Arc<Receiver>,
    request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    // The alarm's id is in the body (Aodh's), or else in the path (a
    // plugin that fetches a URL made from it).
    let in_path = seq_in(request.uri().path().as_bytes());
    let body = request.into_body().collect().await?.to_bytes();
    if let Some(seq) = seq_in(&body).or(in_path) {
        receiver.timeline.arrived(seq);
    }
    if !receiver.pause.is_zero() {
        tokio::time::sleep(receiver.pause).await;
    }
    Ok(Response::new(Empty::new()))
}
