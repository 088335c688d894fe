//! Requests on an existing allocation: Refresh, CreatePermission, ChannelBind (RFC 8656 §7–§11),
//! and the Data indication written in place for peer datagrams.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use super::allocation::Channel;
use super::{Auth, FiveTuple, Refusal, RelayTransport, Seal, Server, Timer, PEER_HEADROOM};
use crate::codec::{
    attr, encode_xor_address, Message, MessageType, Method, CHANNEL_MAX, CHANNEL_MIN, MAGIC_COOKIE,
};

impl Server {
    /// Refresh, CreatePermission, ChannelBind and Connect all need this 5-tuple's allocation.
    pub(super) fn on_allocation(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        seal: Seal<'_>,
    ) -> Result<(), Refusal> {
        let typ = msg.message_type();
        let Some(&slot) = self.by_client.get(&from) else {
            return Err(Refusal::AllocationMismatch(
                "No allocation for this 5-tuple",
            ));
        };
        let txid = *msg.transaction_id();
        match typ.method {
            Method::Refresh => {
                let asked = msg
                    .u32_attr(attr::LIFETIME)
                    .map_err(|_| Refusal::BadRequest("Malformed LIFETIME"))?;
                if asked == Some(0) {
                    debug!(client = %from.client, "allocation deleted by Refresh(0)");
                    self.remove_allocation(slot);
                    self.respond_success(from, typ, txid, seal, |b| {
                        b.add_u32(attr::LIFETIME, 0);
                    });
                    return Ok(());
                }
                let lifetime = self.granted_lifetime(msg)?;
                let a = self.slots[slot as usize].as_mut().expect("indexed");
                let (old, generation) = (a.expires, a.generation);
                a.expires = now + lifetime;
                // The allocation timer re-arms itself when it finds a later expiry; an earlier
                // one (a Refresh may shorten the lifetime) needs a timer of its own.
                if a.expires < old {
                    self.timers
                        .push(Reverse((a.expires, Timer::Allocation { slot, generation })));
                }
                self.respond_success(from, typ, txid, seal, |b| {
                    b.add_u32(attr::LIFETIME, lifetime.as_secs() as u32);
                });
                Ok(())
            }
            Method::CreatePermission => {
                let mut peers: [Option<SocketAddr>; 8] = [None; 8];
                let mut n = 0;
                for peer in msg.xor_addresses(attr::XOR_PEER_ADDRESS) {
                    let peer =
                        peer.map_err(|_| Refusal::BadRequest("Malformed XOR-PEER-ADDRESS"))?;
                    if n == peers.len() {
                        return Err(Refusal::BadRequest("Too many XOR-PEER-ADDRESS attributes"));
                    }
                    // Permissions are per IP (RFC 8656 §9): the port in the attribute is ignored.
                    peers[n] = Some(self.check_peer_ip(from, slot, peer)?);
                    n += 1;
                }
                if n == 0 {
                    return Err(Refusal::BadRequest("Missing XOR-PEER-ADDRESS"));
                }
                let until = now + self.config.permission_lifetime;
                let max = self.config.max_permissions_per_allocation;
                let a = self.slots[slot as usize].as_mut().expect("indexed");
                // All or nothing (RFC 8656 §9.2): check capacity before installing any.
                let mut probe = a.permissions.clone();
                probe.retain(|p| p.expires > now);
                // Each new IP once, however many times (and with whatever ports) it is named.
                let new = peers[..n]
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter(|&(i, p)| {
                        !probe.iter().any(|q| q.ip == p.ip())
                            && !peers[..i].iter().flatten().any(|q| q.ip() == p.ip())
                    })
                    .count();
                if probe.len() + new > max {
                    return Err(Refusal::InsufficientCapacity("Too many permissions"));
                }
                for p in peers[..n].iter().flatten() {
                    a.permit(p.ip(), until, now, max);
                }
                self.respond_success(from, typ, txid, seal, |_| {});
                Ok(())
            }
            Method::ChannelBind => {
                let number = match msg.get(attr::CHANNEL_NUMBER) {
                    Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
                    _ => return Err(Refusal::BadRequest("Missing or malformed CHANNEL-NUMBER")),
                };
                if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
                    return Err(Refusal::BadRequest("Channel number out of range"));
                }
                let peer = match msg.xor_address(attr::XOR_PEER_ADDRESS) {
                    Ok(Some(p)) => p,
                    _ => return Err(Refusal::BadRequest("Missing or malformed XOR-PEER-ADDRESS")),
                };
                let peer = self.check_peer(from, slot, peer)?;
                let (perm_until, chan_until) = (
                    now + self.config.permission_lifetime,
                    now + self.config.channel_lifetime,
                );
                let (max_ch, max_perm) = (
                    self.config.max_channels_per_allocation,
                    self.config.max_permissions_per_allocation,
                );
                let a = self.slots[slot as usize].as_mut().expect("indexed");
                if a.transport != RelayTransport::Udp {
                    return Err(Refusal::BadRequest("ChannelBind on a TCP allocation"));
                }
                // The number must not be bound to another peer, nor the peer to another number.
                let by_number = a.channels.iter().position(|c| c.number == number);
                let by_peer = a.channels.iter().position(|c| c.peer == peer);
                let existing = match (by_number, by_peer) {
                    (Some(i), Some(j)) if i == j => Some(i),
                    (None, None) => {
                        a.channels.retain(|c| c.expires > now);
                        if a.channels.len() >= max_ch {
                            return Err(Refusal::InsufficientCapacity("Too many channels"));
                        }
                        None
                    }
                    _ => {
                        return Err(Refusal::BadRequest(
                            "Channel or peer already bound differently",
                        ))
                    }
                };
                // Permission first: a refused request must leave no channel behind.
                if !a.permit(peer.ip(), perm_until, now, max_perm) {
                    return Err(Refusal::InsufficientCapacity("Too many permissions"));
                }
                match existing {
                    Some(i) => a.channels[i].expires = chan_until,
                    None => {
                        // One more slot only (see `Allocation::permit`).
                        a.channels.reserve_exact(1);
                        a.channels.push(Channel {
                            number,
                            peer,
                            expires: chan_until,
                        })
                    }
                }
                self.respond_success(from, typ, txid, seal, |_| {});
                Ok(())
            }
            Method::Connect => self.connect(now, from, slot, msg, auth, seal),
            _ => Err(Refusal::BadRequest("Unknown method")),
        }
    }

    /// Policy, then family: the peer must be allowed (403) and reachable from one of the
    /// allocation's relay addresses (443). Returns the canonical peer address.
    pub(super) fn check_peer(
        &mut self,
        from: FiveTuple,
        slot: u32,
        peer: SocketAddr,
    ) -> Result<SocketAddr, Refusal> {
        self.check_peer_with(from, slot, peer, true)
    }

    /// As [`Self::check_peer`] for CreatePermission, where only the IP counts.
    pub(super) fn check_peer_ip(
        &mut self,
        from: FiveTuple,
        slot: u32,
        peer: SocketAddr,
    ) -> Result<SocketAddr, Refusal> {
        self.check_peer_with(from, slot, peer, false)
    }

    fn check_peer_with(
        &mut self,
        from: FiveTuple,
        slot: u32,
        peer: SocketAddr,
        with_port: bool,
    ) -> Result<SocketAddr, Refusal> {
        let checked = if with_port {
            self.policy.check(peer)
        } else {
            self.policy
                .check_ip(peer.ip())
                .map(|ip| SocketAddr::new(ip, peer.port()))
        };
        let canonical = match checked {
            Ok(p) => p,
            Err(why) => {
                info!(client = %from.client, %peer, reason = why.reason(), "403: peer denied by policy");
                return Err(Refusal::Forbidden("Forbidden peer address"));
            }
        };
        let a = self.slots[slot as usize].as_ref().expect("indexed");
        if a.relay_for(canonical).is_none() {
            return Err(Refusal::PeerAddressFamilyMismatch);
        }
        Ok(canonical)
    }
}

