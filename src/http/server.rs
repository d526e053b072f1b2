//! The connection loop and the per-request bounds (SECURITY.md "Connections and time").
//!
//! `axum::serve` sets no timer, so a client that sends its headers one byte a minute,
//! or opens thousands of idle connections, holds a task and a buffer for as long as it
//! likes. This loop serves HTTP/1.1 with hyper directly and bounds every resource a
//! client can hold: open connections (a semaphore; more wait in the listen backlog), the
//! time to send a request head (also the idle time of a keep-alive connection), the size
//! of a head, the time to be answered, body included (408), the time a blocked write
//! of the answer may wait for the client to read ([`WriteTimeout`]), the connections
//! one address may hold, and the requests handled at once (503 + `Retry-After` beyond). Each request carries its peer address
//! (`ConnectInfo`), from which [`client_ip`] derives the address throttles key on.

use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::AppState;
use crate::config::Config;
use crate::error::Error;

/// The largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `service` on `listener` until `shutdown` resolves, within `config.server`'s bounds.
pub async fn run<S>(
    listener: tokio::net::TcpListener,
    service: S,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let limits = config.server.clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p?,
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // One address may hold only so many connections (a trusted proxy carries many
        // clients and is exempt): past it the connection is closed at once.
        let address_slot = if config.is_trusted_proxy(remote.ip()) {
            None
        } else {
            match per_address.clone().take(throttle_key(remote.ip()), limits.max_connections_per_address) {
                Some(slot) => Some(slot),
                None => {
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteTimeout::new(stream, limits.request_timeout);
        let svc = service.clone();
        let hyper_service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(remote));
            svc.clone().oneshot(req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .max_buf_size(MAX_HEAD_BYTES);
        // At most 100 headers a request (more: 431), hyper's default. Not set with
        // `max_headers`: with an explicit bound hyper allocates and fills the header
        // slots on the heap for every request head instead of on the stack
        // (test `too_many_headers_are_refused`).
        let conn = builder.serve_connection(TokioIo::new(stream), hyper_service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(address_slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
    }
    Ok(())
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One connection's place in [`PerAddress`], given back on drop.
struct AddressSlot(Arc<PerAddress>, IpAddr);

impl PerAddress {
    fn take(self: Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        drop(open);
        Some(AddressSlot(self, ip))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// A connection whose writes must make progress, and which closes gracefully.
///
/// * A client that stops reading its answer (a large document, never read) would
///   otherwise hold the connection, and its slot, for ever: a write that stays blocked
///   for the whole timeout fails the connection.
/// * A refusal sent before the request body was read (413, 408) closes the connection
///   with the client still sending: closing at once would reset the connection and the
///   client would see a broken pipe instead of the answer. On shutdown the write side is
///   closed first, then what the client still sends is read and thrown away (at most
///   [`LINGER_BYTES`], for at most [`LINGER_TIME`]) before the socket is dropped, as
///   web servers' "lingering close" does.
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    linger: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, usize)>,
}

/// The most a closing connection reads and throws away.
pub const LINGER_BYTES: usize = 16 << 20;
/// The longest a closing connection waits for the client to stop sending.
pub const LINGER_TIME: Duration = Duration::from_secs(3);

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteTimeout { inner, timeout, stalled: None, linger: None }
    }

    /// Arms the timer when the write is blocked; disarms it on progress.
    fn watch<T>(&mut self, cx: &mut std::task::Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match res {
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading its answer",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, res)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, res)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            match std::pin::Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => this.linger = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), 0)),
                other => return other,
            }
        }
        let Some((deadline, drained)) = this.linger.as_mut() else { return Poll::Ready(Ok(())) };
        let mut scratch = [0u8; 8192];
        loop {
            if deadline.as_mut().poll(cx).is_ready() || *drained >= LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                // The client closed, or the connection failed: nothing left to wait for.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => *drained += buf.filled().len(),
            }
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The address a request is throttled as: the peer, or — when the peer is a trusted
/// proxy — the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(config: &Config, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !config.is_trusted_proxy(peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return Some(peer) };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A malformed chain cannot be trusted past this proxy.
                Err(_) => return Some(peer),
            }
        }
    }
    Some(hops.into_iter().rev().find(|ip| !config.is_trusted_proxy(*ip)).unwrap_or(peer))
}

