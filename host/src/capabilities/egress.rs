//! The egress policy: which addresses a plugin's HTTP request may reach.
//!
//! Deny by default. Loopback, private, link-local (cloud metadata
//! included), shared (CGNAT), multicast, broadcast, reserved and
//! documentation ranges, and IPv6 forms that embed an IPv4 address, are
//! refused unless the operator allows the network. Names are resolved by
//! [`EgressResolver`], which checks every address and hands reqwest only
//! checked ones, so the connection goes to the address that was checked
//! (no DNS-rebinding window). IP literals never reach a resolver and are
//! checked with [`EgressPolicy::check_ip`].
//!
//! An IPv6 form that embeds an IPv4 address (mapped, compatible, NAT64,
//! 6to4, Teredo) is classified by the address it embeds when that one is
//! internal: `::ffff:127.0.0.1` is loopback, and only a network holding
//! 127.0.0.1 allows it. An embedded public address is refused too, as
//! "IPv6 with embedded IPv4", unless allowed.
//!
//! In report-only mode (`egress.report_only`, for rolling out an allowlist)
//! a refusal of a private or CGNAT address of a host the operator granted
//! by name is logged as one that would have happened, and the request goes
//! on. Every other class (loopback, link-local and metadata, unspecified,
//! reserved, IPv6 forms hiding their IPv4) is refused all the same, and
//! hosts that only appear in an action URL get no such leniency.
//!
//! Which *hosts* a plugin may name is decided per plugin in
//! [`super::http`]; this module judges addresses. The operator's
//! exceptions (allowed networks, trusted hosts) apply only to hosts the
//! operator granted the plugin explicitly, never to a host that merely
//! appears in an alarm's action URL, which any alarm author controls.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};
use tocsin_core::hosts::{host_key, validate_host_entry};

/// The egress policy: deny by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Networks that are reachable although they are loopback, private,
    /// link-local or otherwise internal (e.g. `["127.0.0.1/32"]` in tests).
    pub allow_networks: Vec<IpNet>,
    /// Host names whose addresses are trusted as if they were in
    /// `allow_networks` (an internal webhook gateway, say). They are not
    /// granted to plugins by this: grants are per plugin.
    pub trusted_hosts: Vec<String>,
    /// Log what the address policy would refuse for a host the operator
    /// granted to a plugin by name (`egress: The policy would refuse this
    /// address…`, with host, address and class) and let it through: for
    /// rolling out `allow_networks`. Only private and CGNAT addresses are
    /// let through so; every other class, and hosts that only appear in
    /// action URLs, are refused all the same. Off by default.
    pub report_only: bool,
}

impl EgressConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(ip) = self.trusted_hosts.iter().find(|h| host_key(h).parse::<IpAddr>().is_ok()) {
            return Err(format!(
                "egress.trusted_hosts holds the address {ip}: list addresses in egress.allow_networks"
            ));
        }
        self.trusted_hosts.iter().try_for_each(|host| validate_host_entry(host))
    }
}

/// What kind of address an IP is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable: allowed.
    Public,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 and IPv6 unique-local `fc00::/7`.
    Private,
    /// `169.254.0.0/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// Shared address space `100.64.0.0/10` (carrier-grade NAT).
    SharedCgnat,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and reserved ranges.
    Reserved,
    /// IPv6 that carries an IPv4 address (mapped, compatible, NAT64, 6to4,
    /// Teredo): refused so no IPv4 check can be bypassed through IPv6.
    EmbeddedIpv4,
}

impl AddressClass {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
            AddressClass::EmbeddedIpv4 => "IPv6 with embedded IPv4",
        }
    }
}

