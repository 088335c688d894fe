//! Peer-address policy: which addresses the relay may send to ("no open relay").
//!
//! A TURN server sends whatever its authenticated clients ask it to, to whatever address they
//! name. Without a policy that makes it a proxy from the internet into the edge's own network:
//! loopback services, the cloud metadata endpoint (169.254.169.254), private networks, and the
//! edge's own listener and relay ports (which would let one allocation loop traffic through
//! another). [`PeerPolicy`] decides, for every peer address a client names, whether the relay
//! may talk to it.
//!
//! The rules, in the order they are applied (the first that matches decides):
//!
//! 1. **Canonicalise.** IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`, but not
//!    `::` and `::1`) IPv6 addresses *are* IPv4 addresses as far as a dual-stack socket is
//!    concerned, so they are turned into IPv4 and checked as such. Every other IPv6 address that
//!    carries an IPv4 address which a translator or tunnel on the path may deliver to (NAT64,
//!    6to4, Teredo server and client, SIIT) has each embedded IPv4 address checked against
//!    rules 2–3; if any is denied the peer is [`Denied::EmbeddedIpv4Denied`]. Otherwise the
//!    address stays IPv6 and carries on through the IPv6 rules — so it still needs an RTN prefix.
//! 2. **Hard deny** ([`hard_deny_prefixes`]), port 0, and the edge's own addresses. Nothing the
//!    operator configures opens these (except loopback with the dev-only
//!    [`PeerPolicyConfig::dangerous_allow_loopback_peers`]).
//! 3. **Private space** ([`private_prefixes`]) is denied unless an RTN prefix that lies entirely
//!    inside private space contains the address. Listing `10.200.2.0/24` opens exactly that;
//!    listing `0.0.0.0/0` opens the internet, not the edge's LAN.
//! 4. **Loopback** (only reachable with the dangerous flag) is allowed without an RTN prefix.
//! 5. **Everything else** must be inside some RTN prefix, or it is
//!    [`Denied::NotInRtnPrefixes`]. The relay serves the real-time network, not the internet.
//!
//! Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not
//! hard-denied: they are never routed, rule 5 already keeps them out unless an operator lists
//! them, and tests rely on listing them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Inputs of a [`PeerPolicy`]. All lists may be empty.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicyConfig {
    /// Prefixes of the real-time network the relay serves. A peer must be inside one of them
    /// (rule 5). They never open hard-denied space, and they open private space only when the
    /// prefix itself lies entirely inside a private range (rule 3). IPv4-mapped IPv6 prefixes
    /// (`::ffff:a.b.c.d/len`, len ≥ 96) are treated as the IPv4 prefix they spell.
    pub rtn_prefixes: Vec<IpNet>,
    /// The edge's listener and relay socket addresses. A peer equal to one of them (IP and port)
    /// is denied, so a client cannot aim the relay at the edge itself. An entry whose IP is the
    /// wildcard (`0.0.0.0` or `::`) listens on every local address: its own IPs are covered by
    /// [`Self::own_ips`], so such an entry only denies its port on loopback addresses (which
    /// matters when [`Self::dangerous_allow_loopback_peers`] is on).
    pub own_addresses: Vec<SocketAddr>,
    /// The edge's own IP addresses. Every port on them is denied — a relay socket or an admin
    /// port the list above forgot is still the edge. Exception: a loopback IP while
    /// [`Self::dangerous_allow_loopback_peers`] is on, where only the exact
    /// [`Self::own_addresses`] and [`Self::own_port_ranges`] are denied, so a test can relay to a
    /// peer on `127.0.0.1:other-port`.
    pub own_ips: Vec<IpAddr>,
    /// Port ranges the edge listens on, as `(ip, lo, hi)` (inclusive): a peer `ip:port` with
    /// `lo <= port <= hi` is denied. Relay sockets come from a whole range, so listing each is
    /// impractical. A wildcard `ip` (`0.0.0.0` or `::`) denies that range on **every** address
    /// of that family, remote ones included — list concrete IPs (e.g. `127.0.0.1` in tests)
    /// unless that is what you want.
    pub own_port_ranges: Vec<(IpAddr, u16, u16)>,
    /// Allow loopback peers (`127.0.0.0/8`, `::1`) without an RTN prefix. For local development
    /// and tests only: on a real edge loopback is where admin endpoints and sidecars live. The
    /// edge's own addresses stay denied, and loopback embedded in another address (NAT64, 6to4,
    /// Teredo, SIIT) stays denied — no dev setup needs that.
    pub dangerous_allow_loopback_peers: bool,
}