/// Writes a Data indication header for a payload at `buf[PEER_HEADROOM..PEER_HEADROOM + len]`
/// into the headroom and returns where the message starts. The transaction id is derived from
/// the payload length and peer so no RNG is needed; indications are never matched to anything.
pub(super) fn write_data_indication(peer: SocketAddr, buf: &mut [u8], len: usize) -> usize {
    let mut xor = [0u8; 20];
    let mut txid = [0u8; 12];
    txid[..2].copy_from_slice(&peer.port().to_be_bytes());
    txid[2..6].copy_from_slice(&(len as u32).to_be_bytes());
    let xor_len = encode_xor_address(peer, &txid, &mut xor);
    let header = 20 + 4 + xor_len + 4;
    let start = PEER_HEADROOM - header;
    let padded = (len + 3) & !3;
    let body = 4 + xor_len + 4 + padded;
    let typ = MessageType::new(Method::Data, crate::codec::Class::Indication).to_u16();
    let h = &mut buf[start..PEER_HEADROOM];
    h[0..2].copy_from_slice(&typ.to_be_bytes());
    h[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(&txid);
    h[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    h[22..24].copy_from_slice(&(xor_len as u16).to_be_bytes());
    h[24..24 + xor_len].copy_from_slice(&xor[..xor_len]);
    let d = 24 + xor_len;
    h[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    start
}
