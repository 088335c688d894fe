//! Lifetimes on the virtual clock: allocations (and Refresh), permissions (300 s) and channel
//! bindings (600 s). Deadlines are reached only through `poll_timeout` / `handle_timeout`.

mod common;

use std::time::Duration;

use common::*;
use turn_proto::codec::{attr, Method};
use turn_proto::server::{Event, Forward, RelayTransport};

const PEER: &str = "203.0.113.7:5000";
const MS: Duration = Duration::from_millis(1);

#[test]
fn allocation_expires_at_its_lifetime() {
    let mut h = Harness::new();
    // Start off the 30 s sweep grid so the allocation's own deadline is distinguishable.
    h.advance(secs(1));
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let expiry = h.at(secs(601));

    h.run_until(expiry - MS);
    assert_eq!(h.server.stats().allocations_active, 1);
    assert!(h.released().is_empty());
    assert!(h.server.owns_relay(relay));
    assert_eq!(
        h.server.poll_timeout(),
        Some(expiry),
        "poll_timeout names the expiry"
    );

    h.run_until(expiry);
    assert_eq!(h.fired.last(), Some(&expiry));
    assert_eq!(h.server.stats().allocations_active, 0);
    assert_eq!(h.server.stats().allocations_removed, 1);
    assert_eq!(h.released(), vec![relay]);
    assert_eq!(h.released_transport(relay), Some(RelayTransport::Udp));
    assert!(!h.server.owns_relay(relay));
    assert_eq!(h.quota.total(), 0);

    let r = h.refresh(&mut c, None);
    r.assert_error(Method::Refresh, 437);
    // Peer traffic to the released relay goes nowhere.
    let (_, f) = h.peer_datagram(relay, sa(PEER), b"late");
    assert_eq!(f, Forward::None);
}

#[test]
fn refresh_extends_the_allocation() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);

    h.advance_to(secs(500));
    let r = h.refresh(&mut c, None);
    r.assert_success(Method::Refresh);
    assert_eq!(r.lifetime(), Some(600));
    assert!(r.integrity_ok(&c.key()));

    h.advance_to(secs(1099));
    assert_eq!(h.server.stats().allocations_active, 1, "alive past 600 s");
    assert!(h.released().is_empty());
    h.advance_to(secs(1100));
    assert_eq!(h.server.stats().allocations_active, 0);
    assert_eq!(h.released(), vec![relay]);
}

#[test]
fn refresh_can_shorten_the_allocation() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let r = h.allocate_with(&mut c, |b| {
        b.add_u32(attr::LIFETIME, 3600);
    });
    assert_eq!(r.lifetime(), Some(3600));
    let relay = r.relayed();

    h.advance_to(secs(10));
    let r = h.refresh(&mut c, Some(700));
    r.assert_success(Method::Refresh);
    assert_eq!(r.lifetime(), Some(700));

    // The allocation now ends at 710 s, as the Refresh answer told the client, not at 3600 s.
    h.advance_to(secs(710) - MS);
    assert_eq!(h.server.stats().allocations_active, 1);
    h.advance_to(secs(710));
    assert_eq!(
        h.server.stats().allocations_active,
        0,
        "still alive after the lifetime the Refresh granted"
    );
    assert_eq!(h.released(), vec![relay]);
}

#[test]
fn refresh_with_zero_lifetime_deletes_at_once() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    h.advance_to(secs(5));

    let r = h.refresh(&mut c, Some(0));
    r.assert_success(Method::Refresh);
    assert_eq!(r.lifetime(), Some(0));
    assert!(r.integrity_ok(&c.key()));
    assert_eq!(h.released(), vec![relay]);
    assert_eq!(h.server.stats().allocations_active, 0);
    assert_eq!(h.quota.total(), 0);

    // Gone: a second Refresh is 437, and a new Allocate on the same flow works.
    let r = h.refresh(&mut c, None);
    r.assert_error(Method::Refresh, 437);
    h.allocate(&mut c);
    // The first allocation's timer must not take the second one down.
    h.advance_to(secs(600));
    assert_eq!(h.server.stats().allocations_active, 1);
}

#[test]
fn permission_expires_after_300_seconds_and_create_permission_refreshes_it() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);

    h.advance_to(secs(300) - MS);
    let (_, f) = h.peer_datagram(relay, peer, b"still");
    assert!(matches!(f, Forward::ToClient { .. }), "{f:?}");
    h.advance_to(secs(300));
    let (_, f) = h.peer_datagram(relay, peer, b"expired");
    assert_eq!(f, Forward::None);
    let (_, f) = h.send_indication(&c, peer, b"out");
    assert_eq!(f, Forward::None, "no permission, no Send either");

    // Re-installed at 300 s; refreshed at 500 s, so it lasts until 800 s.
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    h.advance_to(secs(500));
    h.refresh(&mut c, None).assert_success(Method::Refresh); // keep the allocation
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    h.advance_to(secs(799));
    let (_, f) = h.peer_datagram(relay, peer, b"refreshed");
    assert!(matches!(f, Forward::ToClient { .. }), "{f:?}");
    h.advance_to(secs(800));
    let (_, f) = h.peer_datagram(relay, peer, b"expired again");
    assert_eq!(f, Forward::None);
}

#[test]
fn channel_expires_after_600_seconds() {
    let mut h = Harness::new();
    let mut c = Client::alice(udp(1));
    let relay = h.allocate(&mut c);
    let peer = sa(PEER);
    h.channel_bind(&mut c, 0x4000, peer)
        .assert_success(Method::ChannelBind);

    // Keep the permission (300 s from ChannelBind) and the allocation alive past 600 s so
    // only the channel can expire.
    h.advance_to(secs(250));
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    h.advance_to(secs(500));
    h.create_permission(&mut c, &[peer])
        .assert_success(Method::CreatePermission);
    h.refresh(&mut c, None).assert_success(Method::Refresh);

    h.advance_to(secs(600) - MS);
    let (_, f) = h.channel_data(&c, 0x4000, b"on time");
    assert_eq!(
        f,
        Forward::ToPeer {
            relay,
            peer,
            range: 4..11
        }
    );
    let (buf, f) = h.peer_datagram(relay, peer, b"back");
    assert_eq!(&Harness::forwarded(&f, &buf)[..2], &[0x40, 0x00]);

    h.advance_to(secs(600));
    let dropped = h.server.stats().dropped_no_route;
    let (_, f) = h.channel_data(&c, 0x4000, b"too late");
    assert_eq!(f, Forward::None);
    assert_eq!(h.server.stats().dropped_no_route, dropped + 1);
    // The permission lives on: peer data now comes as a Data indication.
    let (buf, f) = h.peer_datagram(relay, peer, b"back");
    let bytes = Harness::forwarded(&f, &buf).to_vec();
    let r = Response { bytes };
    assert_eq!(
        r.message_type(),
        turn_proto::codec::MessageType::new(Method::Data, turn_proto::codec::Class::Indication)
    );
    assert_eq!(r.get(attr::DATA).as_deref(), Some(&b"back"[..]));

    // The allocation itself is fine.
    assert_eq!(h.server.stats().allocations_active, 1);
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Event::ReleaseRelay { .. })));
}