/// Decides whether the relay may talk to a peer address. Build once from a
/// [`PeerPolicyConfig`]; [`PeerPolicy::check`] is cheap and allocation-free on success, so it can
/// run on every CreatePermission, ChannelBind, Send and Connect.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    rtn: Vec<IpNet>,
    /// The subset of `rtn` that lies entirely inside a private range: the only prefixes that may
    /// open private space.
    rtn_private: Vec<IpNet>,
    own_addresses: Vec<SocketAddr>,
    /// Ports of wildcard `own_addresses` entries; denied on loopback.
    own_wildcard_ports: Vec<u16>,
    own_ips: Vec<IpAddr>,
    own_port_ranges: Vec<(IpAddr, u16, u16)>,
    allow_loopback: bool,
}

/// Why a peer address was refused. `Display` gives an operator-readable sentence;
/// [`Denied::reason`] a short stable name for logs and metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denied {
    /// Port 0 cannot be sent to; a peer naming it is broken or probing.
    PortZero,
    /// `0.0.0.0/8` or `::`: "this host" — the kernel delivers it locally.
    Unspecified,
    /// `127.0.0.0/8` or `::1`: services bound to loopback trust their callers.
    Loopback,
    /// `169.254.0.0/16` or `fe80::/10`: link-local, including cloud metadata endpoints.
    LinkLocal,
    /// `224.0.0.0/4` or `ff00::/8`: one request would fan out to a whole group.
    Multicast,
    /// `255.255.255.255`: limited broadcast reaches every host on the edge's segment.
    Broadcast,
    /// `240.0.0.0/4`: reserved, never a legitimate peer.
    Reserved,
    /// `fec0::/10`: deprecated site-local, still routed inside some networks.
    SiteLocal,
    /// Private space (RFC 1918, CGNAT, benchmarking, ULA) that no private RTN prefix opens.
    PrivateNotListed,
    /// One of the edge's own addresses: relaying into itself would create loops and expose its
    /// listeners to relayed (spoofable-looking) traffic.
    OwnAddress,
    /// Not inside any configured RTN prefix: the relay only serves the real-time network.
    NotInRtnPrefixes,
    /// An IPv6 address that embeds an IPv4 address (NAT64, 6to4, Teredo, SIIT) which is itself
    /// denied; a translator or tunnel on the path would deliver there.
    EmbeddedIpv4Denied {
        /// How the IPv4 address is embedded.
        embedding: Ipv4Embedding,
        /// The embedded IPv4 address.
        ipv4: Ipv4Addr,
        /// Why the embedded address is denied.
        inner: Box<Denied>,
    },
}

impl Denied {
    /// Short stable name (`snake_case`) for logs and metric labels. These strings do not change
    /// once released, so dashboards can rely on them.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::PortZero => "port_zero",
            Denied::Unspecified => "unspecified",
            Denied::Loopback => "loopback",
            Denied::LinkLocal => "link_local",
            Denied::Multicast => "multicast",
            Denied::Broadcast => "broadcast",
            Denied::Reserved => "reserved",
            Denied::SiteLocal => "site_local",
            Denied::PrivateNotListed => "private_not_listed",
            Denied::OwnAddress => "own_address",
            Denied::NotInRtnPrefixes => "not_in_rtn_prefixes",
            Denied::EmbeddedIpv4Denied { .. } => "embedded_ipv4_denied",
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::PortZero => f.write_str("peer port is 0"),
            Denied::Unspecified => f.write_str("peer is unspecified (0.0.0.0/8, ::)"),
            Denied::Loopback => f.write_str("peer is loopback (127.0.0.0/8, ::1)"),
            Denied::LinkLocal => f.write_str(
                "peer is link-local (169.254.0.0/16, fe80::/10; includes cloud metadata)",
            ),
            Denied::Multicast => f.write_str("peer is multicast (224.0.0.0/4, ff00::/8)"),
            Denied::Broadcast => f.write_str("peer is broadcast (255.255.255.255)"),
            Denied::Reserved => f.write_str("peer is reserved (240.0.0.0/4)"),
            Denied::SiteLocal => f.write_str("peer is site-local (fec0::/10)"),
            Denied::PrivateNotListed => f.write_str(
                "peer is in private space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, \
                 100.64.0.0/10, 198.18.0.0/15, fc00::/7) not opened by a private RTN prefix",
            ),
            Denied::OwnAddress => f.write_str("peer is one of the edge's own addresses"),
            Denied::NotInRtnPrefixes => f.write_str("peer is not in any configured RTN prefix"),
            Denied::EmbeddedIpv4Denied {
                embedding,
                ipv4,
                inner,
            } => write!(
                f,
                "peer embeds IPv4 {ipv4} ({embedding}), which is denied: {inner}"
            ),
        }
    }
}

impl std::error::Error for Denied {}