/// Classifies an address.
pub(crate) fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, 64..=127, _) => AddressClass::SharedCgnat,
        (224..=239, _, _) => AddressClass::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => AddressClass::Broadcast,
        (240..=255, _, _)
        | (192, 0, 0 | 2)
        | (192, 88, 99)
        | (198, 18 | 19, _)
        | (198, 51, 100)
        | (203, 0, 113) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let segments = ip.segments();
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if let Some(embedded) = embedded_ipv4(ip) {
        // What it routes to decides, in every mode: `::ffff:127.0.0.1` is
        // loopback, and report-only mode refuses it as it refuses
        // 127.0.0.1. An embedded public address is still refused unless
        // allowed: the form itself is a way around the operator's list.
        match classify_v4(embedded) {
            AddressClass::Public => AddressClass::EmbeddedIpv4,
            internal => internal,
        }
    } else if segments[0] & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
        AddressClass::LinkLocal
    } else if segments[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0])
        || segments[0] & 0xe000 != 0x2000
    {
        // Documentation, discard-only, and everything outside 2000::/3,
        // the only global unicast space allocated.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address carried by an IPv6 one, in any of the forms that
/// route to it.
pub(crate) fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        Some(mapped)
    } else if s[..6] == [0, 0, 0, 0, 0, 0]
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || s[..3] == [0x64, 0xff9b, 1]
    {
        // IPv4-compatible `::a.b.c.d` (`::` and `::1` are classified
        // before this is asked), and NAT64's well-known and local prefixes.
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
    } else if s[0] == 0x2001 && s[1] == 0 {
        Some(Ipv4Addr::from(!u32::from(low))) // Teredo: client address, inverted
    } else {
        None
    }
}

/// Whether report-only mode may let `class` through: the internal
/// networks an allowlist is rolled out for (private, CGNAT), never the
/// host itself, the metadata service, or an address whose form hides
/// what it routes to.
fn reportable(class: AddressClass) -> bool {
    matches!(class, AddressClass::Private | AddressClass::SharedCgnat)
}

/// A destination the policy refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {ip} ({}), which the egress policy does not allow", class.name())]
pub struct EgressDenied {
    /// The host as the request named it.
    pub host: String,
    /// The refused address.
    pub ip: IpAddr,
    /// Why it is refused.
    pub class: AddressClass,
}

/// A name plugins' traffic could not be sent to because it does not
/// resolve: told to the plugin as a refusal is (see [`super::http`]).
#[derive(Debug, thiserror::Error)]
#[error("{host} does not resolve: {source}")]
pub struct LookupFailed {
    /// The name.
    pub host: String,
    /// The resolver's error.
    pub source: std::io::Error,
}

/// The operator's address policy.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow_networks: Vec<IpNet>,
    trusted_hosts: HashSet<String>,
    report_only: bool,
}

impl EgressPolicy {
    /// A policy allowing public addresses, plus `allow_networks`, plus any
    /// address of `trusted_hosts`.
    pub fn new(allow_networks: Vec<IpNet>, trusted_hosts: impl IntoIterator<Item = String>) -> Self {
        EgressPolicy {
            allow_networks,
            trusted_hosts: trusted_hosts.into_iter().map(|h| host_key(&h)).collect(),
            report_only: false,
        }
    }

    /// This policy in report-only mode: what it would refuse for a host the
    /// operator granted by name is logged and let through, unless the
    /// address is loopback, link-local or unspecified.
    pub fn report_only(mut self, report_only: bool) -> Self {
        self.report_only = report_only;
        self
    }

