//! Who is on the other end: the socket's address, or behind a trusted reverse proxy the
//! address that proxy says it forwards for. Only the configured proxies are believed; anyone
//! else's `X-Forwarded-For` is a claim anybody can make.

use std::net::IpAddr;
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::AppState;

/// One address or a network (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                prefix_eq(&base.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                prefix_eq(&base.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not an IP address or network (like 10.0.0.0/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let base = IpAddr::from_str(addr).map_err(|_| bad())?.to_canonical();
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { base, prefix })
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<Network>);

impl From<TrustedProxies> for Vec<String> {
    fn from(t: TrustedProxies) -> Vec<String> {
        t.0.iter().map(Network::to_string).collect()
    }
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<TrustedProxies, String> {
        list.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list, as `VAKT_TRUSTED_PROXIES` gives it.
    fn from_str(s: &str) -> Result<TrustedProxies, String> {
        TrustedProxies::try_from(s.split(',').map(str::to_owned).collect::<Vec<_>>())
    }
}

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// Whether a caller that is not a trusted proxy sent `X-Forwarded-For`: a reverse proxy
    /// left out of the list, or someone claiming an address.
    pub fn forwarded_by_untrusted(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        headers.contains_key("x-forwarded-for") && !self.trusts(peer.to_canonical())
    }

    /// The client's address: the socket's, unless that is a trusted proxy; then the
    /// nearest address in `X-Forwarded-For` that is not itself a trusted proxy. Read from
    /// the right, because each proxy appends and only the trusted ones' appends are true.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = IpAddr::from_str(hop.trim()) else {
                // A hop that is no address: nothing beyond it can be believed.
                return client;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// The caller's address as the throttle keys it: empty when the server does not know it.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let proxies = &state.config.trusted_proxies;
        if let Some(p) = peer.filter(|p| proxies.forwarded_by_untrusted(*p, &parts.headers)) {
            warn_untrusted_forwarder(p);
        }
        Ok(ClientAddr(peer.map(|p| proxies.client(p, &parts.headers))))
    }
}

/// Said once per process: behind a reverse proxy missing from `trusted_proxies`, every
/// client has the proxy's address, and the throttle's per-address counter slows them all
/// together (never for more than fifteen seconds an attempt, but all at once).
fn warn_untrusted_forwarder(peer: IpAddr) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            %peer,
            "a request came with X-Forwarded-For from an address not in trusted_proxies: the header is ignored, and every client behind that address counts as one for login throttling; if it is your reverse proxy, add it to trusted_proxies (VAKT_TRUSTED_PROXIES)"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn networks_match_by_prefix_and_single_addresses_exactly() {
        let n: Network = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")) && !n.contains(ip("10.2.0.1")));
        let one: Network = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(
            one.contains(ip("::ffff:192.0.2.7")),
            "an IPv4-mapped address is IPv4"
        );
        let odd: Network = "10.0.0.128/25".parse().unwrap();
        assert!(odd.contains(ip("10.0.0.200")) && !odd.contains(ip("10.0.0.127")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy.example".parse::<Network>().is_err());
    }

    #[test]
    fn with_no_trusted_proxy_the_socket_address_is_the_client_whatever_the_header_says() {
        let none = TrustedProxies::default();
        let h = forwarded(&["198.51.100.1"]);
        assert_eq!(none.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client() {
        let proxies: TrustedProxies = "10.0.0.1, 10.0.1.0/24".parse().unwrap();
        // The client forged the first entry; the proxies appended the rest.
        let h = forwarded(&["1.2.3.4, 198.51.100.7", "10.0.1.5"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // A hop that is not an address stops the walk at the last believed hop.
        let h = forwarded(&["198.51.100.7, garbage, 10.0.1.5"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &h), ip("10.0.1.5"));
        // A caller that is not a trusted proxy cannot claim an address.
        let h = forwarded(&["198.51.100.7"]);
        assert_eq!(proxies.client(ip("10.9.9.9"), &h), ip("10.9.9.9"));
        assert!(proxies.forwarded_by_untrusted(ip("10.9.9.9"), &h));
        assert!(!proxies.forwarded_by_untrusted(ip("10.0.0.1"), &h));
        assert!(!proxies.forwarded_by_untrusted(ip("10.9.9.9"), &HeaderMap::new()));
    }

    #[test]
    fn a_bad_entry_in_the_list_is_an_error_naming_it() {
        let err = "10.0.0.1, nonsense".parse::<TrustedProxies>().unwrap_err();
        assert!(err.contains("nonsense"), "{err}");
        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::default()
        );
    }
}
