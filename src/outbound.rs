//! Outbound HTTP (the SMS relay; later webhooks and Kaizala callbacks): one client
//! with timeouts, and the target check of contract §8 — private, loopback and
//! link-local addresses are refused unless `OPENSPOT_ALLOW_PRIVATE_TARGETS=true`, so a
//! spot admin cannot make the server reach the operator's internal network.
//!
//! The check is made where the connection is made: the client resolves host names
//! through [`VettedResolver`], which looks a name up once, refuses the answer if any
//! address is not public, and hands the client exactly the addresses it checked. A
//! name that answers a public address to a first lookup and `127.0.0.1` to a second
//! (DNS rebinding) therefore never reaches the second answer. IP-literal hosts, which
//! the client connects to without resolving, are checked before the request is sent.
//! Proxies from the environment are ignored: a proxy would resolve the target itself,
//! out of reach of the check.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What a [`Lookup`] returns: the addresses of a host name.
pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves a host name to addresses: the system resolver in production
/// ([`SystemLookup`]); tests substitute a scripted one (e.g. a rebinding name).
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: String) -> LookupFuture;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Looks `host` up once and checks every address: the vetted answer, or an error
/// naming the first address that is not public (unless `allow_private`).
async fn vetted_lookup(lookup: &dyn Lookup, host: &str, allow_private: bool) -> anyhow::Result<Vec<IpAddr>> {
    let addrs = lookup.lookup(host.to_string()).await.with_context(|| format!("cannot resolve '{host}'"))?;
    if addrs.is_empty() {
        bail!("cannot resolve '{host}': no address");
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|ip| !is_public(**ip)) {
            bail!("target '{host}' resolves to a private address ({bad}); refused");
        }
    }
    Ok(addrs)
}

/// The client's resolver: one lookup per connection, refused when any address is not
/// public, and exactly the checked addresses returned (the client connects to nothing
/// else).
pub struct VettedResolver {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl VettedResolver {
    pub fn new(lookup: Arc<dyn Lookup>, allow_private: bool) -> Self {
        VettedResolver { lookup, allow_private }
    }
}

impl reqwest::dns::Resolve for VettedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.lookup.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let ips = vetted_lookup(lookup.as_ref(), name.as_str(), allow_private).await.map_err(|e| {
                let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
                boxed
            })?;
            // Port 0: the client puts the URL's port in.
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("allow_private", &self.allow_private).finish_non_exhaustive()
    }
}

impl Outbound {
    /// A client resolving names with the system resolver.
    pub fn new(allow_private: bool, timeout: Duration) -> anyhow::Result<Self> {
        Self::with_lookup(allow_private, timeout, Arc::new(SystemLookup))
    }