/// How an IPv6 address carries an IPv4 address that something on the path may deliver to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ipv4Embedding {
    /// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052); IPv4 in the last 32 bits.
    Nat64,
    /// NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215); IPv4 taken from the last 32 bits
    /// (the `/96` layout, the one deployments use).
    Nat64LocalUse,
    /// 6to4 `2002::/16` (RFC 3056); IPv4 in bits 16..48.
    SixToFour,
    /// Teredo `2001::/32` (RFC 4380) server address, bits 32..64.
    TeredoServer,
    /// Teredo `2001::/32` client (mapped) address, the last 32 bits inverted.
    TeredoClient,
    /// SIIT IPv4-translated `::ffff:0:0:0/96` (RFC 2765); IPv4 in the last 32 bits.
    Siit,
}

impl Ipv4Embedding {
    /// Short stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv4Embedding::Nat64 => "nat64",
            Ipv4Embedding::Nat64LocalUse => "nat64_local_use",
            Ipv4Embedding::SixToFour => "6to4",
            Ipv4Embedding::TeredoServer => "teredo_server",
            Ipv4Embedding::TeredoClient => "teredo_client",
            Ipv4Embedding::Siit => "siit",
        }
    }
}

impl fmt::Display for Ipv4Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IPv4 hard-deny table, first match wins (broadcast before the 240/4 it lies in).
static HARD_DENY_V4: [(Ipv4Addr, u8, Denied); 6] = [
    (Ipv4Addr::new(255, 255, 255, 255), 32, Denied::Broadcast),
    (Ipv4Addr::new(0, 0, 0, 0), 8, Denied::Unspecified),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Denied::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Denied::LinkLocal),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Denied::Multicast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Denied::Reserved),
];

/// IPv6 hard-deny table.
static HARD_DENY_V6: [(Ipv6Addr, u8, Denied); 5] = [
    (Ipv6Addr::UNSPECIFIED, 128, Denied::Unspecified),
    (Ipv6Addr::LOCALHOST, 128, Denied::Loopback),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Denied::LinkLocal,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Denied::Multicast,
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Denied::SiteLocal,
    ),
];

static PRIVATE_V4: [(Ipv4Addr, u8); 5] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
];

static PRIVATE_V6: [(Ipv6Addr, u8); 1] = [(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)];

/// The prefixes that are denied whatever the RTN prefixes say, with the reason each yields,
/// IPv4 first. `127.0.0.0/8` and `::1` are the only ones
/// [`PeerPolicyConfig::dangerous_allow_loopback_peers`] lifts. Exported so documentation and
/// tests elsewhere can table exactly what [`PeerPolicy`] enforces.
pub fn hard_deny_prefixes() -> Vec<(IpNet, Denied)> {
    let v4 = HARD_DENY_V4.iter().map(|(a, l, d)| {
        (
            IpNet::V4(Ipv4Net::new(*a, *l).expect("valid prefix")),
            d.clone(),
        )
    });
    let v6 = HARD_DENY_V6.iter().map(|(a, l, d)| {
        (
            IpNet::V6(Ipv6Net::new(*a, *l).expect("valid prefix")),
            d.clone(),
        )
    });
    v4.chain(v6).collect()
}

/// The private ranges of rule 3 (denied unless a private RTN prefix opens them), IPv4 first.
pub fn private_prefixes() -> Vec<IpNet> {
    let v4 = PRIVATE_V4
        .iter()
        .map(|(a, l)| IpNet::V4(Ipv4Net::new(*a, *l).expect("valid prefix")));
    let v6 = PRIVATE_V6
        .iter()
        .map(|(a, l)| IpNet::V6(Ipv6Net::new(*a, *l).expect("valid prefix")));
    v4.chain(v6).collect()
}

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => PRIVATE_V4.iter().any(|(n, l)| v4_in(a, *n, *l)),
        IpAddr::V6(a) => PRIVATE_V6.iter().any(|(n, l)| v6_in(a, *n, *l)),
    }
}

fn net_is_private(net: &IpNet) -> bool {
    private_prefixes().iter().any(|p| p.contains(net))
}

/// IPv4-mapped and IPv4-compatible addresses as IPv4; everything else unchanged.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(a);
            // IPv4-compatible ::a.b.c.d, excluding :: and ::1 which are IPv6's own.
            if bits >> 32 == 0 && bits > 1 {
                return IpAddr::V4(Ipv4Addr::from(bits as u32));
            }
            IpAddr::V6(a)
        }
        v4 => v4,
    }
}

