//! The firewall whitelist an enterprise opens for an App ID (ARCHITECTURE §2, §6).
//!
//! [`entries`] computes the rules from the App ID's settings and the live edges of its pool;
//! [`render`] prints them for whoever applies them: a table for an IT ticket, CSV and JSON for
//! tooling, and ready-to-apply nftables and iptables rule sets that allow exactly the whitelist
//! (plus loopback and replies) and drop everything else.
//!
//! Moving an App ID from test to production changes its pool, hence its whitelist; the client
//! code does not change.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::IpAddr;

use control_api::{App, EdgeHeartbeat, Ports, TransportMode, WhitelistEntry, WhitelistFormat};

/// Purpose of the control plane's proxy-info API entry.
pub const PURPOSE_CONTROL: &str = "proxy-info API (HTTPS)";
/// Purpose of an edge's UDP TURN port range.
pub const PURPOSE_TURN_UDP: &str = "TURN media (UDP)";
/// Purpose of an edge's TCP TURN port range.
pub const PURPOSE_TURN_TCP: &str = "TURN media (TCP)";
/// Purpose of an edge's TLS port (TURN over TLS and WSS signalling, demultiplexed).
pub const PURPOSE_TLS: &str = "TLS: TURN-TLS and WSS signalling";
/// Purpose of an edge's plain signalling relay port.
pub const PURPOSE_SIGNAL: &str = "signalling relay (TCP)";

/// The whitelist of `app`: what its clients must be allowed to reach.
///
/// - First the control plane: each `(address, port)` of `control` as TCP ([`PURPOSE_CONTROL`]),
///   in the order given.
/// - Then every edge of `edges` whose pool is `app.pool` (the caller passes the live ones),
///   sorted by address (IP addresses numerically, IPv4 first, then host names), ties by edge
///   id. Per edge:
///   - UDP `udp_ports` ([`PURPOSE_TURN_UDP`]) if the app enables [`TransportMode::Udp`];
///   - TCP `tcp_ports` ([`PURPOSE_TURN_TCP`]) if it enables [`TransportMode::Tcp`];
///   - TCP `tls_port` ([`PURPOSE_TLS`]) whenever the edge has one, whatever the modes: mode 5
///     carries everything on it, and in modes 3 and 4 a browser on an `https://` page can only
///     signal over WSS (mixed-content rules forbid `ws://` there), so the web SDK signals on the
///     TLS port while its media uses the mode's UDP or TCP ports;
///   - TCP `signal_port` ([`PURPOSE_SIGNAL`]) if the edge has one and the app enables `Udp` or
///     `Tcp`: those modes carry signalling over the plain relay, while `Tls` carries it as WSS
///     on the TLS port, so a TLS-only App ID does not open it.
/// - Identical `(protocol, address, ports)` rules are kept once (the first, so the control
///   plane's purpose wins over an edge sharing its address and port).
pub fn entries(
    app: &App,
    edges: &[EdgeHeartbeat],
    control: &[(String, u16)],
) -> Vec<WhitelistEntry> {
    let mut out: Vec<WhitelistEntry> = Vec::new();
    let mut push = |protocol: &str, address: &str, ports: Ports, purpose: &str| {
        let dup = out
            .iter()
            .any(|e| e.protocol == protocol && e.address == address && e.ports == ports);
        if !dup {
            out.push(WhitelistEntry {
                protocol: protocol.to_owned(),
                address: address.to_owned(),
                ports,
                purpose: purpose.to_owned(),
            });
        }
    };
    for (address, port) in control {
        push("tcp", address, single(*port), PURPOSE_CONTROL);
    }

    let has = |m: TransportMode| app.modes.contains(&m);
    let mut pool: Vec<&EdgeHeartbeat> = edges.iter().filter(|e| e.pool == app.pool).collect();
    pool.sort_by(|a, b| cmp_address(&a.address, &b.address).then_with(|| a.id.cmp(&b.id)));
    for e in pool {
        if has(TransportMode::Udp) {
            push("udp", &e.address, e.udp_ports, PURPOSE_TURN_UDP);
        }
        if has(TransportMode::Tcp) {
            push("tcp", &e.address, e.tcp_ports, PURPOSE_TURN_TCP);
        }
        if let Some(p) = e.tls_port {
            push("tcp", &e.address, single(p), PURPOSE_TLS);
        }
        if let (true, Some(p)) = (
            has(TransportMode::Udp) || has(TransportMode::Tcp),
            e.signal_port,
        ) {
            push("tcp", &e.address, single(p), PURPOSE_SIGNAL);
        }
    }
    out
}

