//! Outbound HTTP (the SMS relay; later webhooks and Kaizala callbacks): one client
//! with timeouts, and the target check of contract §8 — private, loopback and
//! link-local addresses are refused unless `OPENSPOT_ALLOW_PRIVATE_TARGETS=true`, so a
//! spot admin cannot make the server reach the operator's internal network.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};

#[derive(Clone, Debug)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    pub fn new(allow_private: bool, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("openspot/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Outbound { client, allow_private })
    }

    /// Refuses URLs that are not http(s) or that resolve to a non-public address.
    pub async fn check_target(&self, url: &str) -> anyhow::Result<reqwest::Url> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL '{url}'"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("URL scheme must be http or https");
        }
        let host = parsed.host_str().context("URL has no host")?.to_string();
        let port = parsed.port_or_known_default().unwrap_or(80);
        if !self.allow_private {
            let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let addrs = tokio::net::lookup_host((host_for_lookup.as_str(), port))
                .await
                .with_context(|| format!("cannot resolve '{host}'"))?;
            for a in addrs {
                if !is_public(a.ip()) {
                    bail!("target '{host}' resolves to a private address ({}); refused", a.ip());
                }
            }
        }
        Ok(parsed)
    }

    /// POSTs JSON and returns the status code.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> anyhow::Result<u16> {
        let url = self.check_target(url).await?;
        let resp = self.client.post(url).json(body).send().await.context("request failed")?;
        Ok(resp.status().as_u16())
    }
}

/// True for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_unless_allowed() {
        let strict = Outbound::new(false, Duration::from_secs(1)).expect("client");
        assert!(strict.check_target("http://127.0.0.1:9/x").await.is_err());
        assert!(strict.check_target("ftp://example.com/").await.is_err());
        let lax = Outbound::new(true, Duration::from_secs(1)).expect("client");
        assert!(lax.check_target("http://127.0.0.1:9/x").await.is_ok());
    }
}