    /// Whether `ip` may be reached. With `exceptions`, the operator's
    /// allowed networks apply (an allowed network matches the address
    /// itself or the IPv4 address it embeds); without, only public
    /// addresses pass.
    ///
    /// # Errors
    /// [`EgressDenied`] naming the address class.
    pub fn check_ip(&self, host: &str, ip: IpAddr, exceptions: bool) -> Result<(), EgressDenied> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let class = classify(ip);
        // An internal address in an IPv6 form (classified as what it
        // embeds, not as `EmbeddedIpv4`) is allowed only by a network
        // holding the IPv4 address itself: allowing a translation prefix
        // (`64:ff9b::/96` for DNS64) does not open loopback or metadata.
        let allowed = exceptions
            && self.allow_networks.iter().any(|net| match embedded {
                Some(inner) if class != AddressClass::EmbeddedIpv4 => net.contains(&inner),
                _ => net.contains(&ip) || embedded.is_some_and(|inner| net.contains(&inner)),
            });
        match class {
            _ if allowed => Ok(()),
            AddressClass::Public => Ok(()),
            class if self.report_only && exceptions && reportable(class) => {
                tracing::warn!(
                    host, %ip, class = class.name(), outcome = "reported",
                    "egress: The policy would refuse this address; allowed because egress.report_only is set."
                );
                Ok(())
            }
            class => Err(EgressDenied { host: host.to_owned(), ip, class }),
        }
    }

    /// Checks every address `host` resolved to: one refused address refuses
    /// the host (a name must not mix public and internal addresses). With
    /// `exceptions`, trusted hosts and allowed networks apply.
    ///
    /// # Errors
    /// [`EgressDenied`] for the first refused address.
    pub(crate) fn check_resolved(
        &self,
        host: &str,
        addrs: &[SocketAddr],
        exceptions: bool,
    ) -> Result<(), EgressDenied> {
        if exceptions && self.trusted_hosts.contains(&host_key(host)) {
            return Ok(());
        }
        addrs.iter().try_for_each(|addr| self.check_ip(host, addr.ip(), exceptions))
    }
}

/// The addresses a name resolves to, or why it does not resolve.
pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Where names are looked up: the system resolver in the service
/// ([`SystemLookup`]); tests put a fixed table here to point names at
/// internal addresses.
pub trait NameLookup: std::fmt::Debug + Send + Sync {
    /// The addresses of `host`.
    fn lookup(&self, host: &str) -> Lookup;
}

/// The system resolver (`getaddrinfo`, on tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl NameLookup for SystemLookup {
    fn lookup(&self, host: &str) -> Lookup {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|addr| addr.ip()).collect())
        })
    }
}

/// reqwest's resolver for plugin traffic: looks the name up, then lets
/// through only names whose every address passes the policy. reqwest
/// connects to exactly the addresses returned here.
#[derive(Debug, Clone)]
pub(crate) struct EgressResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn NameLookup>,
    exceptions: bool,
}