/// The address a request is throttled as (see [`client_ip`]); None when the request
/// did not come through [`run`].
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The throttle key of a request: its client address, with IPv6 addresses cut to
    /// their /64 (one subscriber's allocation: a client must not get a fresh budget
    /// from each of its 2^64 addresses).
    pub fn of(config: &Config, extensions: &axum::http::Extensions, headers: &HeaderMap) -> Self {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        ClientIp(client_ip(config, peer, headers).map(throttle_key))
    }

    /// [`ClientIp::of`] a whole request (middleware, before extraction).
    pub fn of_request(config: &Config, req: &Request) -> Self {
        Self::of(config, req.extensions(), req.headers())
    }
}

/// IPv4 as is (IPv4-mapped IPv6 as IPv4); other IPv6 cut to its /64 prefix.
pub fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &AppState) -> Result<Self, Infallible> {
        Ok(ClientIp::of(&st.config, &parts.extensions, &parts.headers))
    }
}

/// Requests handled at once, process-wide.
#[derive(Clone, Debug)]
pub struct InFlight(pub Arc<Semaphore>);

/// Per-route middleware, applied with `Router::layer` so that it sees the matched
/// route: caps requests in flight (503 at once beyond), bounds each request's time,
/// body included (408), and times every routed request, these answers included, into
/// `http_server_request_duration_seconds` (labelled by its route template, never its
/// path), counting 429s. Probes are exempt from the cap so an overloaded but living
/// process still says so.
///
/// Written as a tower service rather than with `axum::middleware::from_fn`: axum calls
/// a route by cloning its whole service stack, and a `from_fn` layer clones its inner
/// stack again and boxes it once more on every request, so each layer applied per route
/// multiplied the clones and allocations of the layers under it (issue 17, item 4).
/// This one calls its inner route directly (an axum `Route` is always ready).
#[derive(Clone)]
pub struct RouteBoundsLayer(pub AppState);

impl<S> tower::Layer<S> for RouteBoundsLayer {
    type Service = RouteBounds<S>;

    fn layer(&self, inner: S) -> RouteBounds<S> {
        RouteBounds { inner, st: self.0.clone() }
    }
}

/// The service of [`RouteBoundsLayer`].
#[derive(Clone)]
pub struct RouteBounds<S> {
    inner: S,
    st: AppState,
}

impl<S> tower::Service<Request> for RouteBounds<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let began = std::time::Instant::now();
        let method = crate::metrics::method_label(req.method());
        let route = crate::metrics::RouteLabel::of(req.extensions().get::<axum::extract::MatchedPath>());
        let path = req.uri().path();
        let kaizala = path.starts_with("/kaizala");
        let permit = if path == "/healthz" || path == "/readyz" {
            Ok(None)
        } else {
            self.st.in_flight.0.clone().try_acquire_owned().map(Some)
        };
        let limit = if path.ends_with("~import") {
            self.st.config.server.import_timeout
        } else {
            self.st.config.server.request_timeout
        };
        // Busy: answered without calling the route.
        let inner = match permit {
            Ok(permit) => Some((self.inner.call(req), permit)),
            Err(_) => None,
        };
        Box::pin(async move {
            let response = match inner {
                None => dialect_error(kaizala, Error::Unavailable("Server is busy, retry shortly".into())),
                Some((fut, _permit)) => match tokio::time::timeout(limit, fut).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    // The body may be half-read: the 408 also closes the connection.
                    Err(_) => dialect_error(kaizala, Error::TimedOut),
                },
            };
            record_request(began, method, route, response.status().as_u16());
            Ok(response)
        })
    }
}