/// IPv4-mapped IPv6 prefixes as the IPv4 prefix they spell.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if n.prefix_len() >= 96 {
            if let Some(v4) = n.addr().to_ipv4_mapped() {
                if let Ok(n4) = Ipv4Net::new(v4, n.prefix_len() - 96) {
                    return IpNet::V4(n4.trunc());
                }
            }
        }
    }
    net.trunc()
}

/// Every IPv4 address an IPv6 address carries in a form something on the path may deliver to.
/// At most two (Teredo).
fn embedded_ipv4(a: Ipv6Addr) -> [Option<(Ipv4Embedding, Ipv4Addr)>; 2] {
    let bits = u128::from(a);
    let low32 = Ipv4Addr::from(bits as u32);
    if v6_in(a, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        [Some((Ipv4Embedding::Nat64, low32)), None]
    } else if v6_in(a, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48) {
        [Some((Ipv4Embedding::Nat64LocalUse, low32)), None]
    } else if v6_in(a, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let v4 = Ipv4Addr::from((bits >> 80) as u32);
        [Some((Ipv4Embedding::SixToFour, v4)), None]
    } else if v6_in(a, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        let server = Ipv4Addr::from((bits >> 64) as u32);
        let client = Ipv4Addr::from(!(bits as u32));
        [
            Some((Ipv4Embedding::TeredoServer, server)),
            Some((Ipv4Embedding::TeredoClient, client)),
        ]
    } else if v6_in(a, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96) {
        [Some((Ipv4Embedding::Siit, low32)), None]
    } else {
        [None, None]
    }
}

