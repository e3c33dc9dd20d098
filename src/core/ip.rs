//! This host's addresses: the private IPv4 from its interfaces, and the public IP from the
//! seed's HTTP fallback chain.

use std::net::IpAddr;
use std::time::Duration;

/// First non-loopback IPv4 address of this host's interfaces.
pub fn private_ip() -> Option<String> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|i| !i.is_loopback())
        .find_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some(v4.to_string()),
            IpAddr::V6(_) => None,
        })
}

/// The endpoints worth asking: http(s) URLs. Any other is skipped like an unreachable one
/// (logged at debug), so a malformed list never makes detection fail.
pub fn usable_endpoints(endpoints: Vec<String>) -> Vec<String> {
    endpoints
        .into_iter()
        .filter(|e| {
            let ok = url::Url::parse(e)
                .map(|u| u.scheme() == "http" || u.scheme() == "https")
                .unwrap_or(false);
            if !ok {
                tracing::debug!(
                    "public IP endpoint skipped: not an http(s) URL ({})",
                    crate::core::redact::clip(e)
                );
            }
            ok
        })
        .collect()
}

/// Asks each endpoint in turn; the first that answers a valid IPv4/IPv6 address within
/// `timeout` wins. Never fails: `None` when no endpoint gave an address.
pub async fn detect_public_ip(endpoints: &[String], timeout: Duration) -> Option<String> {
    crate::core::wire::tls::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .ok()?;
    for url in endpoints {
        let attempt = async {
            let resp = client.get(url).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = resp.bytes().await.ok()?;
            if body.len() > 64 {
                return None;
            }
            let text = std::str::from_utf8(&body).ok()?.trim();
            text.parse::<IpAddr>().ok().map(|ip| ip.to_string())
        };
        if let Ok(Some(ip)) = tokio::time::timeout(timeout, attempt).await {
            return Some(ip);
        }
    }
    None
}