/// Records one answered request in the metrics.
fn record_request(began: std::time::Instant, method: &'static str, route: crate::metrics::RouteLabel, status: u16) {
    let metrics = crate::metrics::global();
    if status == 429 {
        metrics.rate_limited.inc();
    }
    let labels = crate::metrics::RequestLabels {
        http_request_method: method,
        http_route: route,
        http_response_status_code: status,
    };
    metrics.requests.get_or_create(&labels).observe(began.elapsed().as_secs_f64());
}

/// `e` rendered by the dialect that owns the request (Kaizala: a path under
/// `/kaizala`), with its body shape, `Retry-After`, `Connection: close`, for answers
/// given before a dialect's handler runs.
fn dialect_error(kaizala: bool, e: Error) -> Response {
    if kaizala {
        super::kaizala::KzError(e).into_response()
    } else {
        super::error::MsError(e).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(proxies: &str) -> Config {
        let mut c = Config::new("127.0.0.1:1".parse().unwrap(), None);
        c.trusted_proxies = crate::config::parse_trusted_proxies(proxies).unwrap();
        c
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_timeout() {
        use tokio::io::AsyncWriteExt;
        let (near, _far) = tokio::io::duplex(1024);
        let mut io = WriteTimeout::new(near, Duration::from_millis(200));
        let start = std::time::Instant::now();
        let err = io.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut io = WriteTimeout::new(near, Duration::from_millis(200));
        io.write_all(&[1u8; 16 * 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }

    #[tokio::test]
    async fn closing_reads_what_the_client_still_sends_then_lets_go() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut io = WriteTimeout::new(near, Duration::from_secs(5));
        io.write_all(b"HTTP/1.1 413 Payload Too Large\r\n\r\n").await.unwrap();
        // The client is still sending its body when the server closes.
        let client = tokio::spawn(async move {
            far.write_all(&vec![7u8; 1 << 20]).await.unwrap();
            let mut answer = Vec::new();
            far.read_to_end(&mut answer).await.unwrap();
            drop(far);
            answer
        });
        let start = std::time::Instant::now();
        io.shutdown().await.unwrap();
        assert!(start.elapsed() < LINGER_TIME, "the close waited for the deadline");
        assert!(client.await.unwrap().starts_with(b"HTTP/1.1 413"));
    }

    #[tokio::test]
    async fn closing_gives_up_on_a_client_that_keeps_sending() {
        use tokio::io::AsyncWriteExt;
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut io = WriteTimeout::new(near, Duration::from_secs(5));
        tokio::spawn(async move { while far.write_all(&[1u8; 8192]).await.is_ok() {} });
        let start = std::time::Instant::now();
        io.shutdown().await.unwrap();
        assert!(start.elapsed() <= LINGER_TIME + Duration::from_secs(2));
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let open = Arc::new(PerAddress::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = open.clone().take(ip, 2).unwrap();
        let _b = open.clone().take(ip, 2).unwrap();
        assert!(open.clone().take(ip, 2).is_none());
        assert!(open.clone().take("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(open.clone().take(ip, 2).is_some());
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64() {
        let a = throttle_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = throttle_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = throttle_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(throttle_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(throttle_key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let spoofed = xff("1.2.3.4");
        // An untrusted peer is throttled as itself, whatever it claims.
        assert_eq!(client_ip(&config(""), Some(peer), &spoofed), Some(peer.ip()));
        // Through a trusted proxy: the right-most address the proxies did not add.
        let c = config("10.0.0.0/24");
        assert_eq!(client_ip(&c, Some(peer), &spoofed), "1.2.3.4".parse().ok());
        assert_eq!(client_ip(&c, Some(peer), &xff("9.9.9.9, 1.2.3.4, 10.0.0.7")), "1.2.3.4".parse().ok());
        // A client cannot hide behind a forged left-most entry.
        assert_eq!(client_ip(&c, Some(peer), &xff("6.6.6.6, 1.2.3.4")), "1.2.3.4".parse().ok());
        assert_eq!(client_ip(&c, Some(peer), &xff("garbage")), Some(peer.ip()));
        assert_eq!(client_ip(&c, Some(peer), &HeaderMap::new()), Some(peer.ip()));
    }
}