impl PeerPolicy {
    /// Builds the policy. Addresses and prefixes are canonicalised here (IPv4-mapped IPv6 to
    /// IPv4, host bits of prefixes cleared) so the per-packet check compares like with like.
    pub fn new(cfg: PeerPolicyConfig) -> Self {
        let rtn: Vec<IpNet> = cfg.rtn_prefixes.into_iter().map(canonical_net).collect();
        let rtn_private = rtn.iter().copied().filter(net_is_private).collect();
        let mut own_addresses = Vec::new();
        let mut own_wildcard_ports = Vec::new();
        for sa in cfg.own_addresses {
            let ip = canonical_ip(sa.ip());
            if ip.is_unspecified() {
                own_wildcard_ports.push(sa.port());
            } else {
                own_addresses.push(SocketAddr::new(ip, sa.port()));
            }
        }
        let own_ips = cfg
            .own_ips
            .into_iter()
            .map(canonical_ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let own_port_ranges = cfg
            .own_port_ranges
            .into_iter()
            .map(|(ip, lo, hi)| (canonical_ip(ip), lo, hi))
            .collect();
        Self {
            rtn,
            rtn_private,
            own_addresses,
            own_wildcard_ports,
            own_ips,
            own_port_ranges,
            allow_loopback: cfg.dangerous_allow_loopback_peers,
        }
    }

    /// Checks a peer the relay is about to talk to and returns the canonical address to use:
    /// IPv4-mapped/-compatible IPv6 becomes the plain IPv4 socket address (same port), so the
    /// caller's permission tables and sockets see one spelling per peer; IPv6 comes back with
    /// flow info and scope id cleared (a peer named on the wire has neither).
    pub fn check(&self, peer: SocketAddr) -> Result<SocketAddr, Denied> {
        let ip = self.evaluate(peer.ip(), Some(peer.port()))?;
        Ok(match ip {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), peer.port()),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, peer.port(), 0, 0)),
        })
    }

    /// Checks an IP address without a port, for TURN permissions (CreatePermission installs
    /// permissions per IP and clients may send port 0 there). Applies every rule that does not
    /// depend on the port: the own-address rules that name a port
    /// ([`PeerPolicyConfig::own_addresses`], [`PeerPolicyConfig::own_port_ranges`]) are left to
    /// [`PeerPolicy::check`] on the actual send. Returns the canonical IP.
    pub fn check_ip(&self, ip: IpAddr) -> Result<IpAddr, Denied> {
        self.evaluate(ip, None)
    }

    fn evaluate(&self, ip: IpAddr, port: Option<u16>) -> Result<IpAddr, Denied> {
        if port == Some(0) {
            return Err(Denied::PortZero);
        }
        let ip = canonical_ip(ip);
        if let IpAddr::V6(a) = ip {
            for (embedding, v4) in embedded_ipv4(a).into_iter().flatten() {
                // Loopback behind a translator is never a dev peer: deny it whatever the flag.
                if let Err(inner) = self.deny_rules(IpAddr::V4(v4), port, false) {
                    return Err(Denied::EmbeddedIpv4Denied {
                        embedding,
                        ipv4: v4,
                        inner: Box::new(inner),
                    });
                }
            }
        }
        let private_opened = self.deny_rules(ip, port, self.allow_loopback)?;
        if private_opened || (ip.is_loopback() && self.allow_loopback) {
            return Ok(ip);
        }
        if self.rtn.iter().any(|n| n.contains(&ip)) {
            Ok(ip)
        } else {
            Err(Denied::NotInRtnPrefixes)
        }
    }

    /// Rules 2 and 3 for a canonical address. `Ok(true)` when the address is private and opened
    /// by a private RTN prefix (allowed outright), `Ok(false)` when nothing denies it.
    fn deny_rules(
        &self,
        ip: IpAddr,
        port: Option<u16>,
        allow_loopback: bool,
    ) -> Result<bool, Denied> {
        let hard = match ip {
            IpAddr::V4(a) => HARD_DENY_V4
                .iter()
                .find(|(n, l, _)| v4_in(a, *n, *l))
                .map(|r| &r.2),
            IpAddr::V6(a) => HARD_DENY_V6
                .iter()
                .find(|(n, l, _)| v6_in(a, *n, *l))
                .map(|r| &r.2),
        };
        if let Some(d) = hard {
            if !(*d == Denied::Loopback && allow_loopback) {
                return Err(d.clone());
            }
        }
        if self.is_own(ip, port, allow_loopback) {
            return Err(Denied::OwnAddress);
        }
        if is_private(ip) {
            return if self.rtn_private.iter().any(|n| n.contains(&ip)) {
                Ok(true)
            } else {
                Err(Denied::PrivateNotListed)
            };
        }
        Ok(false)
    }

    fn is_own(&self, ip: IpAddr, port: Option<u16>, allow_loopback: bool) -> bool {
        if let Some(port) = port {
            if self.own_addresses.contains(&SocketAddr::new(ip, port)) {
                return true;
            }
            if ip.is_loopback() && self.own_wildcard_ports.contains(&port) {
                return true;
            }
            let in_range = self.own_port_ranges.iter().any(|(rip, lo, hi)| {
                (*lo..=*hi).contains(&port)
                    && (*rip == ip || (rip.is_unspecified() && rip.is_ipv4() == ip.is_ipv4()))
            });
            if in_range {
                return true;
            }
        }
        self.own_ips.contains(&ip) && !(ip.is_loopback() && allow_loopback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn open_policy() -> PeerPolicy {
        PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("0.0.0.0/0"), net("::/0")],
            ..Default::default()
        })
    }

    fn embedded(embedding: Ipv4Embedding, ipv4: &str, inner: Denied) -> Denied {
        Denied::EmbeddedIpv4Denied {
            embedding,
            ipv4: ipv4.parse().unwrap(),
            inner: Box::new(inner),
        }
    }

    /// Teredo address: server IPv4, client IPv4 (stored inverted), port (inverted, ignored).
    fn teredo(server: Ipv4Addr, client: Ipv4Addr) -> String {
        let bits = (0x2001_0000u128 << 96)
            | (u128::from(u32::from(server)) << 64)
            | (u128::from(!0x1234u16) << 32)
            | u128::from(!u32::from(client));
        format!("[{}]:3478", Ipv6Addr::from(bits))
    }

    #[test]
    fn every_spelling_of_forbidden_space_is_denied_even_with_default_routes() {
        use Denied::*;
        use Ipv4Embedding::*;
        let public = Ipv4Addr::new(203, 0, 113, 1);
        let lo = Ipv4Addr::LOCALHOST;
        let teredo_server_lo = teredo(lo, public);
        let teredo_client_lo = teredo(public, lo);
        let cases: Vec<(&str, Denied)> = vec![
            ("0.0.0.0:5000", Unspecified),
            ("0.1.2.3:5000", Unspecified),
            ("127.0.0.1:5000", Loopback),
            ("127.255.255.254:5000", Loopback),
            ("169.254.169.254:80", LinkLocal),
            ("169.254.0.1:5000", LinkLocal),
            ("224.0.0.1:5000", Multicast),
            ("239.255.255.250:1900", Multicast),
            ("255.255.255.255:5000", Broadcast),
            ("240.0.0.1:5000", Reserved),
            ("10.0.0.1:5000", PrivateNotListed),
            ("172.16.0.1:5000", PrivateNotListed),
            ("192.168.1.1:5000", PrivateNotListed),
            ("100.64.0.1:5000", PrivateNotListed),
            ("198.18.0.1:5000", PrivateNotListed),
            ("[::]:5000", Unspecified),
            ("[::1]:5000", Loopback),
            ("[::ffff:127.0.0.1]:5000", Loopback),
            ("[::ffff:169.254.169.254]:80", LinkLocal),
            ("[::127.0.0.1]:5000", Loopback),
            ("[::ffff:10.0.0.1]:5000", PrivateNotListed),
            ("[::2]:5000", Unspecified),
            (
                "[64:ff9b::7f00:1]:5000",
                embedded(Nat64, "127.0.0.1", Loopback),
            ),
            (
                "[64:ff9b::a9fe:a9fe]:80",
                embedded(Nat64, "169.254.169.254", LinkLocal),
            ),
            (
                "[64:ff9b:1::a9fe:a9fe]:80",
                embedded(Nat64LocalUse, "169.254.169.254", LinkLocal),
            ),
            (
                "[2002:7f00:1::]:5000",
                embedded(SixToFour, "127.0.0.1", Loopback),
            ),
            (
                "[2002:a9fe:a9fe::1]:80",
                embedded(SixToFour, "169.254.169.254", LinkLocal),
            ),
            (
                "[2002:a00:1::1]:5000",
                embedded(SixToFour, "10.0.0.1", PrivateNotListed),
            ),
            (
                teredo_server_lo.as_str(),
                embedded(TeredoServer, "127.0.0.1", Loopback),
            ),
            (
                teredo_client_lo.as_str(),
                embedded(TeredoClient, "127.0.0.1", Loopback),
            ),
            (
                "[::ffff:0:7f00:1]:5000",
                embedded(Siit, "127.0.0.1", Loopback),
            ),
            ("[fe80::1]:5000", LinkLocal),
            ("[febf::1]:5000", LinkLocal),
            ("[ff02::1]:5000", Multicast),
            ("[fec0::1]:5000", SiteLocal),
            ("[fc00::1]:5000", PrivateNotListed),
            ("[fd00::1]:5000", PrivateNotListed),
            ("203.0.113.1:0", PortZero),
        ];
        // Sanity-check the hand-computed Teredo spelling of the client case.
        assert_eq!(teredo_client_lo, "[2001:0:cb00:7101:0:edcb:80ff:fffe]:3478");
        let open = open_policy();
        let dangerous = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("0.0.0.0/0"), net("::/0")],
            dangerous_allow_loopback_peers: true,
            ..Default::default()
        });
        for (spelling, want) in &cases {
            let got = open.check(sa(spelling));
            assert_eq!(got.as_ref(), Err(want), "{spelling}");
            // The dangerous flag lifts direct loopback only, never a translated one.
            if *want != Loopback {
                assert_eq!(
                    dangerous.check(sa(spelling)).as_ref(),
                    Err(want),
                    "{spelling} (dangerous)"
                );
            }
            let err = got.unwrap_err();
            assert!(!err.to_string().is_empty());
            assert!(!err.reason().is_empty());
        }
    }

    #[test]
    fn rtn_prefixes_gate_public_space() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("203.0.113.0/24"), net("2001:db8:1::/48")],
            ..Default::default()
        });
        assert_eq!(
            p.check(sa("203.0.113.10:40000")),
            Ok(sa("203.0.113.10:40000"))
        );
        assert_eq!(
            p.check(sa("198.51.100.1:40000")),
            Err(Denied::NotInRtnPrefixes)
        );
        assert_eq!(
            p.check(sa("[2001:db8:1::5]:40000")),
            Ok(sa("[2001:db8:1::5]:40000"))
        );
        assert_eq!(
            p.check(sa("[2001:db8:2::5]:40000")),
            Err(Denied::NotInRtnPrefixes)
        );
        // Mapped spelling: allowed, and handed back as plain IPv4.
        let got = p.check(sa("[::ffff:203.0.113.10]:40000")).unwrap();
        assert_eq!(got, sa("203.0.113.10:40000"));
        assert!(got.is_ipv4());
        // An ::/0 prefix does not open IPv4 through the mapped spelling.
        let v6_only = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("::/0")],
            ..Default::default()
        });
        assert_eq!(
            v6_only.check(sa("[::ffff:203.0.113.10]:1")),
            Err(Denied::NotInRtnPrefixes)
        );
        // Embedded public IPv4 is fine, but the IPv6 address itself still needs a prefix.
        assert_eq!(
            p.check(sa("[64:ff9b::cb00:710a]:1")),
            Err(Denied::NotInRtnPrefixes)
        );
        assert!(open_policy().check(sa("[64:ff9b::cb00:710a]:1")).is_ok());
        assert!(open_policy().check(sa("[2002:cb00:710a::1]:1")).is_ok());
        // Scope id and flow info are cleared.
        let scoped = SocketAddr::V6(SocketAddrV6::new("2001:db8:1::5".parse().unwrap(), 9, 7, 3));
        assert_eq!(p.check(scoped), Ok(sa("[2001:db8:1::5]:9")));
    }

    #[test]
    fn private_space_opens_only_for_private_prefixes() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![
                net("0.0.0.0/0"),
                net("10.200.2.0/24"),
                net("fd12:3456::/32"),
            ],
            ..Default::default()
        });
        assert_eq!(p.check(sa("10.200.2.2:5000")), Ok(sa("10.200.2.2:5000")));
        assert_eq!(
            p.check(sa("10.200.3.2:5000")),
            Err(Denied::PrivateNotListed)
        );
        assert_eq!(
            p.check(sa("[::ffff:10.200.2.2]:5000")),
            Ok(sa("10.200.2.2:5000"))
        );
        assert_eq!(
            p.check(sa("[fd12:3456::1]:5000")),
            Ok(sa("[fd12:3456::1]:5000"))
        );
        assert_eq!(
            p.check(sa("[fd12:3457::1]:5000")),
            Err(Denied::PrivateNotListed)
        );
        // A prefix straddling private and public space opens neither private part.
        let wide = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("8.0.0.0/6")],
            ..Default::default()
        });
        assert_eq!(wide.check(sa("10.0.0.1:1")), Err(Denied::PrivateNotListed));
        assert!(wide.check(sa("8.8.8.8:53")).is_ok());
        // Mapped IPv6 prefix spelling counts as the IPv4 prefix.
        let mapped = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("::ffff:10.200.2.0/120")],
            ..Default::default()
        });
        assert_eq!(mapped.check(sa("10.200.2.9:1")), Ok(sa("10.200.2.9:1")));
    }

    #[test]
    fn hard_deny_beats_every_prefix() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("127.0.0.0/8"), net("169.254.0.0/16"), net("::1/128")],
            ..Default::default()
        });
        assert_eq!(p.check(sa("127.0.0.1:5000")), Err(Denied::Loopback));
        assert_eq!(p.check(sa("169.254.169.254:80")), Err(Denied::LinkLocal));
        assert_eq!(p.check(sa("[::1]:5000")), Err(Denied::Loopback));
    }

    #[test]
    fn own_addresses_are_denied() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("0.0.0.0/0"), net("::/0")],
            own_addresses: vec![sa("198.51.100.7:3478"), sa("0.0.0.0:5349")],
            own_ips: vec![
                "198.51.100.8".parse().unwrap(),
                "2001:db8::8".parse().unwrap(),
            ],
            own_port_ranges: vec![("198.51.100.9".parse().unwrap(), 49152, 65535)],
            ..Default::default()
        });
        assert_eq!(p.check(sa("198.51.100.7:3478")), Err(Denied::OwnAddress));
        assert_eq!(
            p.check(sa("[::ffff:198.51.100.7]:3478")),
            Err(Denied::OwnAddress)
        );
        assert!(p.check(sa("198.51.100.7:3479")).is_ok());
        assert_eq!(p.check(sa("198.51.100.8:1")), Err(Denied::OwnAddress));
        assert_eq!(p.check(sa("[2001:db8::8]:443")), Err(Denied::OwnAddress));
        assert_eq!(p.check(sa("198.51.100.9:49152")), Err(Denied::OwnAddress));
        assert_eq!(p.check(sa("198.51.100.9:65535")), Err(Denied::OwnAddress));
        assert!(p.check(sa("198.51.100.9:49151")).is_ok());
        // The wildcard listener entry does not deny port 5349 on remote hosts.
        assert!(p.check(sa("203.0.113.1:5349")).is_ok());
        // Own IP embedded in 6to4 is still the edge.
        assert_eq!(
            p.check(sa("[2002:c633:6408::1]:1")),
            Err(embedded_own("198.51.100.8"))
        );
        assert_eq!(
            p.check_ip("198.51.100.8".parse().unwrap()),
            Err(Denied::OwnAddress)
        );
        assert!(p.check_ip("198.51.100.7".parse().unwrap()).is_ok());
    }

    fn embedded_own(v4: &str) -> Denied {
        embedded(Ipv4Embedding::SixToFour, v4, Denied::OwnAddress)
    }

    #[test]
    fn wildcard_port_ranges_cover_the_family() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("0.0.0.0/0"), net("::/0")],
            own_port_ranges: vec![(Ipv4Addr::UNSPECIFIED.into(), 50000, 50010)],
            ..Default::default()
        });
        assert_eq!(p.check(sa("203.0.113.1:50005")), Err(Denied::OwnAddress));
        assert!(p.check(sa("[2001:db8::1]:50005")).is_ok());
        assert!(p.check(sa("203.0.113.1:50011")).is_ok());
    }

    #[test]
    fn loopback_needs_the_dangerous_flag_and_never_reaches_the_edge() {
        let cfg = PeerPolicyConfig {
            rtn_prefixes: vec![],
            own_addresses: vec![sa("127.0.0.1:3478"), sa("[::]:5349")],
            own_ips: vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
            own_port_ranges: vec![(Ipv4Addr::LOCALHOST.into(), 49152, 49200)],
            dangerous_allow_loopback_peers: false,
        };
        let safe = PeerPolicy::new(cfg.clone());
        assert_eq!(safe.check(sa("127.0.0.1:40000")), Err(Denied::Loopback));
        assert_eq!(safe.check(sa("[::1]:40000")), Err(Denied::Loopback));

        let dev = PeerPolicy::new(PeerPolicyConfig {
            dangerous_allow_loopback_peers: true,
            ..cfg
        });
        assert_eq!(dev.check(sa("127.0.0.1:40000")), Ok(sa("127.0.0.1:40000")));
        assert_eq!(dev.check(sa("127.0.0.2:40000")), Ok(sa("127.0.0.2:40000")));
        assert_eq!(dev.check(sa("[::1]:40000")), Ok(sa("[::1]:40000")));
        assert_eq!(
            dev.check(sa("[::ffff:127.0.0.1]:40000")),
            Ok(sa("127.0.0.1:40000"))
        );
        assert_eq!(dev.check(sa("127.0.0.1:3478")), Err(Denied::OwnAddress));
        assert_eq!(
            dev.check(sa("[::ffff:127.0.0.1]:3478")),
            Err(Denied::OwnAddress)
        );
        assert_eq!(dev.check(sa("127.0.0.1:49152")), Err(Denied::OwnAddress));
        assert_eq!(dev.check(sa("127.0.0.1:49200")), Err(Denied::OwnAddress));
        assert!(dev.check(sa("127.0.0.1:49201")).is_ok());
        // A wildcard listener is reachable on every loopback address.
        assert_eq!(dev.check(sa("127.0.0.1:5349")), Err(Denied::OwnAddress));
        assert_eq!(dev.check(sa("[::1]:5349")), Err(Denied::OwnAddress));
        // Still nothing else: loopback opens, the rest of the world does not.
        assert_eq!(
            dev.check(sa("203.0.113.1:40000")),
            Err(Denied::NotInRtnPrefixes)
        );
        assert_eq!(dev.check(sa("169.254.169.254:80")), Err(Denied::LinkLocal));
        assert_eq!(dev.check(sa("127.0.0.1:0")), Err(Denied::PortZero));
        assert_eq!(
            dev.check_ip(Ipv4Addr::LOCALHOST.into()),
            Ok(Ipv4Addr::LOCALHOST.into())
        );
    }

    #[test]
    fn check_ip_ignores_the_port_but_not_the_address() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            rtn_prefixes: vec![net("203.0.113.0/24")],
            ..Default::default()
        });
        assert_eq!(
            p.check_ip("::ffff:203.0.113.10".parse().unwrap()),
            Ok("203.0.113.10".parse().unwrap())
        );
        assert_eq!(
            p.check_ip("127.0.0.1".parse().unwrap()),
            Err(Denied::Loopback)
        );
        assert_eq!(
            p.check_ip("198.51.100.1".parse().unwrap()),
            Err(Denied::NotInRtnPrefixes)
        );
    }

    #[test]
    fn exported_tables_match_the_checks() {
        let open = open_policy();
        for (prefix, denied) in hard_deny_prefixes() {
            let ip = prefix.addr();
            let ip = if ip.is_unspecified() || ip.is_loopback() {
                ip
            } else {
                // Step inside the prefix, away from its first address.
                match ip {
                    IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | 1)),
                    IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) | 1)),
                }
            };
            assert_eq!(open.check(SocketAddr::new(ip, 9)), Err(denied), "{prefix}");
        }
        for prefix in private_prefixes() {
            assert_eq!(
                open.check(SocketAddr::new(prefix.addr(), 9)),
                Err(Denied::PrivateNotListed),
                "{prefix}"
            );
        }
        assert_eq!(hard_deny_prefixes().len(), 11);
        assert!(hard_deny_prefixes().contains(&(net("255.255.255.255/32"), Denied::Broadcast)));
    }

    #[test]
    fn display_and_reason() {
        assert_eq!(
            Denied::Loopback.to_string(),
            "peer is loopback (127.0.0.0/8, ::1)"
        );
        assert_eq!(Denied::Loopback.reason(), "loopback");
        let e = embedded(Ipv4Embedding::TeredoClient, "127.0.0.1", Denied::Loopback);
        assert_eq!(e.reason(), "embedded_ipv4_denied");
        assert_eq!(
            e.to_string(),
            "peer embeds IPv4 127.0.0.1 (teredo_client), which is denied: \
             peer is loopback (127.0.0.0/8, ::1)"
        );
    }
}