/// Renders `entries` for `app_id` in `format`. The text always ends with a newline.
///
/// - [`WhitelistFormat::Table`]: aligned columns `Protocol`, `Destination`, `Ports`, `Purpose`
///   under a title line, for pasting into a ticket.
/// - [`WhitelistFormat::Csv`]: header `protocol,address,ports,purpose`; ports as `A-B` or `A`;
///   fields with `,`, `"` or line breaks quoted (RFC 4180).
/// - [`WhitelistFormat::Json`]: a pretty-printed array of [`WhitelistEntry`].
/// - [`WhitelistFormat::Nftables`]: a complete ruleset for `nft -f FILE`: one `inet` table
///   named `cloudproxy_<app id>` whose `output` chain accepts replies, loopback, IPv6 neighbour
///   discovery and the whitelist, and drops the rest; its `input` chain accepts only replies,
///   loopback and neighbour discovery. Re-applying the file replaces the table.
/// - [`WhitelistFormat::Iptables`]: the same policy as `iptables`/`ip6tables` commands.
///
/// In the two firewall formats, an entry whose address is a host name (not an IP address),
/// whose protocol is neither `udp` nor `tcp`, or whose port range is reversed cannot become a
/// rule; it is written as a `# resolve HOST and allow ...` (or `# skipped ...`) comment line.
pub fn render(app_id: &str, entries: &[WhitelistEntry], format: WhitelistFormat) -> String {
    match format {
        WhitelistFormat::Table => render_table(app_id, entries),
        WhitelistFormat::Csv => render_csv(entries),
        WhitelistFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(entries).expect("whitelist entries always serialize");
            s.push('\n');
            s
        }
        WhitelistFormat::Nftables => render_nftables(app_id, entries),
        WhitelistFormat::Iptables => render_iptables(app_id, entries),
    }
}

fn single(port: u16) -> Ports {
    Ports {
        first: port,
        last: port,
    }
}