impl EgressResolver {
    /// A resolver enforcing `policy` on what `lookup` finds, with or
    /// without the operator's exceptions (only for hosts explicitly
    /// granted to the plugin).
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn NameLookup>, exceptions: bool) -> Self {
        EgressResolver { policy, lookup, exceptions }
    }
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let exceptions = self.exceptions;
        let host = name.as_str().to_owned();
        let lookup = self.lookup.lookup(&host);
        Box::pin(async move {
            let found = lookup.await.map_err(|source| LookupFailed { host: host.clone(), source })?;
            let addrs: Vec<SocketAddr> = found.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            policy.check_resolved(&host, &addrs, exceptions)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_and_public_ones_allowed() {
        let policy = EgressPolicy::default();
        let refused = [
            ("127.0.0.1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.31.255.1", AddressClass::Private),
            ("192.168.0.1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("198.18.0.1", AddressClass::Reserved),
            ("::", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("fd00::1", AddressClass::Private),
            ("fe80::1", AddressClass::LinkLocal),
            ("ff02::1", AddressClass::Multicast),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:8.8.8.8", AddressClass::EmbeddedIpv4),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("2002:7f00:1::", AddressClass::Loopback),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddressClass::Reserved), // Teredo, 192.0.2.45
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("2001:db8::1", AddressClass::Reserved),
        ];
        for (text, class) in refused {
            let denied = policy.check_ip("h", ip(text), true).unwrap_err();
            assert_eq!(denied.class, class, "{text}");
        }
        for text in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(policy.check_ip("h", ip(text), false).is_ok(), "{text}");
        }
    }

    /// Issue 23, finding 1: at e8aba4b report-only mode let a granted
    /// host's `::ffff:169.254.169.254` and `::ffff:127.0.0.1` through (they
    /// were "IPv6 with embedded IPv4", which report-only may allow).
    #[test]
    fn report_only_refuses_loopback_and_metadata_in_every_ipv6_form() {
        let policy = EgressPolicy::default().report_only(true);
        for text in [
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::ffff:0.0.0.0",
        ] {
            let denied = policy.check_ip("granted.example", ip(text), true).unwrap_err();
            assert!(!reportable(denied.class), "{text}: {}", denied.class.name());
        }
        for text in ["::ffff:10.0.0.1", "64:ff9b::a00:1", "10.0.0.1", "100.64.0.1", "fd00::1"] {
            assert!(
                policy.check_ip("granted.example", ip(text), true).is_ok(),
                "{text}: reported, let through"
            );
        }
    }

    #[test]
    fn embedded_ipv4_is_extracted_from_every_form() {
        let v4 = |text: &str| embedded_ipv4(text.parse().unwrap());
        assert_eq!(v4("::ffff:169.254.169.254"), Some(Ipv4Addr::new(169, 254, 169, 254)));
        assert_eq!(v4("64:ff9b::7f00:1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(v4("2002:a9fe:a9fe::1"), Some(Ipv4Addr::new(169, 254, 169, 254)));
        assert_eq!(v4("2001:0:4136:e378:8000:63bf:80ff:fffe"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(v4("2606:4700::1111"), None);
    }

    /// From the review of issue 23: allowing NAT64's prefix, which an
    /// IPv6-only cloud needs for DNS64, opened loopback and metadata in
    /// their NAT64 form; and report-only let through what an address's
    /// form hides (`64:ff9b:1::/48` read as a /96, SIIT).
    #[test]
    fn a_translation_prefix_allowed_or_reported_opens_nothing_internal() {
        let dns64 = EgressPolicy::new(vec!["64:ff9b::/96".parse().unwrap()], []);
        assert!(dns64.check_ip("h", ip("64:ff9b::808:808"), true).is_ok(), "a public IPv4 through NAT64");
        for internal in ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1"] {
            assert!(dns64.check_ip("h", ip(internal), true).is_err(), "{internal}");
        }
        let reporting = EgressPolicy::default().report_only(true);
        for hidden in ["64:ff9b:1:a9fe:a9:fe00:808:808", "::ffff:0:a9fe:a9fe", "::ffff:8.8.8.8", "198.18.0.1"]
        {
            assert!(reporting.check_ip("h", ip(hidden), true).is_err(), "{hidden}");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_what_they_cover() {
        let policy = EgressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], []);
        assert!(policy.check_ip("h", ip("127.0.0.1"), true).is_ok());
        assert!(policy.check_ip("h", ip("::ffff:127.0.0.1"), true).is_ok());
        assert!(policy.check_ip("h", ip("127.0.0.1"), false).is_err(), "exceptions only when asked for");
        assert!(policy.check_ip("h", ip("127.0.0.2"), true).is_err());
        assert!(policy.check_ip("h", ip("169.254.169.254"), true).is_err());
    }

    #[test]
    fn a_name_with_one_internal_address_is_refused_unless_trusted() {
        let addrs: Vec<SocketAddr> = vec!["8.8.8.8:0".parse().unwrap(), "10.0.0.1:0".parse().unwrap()];
        let policy = EgressPolicy::new(Vec::new(), ["Gateway.internal.".to_owned()]);
        assert_eq!(policy.check_resolved("evil.example", &addrs, true).unwrap_err().ip, ip("10.0.0.1"));
        assert!(policy.check_resolved("gateway.internal", &addrs, true).is_ok());
        assert!(policy.check_resolved("gateway.internal", &addrs, false).is_err());
    }
}
