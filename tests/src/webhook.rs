//! A webhook receiver on 127.0.0.1 for tests: records each request exactly
//! as it arrived (header order and case kept) and answers as told, over
//! plain HTTP or TLS with a certificate made for the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Largest request the receiver reads.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, extra headers and body.
    Status(u16, Vec<(String, String)>, Vec<u8>),
    /// This status and body, sent with chunked encoding (no length).
    Chunked(u16, Vec<u8>),
    /// Accept the request and never answer.
    Hang,
    /// The n-th request gets the n-th reply; the last one repeats.
    Script(Vec<Reply>),
    /// This reply, after a pause.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// An empty-bodied answer with this status.
    pub fn status(status: u16) -> Reply {
        Reply::Status(status, Vec::new(), Vec::new())
    }

    /// The reply to request number `index` (0-based).
    fn nth(&self, index: usize) -> Reply {
        match self {
            Reply::Script(replies) => {
                replies.get(index).or(replies.last()).map_or(Reply::status(200), |reply| reply.nth(index))
            }
            other => other.clone(),
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When the whole request had arrived.
    pub at: std::time::Instant,
}

impl Received {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Webhook {
    /// `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
    /// Whether it speaks TLS.
    https: bool,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts a plain-HTTP receiver answering every request with `reply`,
    /// one request per connection.
    pub async fn start(reply: Reply) -> std::io::Result<Webhook> {
        Self::listen(reply, None, false).await
    }

    /// Like [`Webhook::start`], keeping connections open for further
    /// requests (HTTP/1.1 keep-alive) while the replies are statuses.
    /// Requests must carry `content-length` (reqwest's do); a chunked body
    /// is not read.
    pub async fn start_keep_alive(reply: Reply) -> std::io::Result<Webhook> {
        Self::listen(reply, None, true).await
    }

    /// Starts an HTTPS receiver with `config` (see
    /// [`crate::tls::TestCa::server_config`]).
    pub async fn start_tls(reply: Reply, config: ServerConfig) -> std::io::Result<Webhook> {
        Self::listen(reply, Some(TlsAcceptor::from(Arc::new(config))), false).await
    }

    async fn listen(reply: Reply, tls: Option<TlsAcceptor>, keep_alive: bool) -> std::io::Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let https = tls.is_some();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, accepted) = (Arc::clone(&received), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (reply, log, tls) = (reply.clone(), Arc::clone(&log), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, reply, log, keep_alive).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, reply, log, keep_alive).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Webhook { addr, https, received, connections, task })
    }

    /// `http://127.0.0.1:port{path}`, or `https://` for a TLS receiver.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    reply: Reply,
    log: Arc<Mutex<Vec<Received>>>,
    keep_alive: bool,
) {
    let mut buffer = Vec::new();
    // Bounded: each request is at most MAX_REQUEST_BYTES and must arrive
    // within 10 s; a kept-alive connection ends after 10 s without one.
    while let Some(request) = next_request(&mut stream, &mut buffer).await {
        if !answer(&mut stream, request, &reply, &log, keep_alive).await {
            return;
        }
    }
}

/// Reads the next complete request off `stream`, keeping what follows it
/// in `buffer`; `None` at the end of the stream, on a timeout, or past
/// the size cap.
async fn next_request<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<Received> {
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((request, used)) = parse_one(buffer) {
            buffer.drain(..used);
            return Some(request);
        }
        if buffer.len() > MAX_REQUEST_BYTES {
            return None;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Records `request` and sends its reply; whether the connection stays
/// open for another request.
async fn answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: Received,
    reply: &Reply,
    log: &Mutex<Vec<Received>>,
    keep_alive: bool,
) -> bool {
    let index = match log.lock() {
        Ok(mut log) => {
            log.push(request);
            log.len() - 1
        }
        Err(_) => 0,
    };
    let mut reply = reply.nth(index);
    while let Reply::Delayed(pause, inner) = reply {
        tokio::time::sleep(pause).await;
        reply = *inner;
    }
    match reply {
        Reply::Script(_) | Reply::Delayed(..) => {}
        Reply::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
        Reply::Status(status, headers, body) => {
            let connection = if keep_alive { "keep-alive" } else { "close" };
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: {connection}\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            if keep_alive {
                return stream.flush().await.is_ok();
            }
            let _ = stream.shutdown().await;
        }
        Reply::Chunked(status, body) => {
            let head =
                format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            for chunk in body.chunks(64 << 10) {
                let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
                let _ = stream.write_all(chunk).await;
                let _ = stream.write_all(b"\r\n").await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }
    }
    false
}

/// A complete request in `buffer` (its body as long as `content-length`
/// says), if there is one: what a sink received, or a captured raw request.
pub fn parse(buffer: &[u8]) -> Option<Received> {
    parse_one(buffer).map(|(request, _)| request)
}

/// The first complete request in `buffer` and the bytes it took.
fn parse_one(buffer: &[u8]) -> Option<(Received, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buffer).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let body = buffer.get(head_len..head_len + length)?.to_vec();
    let received = Received {
        method: request.method?.to_owned(),
        target: request.path?.to_owned(),
        headers,
        body,
        at: std::time::Instant::now(),
    };
    Some((received, head_len + length))
}