/// IP addresses first (numerically, IPv4 before IPv6), then host names alphabetically.
fn cmp_address(a: &str, b: &str) -> Ordering {
    match (parse_ip(a), parse_ip(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// An IP address, also written as `[v6]`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// Text that goes on one line of output: control characters (a newline would start a rule of
/// its own) become `?`.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Text inside a double-quoted nft string or shell word: printable ASCII without the
/// characters either would interpret (`"`, `\`, `$`, `` ` ``), capped at 120 bytes (nft
/// allows 128 in a comment).
fn quoted_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '$' | '`' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    out.truncate(120);
    out
}

fn display_ports(p: Ports) -> String {
    p.to_string()
}

fn render_table(app_id: &str, entries: &[WhitelistEntry]) -> String {
    const HEADERS: [&str; 4] = ["Protocol", "Destination", "Ports", "Purpose"];
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            [
                one_line(&e.protocol.to_ascii_uppercase()),
                one_line(&e.address),
                display_ports(e.ports),
                one_line(&e.purpose),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 3 {
                s.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(s, "{cell}{}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = format!(
        "Firewall whitelist for App ID {}: allow outbound connections from clients to\n\n",
        one_line(app_id)
    );
    out.push_str(&line(HEADERS));
    let rule = widths.map(|w| "-".repeat(w));
    out.push_str(&line([&rule[0], &rule[1], &rule[2], &rule[3]]));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    if rows.is_empty() {
        out.push_str("(no entries: the App ID's pool has no live edges)\n");
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn render_csv(entries: &[WhitelistEntry]) -> String {
    let mut out = String::from("protocol,address,ports,purpose\n");
    for e in entries {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            csv_field(&e.protocol),
            csv_field(&e.address),
            display_ports(e.ports),
            csv_field(&e.purpose)
        );
    }
    out
}

/// An entry as a firewall rule: `Ok((ip, protocol))` or `Err(comment line)`.
fn firewall_target(e: &WhitelistEntry, port_sep: char) -> Result<(IpAddr, &'static str), String> {
    let ports = if e.ports.first == e.ports.last {
        e.ports.first.to_string()
    } else {
        format!("{}{port_sep}{}", e.ports.first, e.ports.last)
    };
    let proto = match e.protocol.to_ascii_lowercase().as_str() {
        "udp" => "udp",
        "tcp" => "tcp",
        other => {
            return Err(format!(
                "# skipped: unsupported protocol {} to {} port {ports} ({})",
                quoted_safe(other),
                quoted_safe(&e.address),
                quoted_safe(&e.purpose)
            ))
        }
    };
    if e.ports.first > e.ports.last {
        return Err(format!(
            "# skipped: reversed port range {proto} {}-{} to {} ({})",
            e.ports.first,
            e.ports.last,
            quoted_safe(&e.address),
            quoted_safe(&e.purpose)
        ));
    }
    match parse_ip(&e.address) {
        Some(ip) => Ok((ip, proto)),
        None => Err(format!(
            "# resolve {} and allow {proto} port {ports} to each of its addresses ({})",
            quoted_safe(&e.address),
            quoted_safe(&e.purpose)
        )),
    }
}

/// `cloudproxy_` and the App ID with everything but ASCII letters, digits and `_` turned into
/// `_`, capped so the name stays well inside nft's limit.
fn nft_table_name(app_id: &str) -> String {
    let id: String = app_id
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("cloudproxy_{id}")
}

fn render_nftables(app_id: &str, entries: &[WhitelistEntry]) -> String {
    let table = nft_table_name(app_id);
    let mut out = String::new();
    let _ = write!(
        out,
        "#!/usr/sbin/nft -f
# cloudproxy firewall whitelist for App ID {id}
#
# Allows outbound traffic from this host ONLY to the cloudproxy addresses below, plus
# loopback, IPv6 neighbour discovery and replies to connections this host opened. It BLOCKS
# EVERYTHING ELSE, in both directions (policy drop) - DNS included: add your resolver if
# clients must resolve a host name listed here.
#
# Check:  nft -c -f FILE
# Apply:  nft -f FILE        (re-applying replaces the table)
# Remove: nft delete table inet {table}

table inet {table}
delete table inet {table}

table inet {table} {{
\tchain output {{
\t\ttype filter hook output priority 0; policy drop;
\t\tct state established,related accept
\t\toif \"lo\" accept
\t\ticmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
",
        id = quoted_safe(app_id),
    );
    for e in entries {
        match firewall_target(e, '-') {
            Ok((ip, proto)) => {
                let family = if ip.is_ipv4() { "ip" } else { "ip6" };
                let _ = writeln!(
                    out,
                    "\t\t{family} daddr {ip} {proto} dport {} counter accept comment \"{}\"",
                    display_ports(e.ports),
                    quoted_safe(&e.purpose)
                );
            }
            Err(comment) => {
                let _ = writeln!(out, "\t\t{comment}");
            }
        }
    }
    out.push_str(
        "\t}

\tchain input {
\t\ttype filter hook input priority 0; policy drop;
\t\tct state established,related accept
\t\tiif \"lo\" accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
\t}
}
",
    );
    out
}

fn render_iptables(app_id: &str, entries: &[WhitelistEntry]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "#!/bin/sh
# cloudproxy firewall whitelist for App ID {id}: iptables (IPv4) and ip6tables (IPv6).
#
# Allows outbound traffic from this host ONLY to the cloudproxy addresses below, plus
# loopback, IPv6 neighbour discovery and replies to connections this host opened. The last
# lines set the INPUT and OUTPUT policies to DROP: this BLOCKS EVERYTHING ELSE, DNS included.
# The rules are appended (-A): start from empty chains (iptables -F INPUT; iptables -F OUTPUT;
# and the same with ip6tables), or review how they combine with yours.
#
# Apply as root: sh FILE

iptables -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A OUTPUT -o lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -i lo -j ACCEPT
ip6tables -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A OUTPUT -o lo -j ACCEPT
ip6tables -A OUTPUT -p icmpv6 --icmpv6-type neighbour-solicitation -j ACCEPT
ip6tables -A OUTPUT -p icmpv6 --icmpv6-type neighbour-advertisement -j ACCEPT
ip6tables -A OUTPUT -p icmpv6 --icmpv6-type router-solicitation -j ACCEPT
ip6tables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A INPUT -i lo -j ACCEPT
ip6tables -A INPUT -p icmpv6 --icmpv6-type neighbour-solicitation -j ACCEPT
ip6tables -A INPUT -p icmpv6 --icmpv6-type neighbour-advertisement -j ACCEPT
ip6tables -A INPUT -p icmpv6 --icmpv6-type router-advertisement -j ACCEPT

",
        id = quoted_safe(app_id),
    );
    for e in entries {
        match firewall_target(e, ':') {
            Ok((ip, proto)) => {
                let cmd = if ip.is_ipv4() {
                    "iptables"
                } else {
                    "ip6tables"
                };
                let ports = if e.ports.first == e.ports.last {
                    e.ports.first.to_string()
                } else {
                    format!("{}:{}", e.ports.first, e.ports.last)
                };
                let _ = writeln!(
                    out,
                    "{cmd} -A OUTPUT -p {proto} -d {ip} --dport {ports} -m comment --comment \"{}\" -j ACCEPT",
                    quoted_safe(&e.purpose)
                );
            }
            Err(comment) => {
                let _ = writeln!(out, "{comment}");
            }
        }
    }
    out.push_str(
        "
iptables -P OUTPUT DROP
iptables -P INPUT DROP
ip6tables -P OUTPUT DROP
ip6tables -P INPUT DROP
",
    );
    out
}