    /// A client resolving names with `lookup` (tests script it).
    pub fn with_lookup(allow_private: bool, timeout: Duration, lookup: Arc<dyn Lookup>) -> anyhow::Result<Self> {
        let resolver = Arc::new(VettedResolver::new(lookup.clone(), allow_private));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .user_agent(concat!("openspot/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Outbound { client, lookup, allow_private })
    }

    /// Checks what can be checked without resolving: the scheme, and an IP-literal
    /// host (the client connects to it without asking the resolver). Returns the URL
    /// and, for a named host, the name.
    fn parse_target(&self, url: &str) -> anyhow::Result<(reqwest::Url, Option<String>)> {
        let parsed = reqwest::Url::parse(url).context("invalid URL")?; // never the URL itself: it may carry credentials
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("URL scheme must be http or https");
        }
        let host = parsed.host_str().context("URL has no host")?.to_string();
        // The URL parser has already normalised `2130706433` or `127.1` to dotted form.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => {
                if !self.allow_private && !is_public(ip) {
                    bail!("target '{host}' is a private address; refused");
                }
                Ok((parsed, None))
            }
            Err(_) => Ok((parsed, Some(host))),
        }
    }

    /// Refuses URLs that are not http(s) or that resolve to a non-public address (a
    /// check ahead of time, e.g. when a URL is registered; every request is checked
    /// again, on the addresses it connects to).
    pub async fn check_target(&self, url: &str) -> anyhow::Result<reqwest::Url> {
        let (parsed, name) = self.parse_target(url)?;
        if let (Some(host), false) = (name, self.allow_private) {
            vetted_lookup(self.lookup.as_ref(), &host, false).await?;
        }
        Ok(parsed)
    }

    /// POSTs JSON and returns the status code. The host name is resolved once, by the
    /// client's [`VettedResolver`], and only the addresses it vetted are connected to.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> anyhow::Result<u16> {
        let (url, _) = self.parse_target(url)?;
        let resp = self.client.post(url).json(body).send().await.map_err(request_failed)?;
        Ok(resp.status().as_u16())
    }

    /// POSTs `body` with `headers` (webhook deliveries). The target is vetted exactly as
    /// by [`Outbound::post_json`]; a redirect is an answer like any other (never
    /// followed); at most [`RESPONSE_READ_CAP`] bytes of the answer are read, then the
    /// connection is dropped, and the first [`RESPONSE_KEEP`] are returned. Errors
    /// never contain the URL.
    pub async fn post_bytes(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let (url, _) = self.parse_target(url)?;
        let started = Instant::now();
        let mut req = self.client.post(url).body(body);
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let resp = req.send().await.map_err(request_failed)?;
        Ok(read_reply(resp, started, RESPONSE_KEEP).await)
    }

    /// GETs `url` within `timeout` (shorter than the client's, e.g. a callback
    /// validation), vetted and bounded like [`Outbound::post_bytes`]; keeps the first
    /// [`GET_KEEP`] bytes of the answer.
    pub async fn get_text(&self, url: &str, timeout: Duration) -> anyhow::Result<Reply> {
        let (url, _) = self.parse_target(url)?;
        let started = Instant::now();
        let resp = self.client.get(url).timeout(timeout).send().await.map_err(request_failed)?;
        Ok(read_reply(resp, started, GET_KEEP).await)
    }
}

/// Bytes of an answer read at most; the connection is dropped after them.
pub const RESPONSE_READ_CAP: usize = 64 * 1024;
/// Bytes of a delivery's answer kept (for the delivery log).
pub const RESPONSE_KEEP: usize = 1024;
/// Bytes of a [`Outbound::get_text`] answer kept.
pub const GET_KEEP: usize = 4 * 1024;

/// An answer: its status, the start of its body (lossy UTF-8) and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body_prefix: String,
    pub elapsed: Duration,
}

/// Reads at most [`RESPONSE_READ_CAP`] bytes of `resp`, keeping the first `keep`. A
/// body that fails or times out midway still leaves the status that arrived.
async fn read_reply(mut resp: reqwest::Response, started: Instant, keep: usize) -> Reply {
    let status = resp.status().as_u16();
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < RESPONSE_READ_CAP {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Reply { status, body_prefix: String::from_utf8_lossy(&kept).into_owned(), elapsed: started.elapsed() }
}

/// A request error in words, without the URL (its path or query may carry a credential
/// of the target); the resolver's refusal, which sits in the error's sources, included.
fn request_failed(e: reqwest::Error) -> anyhow::Error {
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    anyhow::anyhow!("request failed: {reason}")
}

/// Whether `ip` lies in `base/len`.
fn in_v6(ip: Ipv6Addr, base: Ipv6Addr, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    (u128::from(ip) & mask) == (u128::from(base) & mask)
}

fn in_v4(ip: Ipv4Addr, base: Ipv4Addr, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from(base) & mask)
}

/// IPv4 ranges that are not globally reachable unicast (IANA special-purpose registry).
const V4_NOT_PUBLIC: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and the broadcast address
];

/// IPv6 ranges inside global unicast (2000::/3) that are not a plain reachable host.
const V6_NOT_PUBLIC: &[(Ipv6Addr, u32)] = &[
    // IETF protocol assignments, Teredo (2001::/32, which tunnels to an IPv4 address
    // embedded in it), ORCHID and benchmarking (2001:2::/48) included.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),     // 6to4 (embeds an IPv4 address)
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),     // documentation (RFC 9637)
];

/// True for globally routable unicast addresses. IPv6 is public only inside global
/// unicast 2000::/3, which leaves out loopback, unspecified, IPv4-compatible (::/96),
/// NAT64 (64:ff9b::/96, 64:ff9b:1::/48), discard (100::/64), unique-local, link- and
/// site-local and multicast; IPv4-mapped addresses (::ffff:a.b.c.d) are judged by
/// their IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_NOT_PUBLIC.iter().any(|(base, len)| in_v4(v4, *base, *len)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
                && !V6_NOT_PUBLIC.iter().any(|(base, len)| in_v6(v6, *base, *len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn public(ip: &str) -> bool {
        is_public(ip.parse().expect("ip"))
    }

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!public(ip), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "2a00:1450:4007:80e::200e", "::ffff:8.8.8.8"] {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn special_purpose_ranges_are_not_public() {
        for (range, inside) in [
            ("NAT64 64:ff9b::/96", "64:ff9b::7f00:1"),
            ("NAT64 64:ff9b::/96 (public v4 inside)", "64:ff9b::808:808"),
            ("local NAT64 64:ff9b:1::/48", "64:ff9b:1::a00:1"),
            ("6to4 2002::/16", "2002:7f00:1::1"),
            ("6to4 2002::/16 (public v4 inside)", "2002:808:808::1"),
            ("IPv4-compatible ::/96", "::127.0.0.1"),
            ("IPv4-compatible ::/96 (public v4 inside)", "::8.8.8.8"),
            ("Teredo 2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("IETF 2001::/23", "2001:2::1"),
            ("documentation 2001:db8::/32", "2001:db8::1"),
            ("documentation 3fff::/20", "3fff::1"),
            ("discard 100::/64", "100::1"),
            ("site-local fec0::/10", "fec0::1"),
            ("multicast ff00::/8", "ff02::1"),
            ("unspecified ::", "::"),
            ("IPv4-mapped private", "::ffff:10.0.0.1"),
            ("IPv4-mapped metadata", "::ffff:169.254.169.254"),
            ("benchmarking 198.18.0.0/15", "198.18.0.1"),
            ("benchmarking 198.18.0.0/15 (top)", "198.19.255.254"),
            ("reserved 240.0.0.0/4", "240.0.0.1"),
            ("reserved 240.0.0.0/4 (top)", "254.255.255.254"),
            ("broadcast", "255.255.255.255"),
            ("IETF 192.0.0.0/24", "192.0.0.8"),
            ("documentation 192.0.2.0/24", "192.0.2.1"),
            ("6to4 relay 192.88.99.0/24", "192.88.99.1"),
            ("multicast 224.0.0.0/4", "239.1.1.1"),
            ("this network 0.0.0.0/8", "0.1.2.3"),
        ] {
            assert!(!public(inside), "{range}: {inside}");
        }
        // Next to the ranges, still public.
        for ip in ["198.17.255.255", "198.20.0.1", "239.255.255.255", "223.255.255.254", "192.0.1.1", "2003::1"] {
            assert_eq!(public(ip), ip != "239.255.255.255", "{ip}");
        }
    }

    #[tokio::test]
    async fn errors_never_repeat_the_url() {
        let lax = Outbound::new(true, Duration::from_secs(2)).expect("client");
        // Port 1 on loopback: nothing listens, the connection is refused.
        let err = lax.post_json("http://user:pw-secret@127.0.0.1:1/sms?apikey=q-secret", &serde_json::json!({})).await;
        let text = format!("{:#}", err.expect_err("nothing listens there"));
        assert!(!text.contains("secret"), "{text}");
        let err = lax.post_json("http://user:pw-secret@[::1/sms?apikey=q-secret", &serde_json::json!({})).await;
        let text = format!("{:#}", err.expect_err("not a URL"));
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_unless_allowed() {
        let strict = Outbound::new(false, Duration::from_secs(1)).expect("client");
        assert!(strict.check_target("http://127.0.0.1:9/x").await.is_err());
        assert!(strict.check_target("http://2130706433:9/x").await.is_err(), "decimal IPv4 form");
        assert!(strict.check_target("http://[::ffff:127.0.0.1]:9/x").await.is_err());
        assert!(strict.check_target("ftp://example.com/").await.is_err());
        let lax = Outbound::new(true, Duration::from_secs(1)).expect("client");
        assert!(lax.check_target("http://127.0.0.1:9/x").await.is_ok());
    }

    /// A name that answers a public address first and loopback afterwards.
    struct Rebinding {
        calls: AtomicUsize,
        answers: Vec<IpAddr>,
    }

    impl Rebinding {
        fn new(answers: &[&str]) -> Arc<Rebinding> {
            Arc::new(Rebinding {
                calls: AtomicUsize::new(0),
                answers: answers.iter().map(|a| a.parse().expect("ip")).collect(),
            })
        }
    }

    impl Lookup for Rebinding {
        fn lookup(&self, _host: String) -> LookupFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let ip = self.answers[n.min(self.answers.len() - 1)];
            Box::pin(async move { Ok(vec![ip]) })
        }
    }

    #[tokio::test]
    async fn the_resolver_returns_exactly_the_vetted_answer() {
        use reqwest::dns::Resolve;
        let lookup = Rebinding::new(&["93.184.216.34", "127.0.0.1"]);
        let resolver = VettedResolver::new(lookup.clone(), false);
        let name: reqwest::dns::Name = "rebind.example".parse().expect("name");
        let addrs: Vec<SocketAddr> = resolver.resolve(name).await.expect("public answer").collect();
        assert_eq!(addrs, vec!["93.184.216.34:0".parse::<SocketAddr>().expect("addr")]);
        // The second answer (loopback) is refused, never returned.
        let name: reqwest::dns::Name = "rebind.example".parse().expect("name");
        let err = resolver.resolve(name).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("private address (127.0.0.1)"), "{err}");
        // A mixed answer is refused whole.
        let mixed = Arc::new(Mixed);
        let resolver = VettedResolver::new(mixed, false);
        let name: reqwest::dns::Name = "mixed.example".parse().expect("name");
        assert!(resolver.resolve(name).await.is_err());
    }

    struct Mixed;

    impl Lookup for Mixed {
        fn lookup(&self, _host: String) -> LookupFuture {
            Box::pin(async { Ok(vec!["8.8.8.8".parse().expect("ip"), "10.0.0.1".parse().expect("ip")]) })
        }
    }

    /// A loopback listener that counts the connections it accepts.
    async fn listener() -> (u16, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                counter.fetch_add(1, Ordering::SeqCst);
                // Read the whole request (small: headers and `{}`) before answering.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !String::from_utf8_lossy(&buf).contains("\r\n\r\n{}") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn a_rebinding_name_never_reaches_loopback() {
        let (port, hits) = listener().await;
        // `localhost` really is loopback, so a client that resolved the name again by
        // itself after the check would reach the listener.
        let lookup = Rebinding::new(&["192.0.0.1", "127.0.0.1"]);
        let out = Outbound::with_lookup(false, Duration::from_secs(2), lookup.clone()).expect("client");
        let url = format!("http://localhost:{port}/hook");
        let err = out.post_json(&url, &serde_json::json!({})).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("private address (192.0.0.1)"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);

        // Public first, loopback second: the one lookup made is the public answer, and
        // the connection goes there (and fails), never to the listener.
        let lookup = Rebinding::new(&["93.184.216.34", "127.0.0.1"]);
        let out = Outbound::with_lookup(false, Duration::from_secs(2), lookup.clone()).expect("client");
        let sent = out.post_json(&url, &serde_json::json!({})).await;
        assert!(!matches!(sent, Ok(204)), "{sent:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the loopback listener was reached");
        assert_eq!(lookup.calls.load(Ordering::SeqCst), 1, "one lookup per request");

        // With private targets allowed, the same client path does reach it.
        let lookup = Rebinding::new(&["127.0.0.1"]);
        let out = Outbound::with_lookup(true, Duration::from_secs(2), lookup).expect("client");
        let sent = out.post_json(&url, &serde_json::json!({})).await;
        assert_eq!(sent.as_ref().ok(), Some(&204), "{sent:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn ip_literal_targets_are_checked_before_sending() {
        let (port, hits) = listener().await;
        let out = Outbound::new(false, Duration::from_secs(2)).expect("client");
        for host in ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "2130706433", "127.1"] {
            let url = format!("http://{host}:{port}/hook");
            let err =
                out.post_json(&url, &serde_json::json!({})).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("private address"), "{host}: {err}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    /// A loopback server answering every connection with `answer` after reading the
    /// request (head and `content-length` body), which it keeps.
    async fn answering(answer: Vec<u8>) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if let Ok(mut r) = requests.lock() {
                    r.push(String::from_utf8_lossy(&buf).into_owned());
                }
                let _ = s.write_all(&answer).await;
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn post_bytes_sends_the_headers_and_keeps_the_start_of_the_answer() {
        let (port, seen) =
            answering(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nbusy!".to_vec()).await;
        let out = Outbound::new(true, Duration::from_secs(2)).expect("client");
        let reply = out
            .post_bytes(
                &format!("http://127.0.0.1:{port}/hook"),
                &[("webhook-id", "msg_1".into())],
                b"{\"a\":1}".to_vec(),
            )
            .await
            .expect("answered");
        assert_eq!((reply.status, reply.body_prefix.as_str()), (503, "busy!"));
        let req = seen.lock().expect("lock")[0].clone();
        assert!(req.starts_with("POST /hook HTTP/1.1"), "{req}");
        assert!(req.contains("webhook-id: msg_1") && req.ends_with("{\"a\":1}"), "{req}");
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_and_is_not_followed() {
        let (elsewhere, hits) = listener().await;
        let answer =
            format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{elsewhere}/next\r\ncontent-length: 0\r\n\r\n");
        let (port, _) = answering(answer.into_bytes()).await;
        let out = Outbound::new(true, Duration::from_secs(2)).expect("client");
        let url = format!("http://127.0.0.1:{port}/hook");
        assert_eq!(out.post_bytes(&url, &[], b"{}".to_vec()).await.expect("answered").status, 302);
        assert_eq!(out.get_text(&url, Duration::from_secs(1)).await.expect("answered").status, 302);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the Location was not fetched");
    }

    #[tokio::test]
    async fn a_huge_answer_is_cut_at_the_cap() {
        let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n".to_vec();
        answer.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        let (port, _) = answering(answer).await;
        let out = Outbound::new(true, Duration::from_secs(5)).expect("client");
        let reply = out.post_bytes(&format!("http://127.0.0.1:{port}/"), &[], b"{}".to_vec()).await.expect("answered");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body_prefix, "a".repeat(RESPONSE_KEEP));
        let reply = out.get_text(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2)).await.expect("answered");
        assert_eq!(reply.body_prefix.len(), GET_KEEP);
    }

    #[tokio::test]
    async fn get_text_has_its_own_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let out = Outbound::new(true, Duration::from_secs(30)).expect("client");
        let started = Instant::now();
        let err = out.get_text(&format!("http://127.0.0.1:{port}/?t=secret"), Duration::from_millis(300)).await;
        let text = format!("{:#}", err.expect_err("no answer"));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn bytes_and_gets_are_vetted_like_json_posts() {
        let strict = Outbound::new(false, Duration::from_secs(1)).expect("client");
        for url in ["http://127.0.0.1:9/x", "http://[::1]:9/x", "http://2130706433:9/x"] {
            let err = strict.post_bytes(url, &[], Vec::new()).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("private address"), "{url}: {err}");
            let err =
                strict.get_text(url, Duration::from_secs(1)).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("private address"), "{url}: {err}");
        }
        let (port, hits) = listener().await;
        let url = format!("http://localhost:{port}/hook");
        let lookup = Rebinding::new(&["192.0.0.1", "127.0.0.1"]);
        let out = Outbound::with_lookup(false, Duration::from_secs(2), lookup).expect("client");
        let err = out.post_bytes(&url, &[], b"{}".to_vec()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("private address (192.0.0.1)"), "{err}");
        let lookup = Rebinding::new(&["192.0.0.1", "127.0.0.1"]);
        let out = Outbound::with_lookup(false, Duration::from_secs(2), lookup).expect("client");
        let err = out.get_text(&url, Duration::from_secs(1)).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("private address (192.0.0.1)"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }
}
