//! Allocate (RFC 8656 §7.2): checks, relay binding in two steps, and the success response.
//!
//! Binding a socket is I/O, so an Allocate that passes every check becomes a pending
//! allocation and an [`Event::BindRelay`] per address family. The I/O layer binds and calls
//! [`Server::handle_relay_bound`]; once every family has an answer, the allocation is made and
//! the success response (or 508) is queued.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::info;

use super::allocation::Allocation;
use super::{
    Auth, BoundRelay, Event, FiveTuple, PendingAllocation, Refusal, RelayRequest, RelayTransport,
    Seal, Server, Timer,
};

/// How long a reserved port waits for its Allocate (RFC 8656 §7.2: 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
use crate::codec::{attr, Family, Message, MessageType, Method, TransactionId};

impl Server {
    pub(super) fn allocate(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        fp: bool,
    ) -> Result<(), Refusal> {
        let txid = *msg.transaction_id();
        if let Some(&slot) = self.by_client.get(&from) {
            let a = self.slots[slot as usize].as_ref().expect("indexed");
            if a.allocate_txid == txid {
                // A retransmission of the request that made this allocation: answer again.
                let (relays, expires, reservation) = (a.relays.clone(), a.expires, a.reservation);
                let seal = Seal {
                    integrity: Some((auth.kind, &auth.key)),
                    fingerprint: fp,
                };
                self.allocate_success_with(
                    from,
                    txid,
                    &relays,
                    &[],
                    expires.saturating_duration_since(now),
                    seal,
                    reservation,
                );
                return Ok(());
            }
            return Err(Refusal::AllocationMismatch(
                "Allocation already exists for this 5-tuple",
            ));
        }
        if self.pending.values().any(|p| p.client == from) {
            // A retransmission while the relay socket is being bound: the answer will come.
            return Ok(());
        }
        let transport = match msg.get(attr::REQUESTED_TRANSPORT) {
            None => return Err(Refusal::BadRequest("Missing REQUESTED-TRANSPORT")),
            Some(v) if v.len() != 4 => {
                return Err(Refusal::BadRequest("Malformed REQUESTED-TRANSPORT"))
            }
            Some(v) => match v[0] {
                17 => RelayTransport::Udp,
                6 if from.transport.is_stream() => RelayTransport::Tcp,
                6 => {
                    return Err(Refusal::UnsupportedTransport(
                        "TCP relay needs a TCP or TLS client connection",
                    ))
                }
                _ => {
                    return Err(Refusal::UnsupportedTransport(
                        "Unsupported Transport Protocol",
                    ))
                }
            },
        };
        // EVEN-PORT: an even relay port, and with R = 1 the next port held for a second
        // Allocate that presents the RESERVATION-TOKEN (RTP/RTCP pairs, RFC 8656 §7.2).
        let (even_port, reserve_next) = match msg.get(attr::EVEN_PORT) {
            None => (false, false),
            Some([flags]) => (true, flags & 0x80 != 0),
            Some(_) => return Err(Refusal::BadRequest("Malformed EVEN-PORT")),
        };
        let use_reserved = match msg.get(attr::RESERVATION_TOKEN) {
            None => None,
            Some(_) if even_port => {
                return Err(Refusal::BadRequest("RESERVATION-TOKEN with EVEN-PORT"))
            }
            Some(_) if msg.get(attr::REQUESTED_ADDRESS_FAMILY).is_some() => {
                return Err(Refusal::BadRequest(
                    "RESERVATION-TOKEN with REQUESTED-ADDRESS-FAMILY",
                ))
            }
            Some(v) if v.len() == 8 => {
                let token = u64::from_be_bytes(v.try_into().expect("8"));
                match self.quota.reservation(token, now) {
                    Some(addr) if transport == RelayTransport::Udp => Some((token, addr)),
                    _ => {
                        return Err(Refusal::InsufficientCapacity(
                            "Unknown or expired RESERVATION-TOKEN",
                        ))
                    }
                }
            }
            Some(_) => return Err(Refusal::BadRequest("Malformed RESERVATION-TOKEN")),
        };
        if reserve_next && transport == RelayTransport::Tcp {
            return Err(Refusal::BadRequest(
                "EVEN-PORT reservation with a TCP relay",
            ));
        }
        let dont_fragment = msg.get(attr::DONT_FRAGMENT).is_some();
        if dont_fragment && transport == RelayTransport::Tcp {
            return Err(Refusal::BadRequest("DONT-FRAGMENT with a TCP relay"));
        }
        let requested = match msg.get(attr::REQUESTED_ADDRESS_FAMILY) {
            None => None,
            Some([f, 0, 0, 0]) => {
                Some(Family::from_u8(*f).map_err(|_| Refusal::AddressFamilyNotSupported)?)
            }
            Some(_) => return Err(Refusal::BadRequest("Malformed REQUESTED-ADDRESS-FAMILY")),
        };
        let additional = match msg.get(attr::ADDITIONAL_ADDRESS_FAMILY) {
            None => None,
            Some([2, 0, 0, 0]) => Some(Family::V6),
            Some(_) => {
                return Err(Refusal::BadRequest(
                    "ADDITIONAL-ADDRESS-FAMILY must be IPv6",
                ))
            }
        };
        if requested.is_some() && additional.is_some() {
            return Err(Refusal::BadRequest(
                "Both REQUESTED- and ADDITIONAL-ADDRESS-FAMILY",
            ));
        }
        let primary = requested.unwrap_or(Family::V4);
        if !self.config.relay_families.contains(&primary) {
            return Err(Refusal::AddressFamilyNotSupported);
        }
        let mut families = vec![primary];
        if (reserve_next || use_reserved.is_some())
            && (primary != Family::V4 || additional.is_some())
        {
            return Err(Refusal::BadRequest("Port reservations are IPv4 only"));
        }
        if additional.is_some() && transport == RelayTransport::Udp {
            families.push(Family::V6);
        }
        let lifetime = self.granted_lifetime(msg)?;
        self.quota
            .acquire(&auth.quota_user, self.config.max_allocations_per_user)?;
        let use_reserved = match use_reserved {
            // Another Allocate (on another shard, perhaps) may have redeemed it meanwhile.
            Some((t, _)) => match self.quota.take_reservation(t) {
                Some(addr) => Some((t, addr)),
                None => {
                    self.quota.release(&auth.quota_user);
                    return Err(Refusal::InsufficientCapacity(
                        "Unknown or expired RESERVATION-TOKEN",
                    ));
                }
            },
            None => None,
        };
        let token = self.next_token;
        self.next_token += 1;
        let mut parts = Vec::with_capacity(2);
        for family in families {
            if self.config.relay_families.contains(&family) {
                self.events.push_back(Event::BindRelay(RelayRequest {
                    token,
                    family,
                    transport,
                    even_port,
                    reserve_next,
                    use_reserved: use_reserved.map(|(_, addr)| addr),
                    dont_fragment,
                }));
                parts.push((family, None));
            } else {
                parts.push((family, Some(Err(()))));
            }
        }
        self.pending.insert(
            token,
            PendingAllocation {
                client: from,
                txid,
                auth_kind: auth.kind,
                key: auth.key.clone(),
                username: auth.username.clone(),
                quota_user: auth.quota_user.clone(),
                lifetime,
                transport,
                fingerprint: fp,
                parts,
                reserved: None,
            },
        );
        Ok(())
    }

    /// The lifetime to grant: at least the default, at most the maximum (RFC 8656 §7.2).
    pub(super) fn granted_lifetime(&self, msg: &Message<'_>) -> Result<Duration, Refusal> {
        let asked = msg
            .u32_attr(attr::LIFETIME)
            .map_err(|_| Refusal::BadRequest("Malformed LIFETIME"))?
            .map(|s| Duration::from_secs(u64::from(s)));
        Ok(asked
            .unwrap_or(self.config.default_lifetime)
            .clamp(self.config.default_lifetime, self.config.max_lifetime))
    }

    /// The I/O layer's answer to [`Event::BindRelay`]: the bound socket (and the held next
    /// port when [`RelayRequest::reserve_next`] was set), or `Err(())` when no socket could be
    /// had (ports exhausted, address gone).
    pub fn handle_relay_bound(
        &mut self,
        now: Instant,
        request: RelayRequest,
        result: Result<BoundRelay, ()>,
    ) {
        let (token, family) = (request.token, request.family);
        let Some(p) = self.pending.get_mut(&token) else {
            // The allocation was abandoned (client gone): give the sockets back.
            if let Ok(b) = result {
                for relay in std::iter::once(b.relay).chain(b.reserved) {
                    self.events.push_back(Event::ReleaseRelay {
                        relay,
                        transport: request.transport,
                    });
                }
            }
            return;
        };
        if let Ok(BoundRelay {
            reserved: Some(r), ..
        }) = result
        {
            p.reserved = Some(r);
        }
        if let Some(part) = p
            .parts
            .iter_mut()
            .find(|(f, r)| *f == family && r.is_none())
        {
            part.1 = Some(result.map(|b| b.relay));
        }
        if p.parts.iter().any(|(_, r)| r.is_none()) {
            return;
        }
        let p = self.pending.remove(&token).expect("present");
        self.finish_allocation(now, p);
    }

    fn finish_allocation(&mut self, now: Instant, p: PendingAllocation) {
        let typ = MessageType::new(Method::Allocate, crate::codec::Class::Request);
        let primary_ok = matches!(p.parts.first(), Some((_, Some(Ok(_)))));
        if !primary_ok {
            let bound = p.parts.iter().filter_map(|(_, r)| r.and_then(Result::ok));
            for relay in bound.chain(p.reserved) {
                self.events.push_back(Event::ReleaseRelay {
                    relay,
                    transport: p.transport,
                });
            }
            self.quota.release(&p.quota_user);
            info!(client = %p.client.client, "508: no relay address could be bound");
            self.respond_error(
                p.client,
                typ,
                p.txid,
                Refusal::InsufficientCapacity("No relay port available"),
                Some((p.auth_kind, &p.key)),
                p.fingerprint,
            );
            return;
        }
        let relays: Vec<SocketAddr> = p
            .parts
            .iter()
            .filter_map(|(_, r)| r.and_then(Result::ok))
            .collect();
        let failed: Vec<Family> = p
            .parts
            .iter()
            .filter(|(_, r)| matches!(r, Some(Err(()))))
            .map(|(f, _)| *f)
            .collect();
        let expires = now + p.lifetime;
        let reservation = p.reserved.map(|addr| self.reserve(now, addr));
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let allocation = Allocation {
            generation,
            client: p.client,
            relays: relays.clone(),
            transport: p.transport,
            username: p.username.clone(),
            quota_user: p.quota_user.clone(),
            key: p.key.clone(),
            allocate_txid: p.txid,
            reservation,
            expires,
            permissions: Vec::new(),
            channels: Vec::new(),
            connections: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(allocation);
                s
            }
            None => {
                self.slots.push(Some(allocation));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_client.insert(p.client, slot);
        for r in &relays {
            self.by_relay.insert(*r, slot);
        }
        self.timers.push(std::cmp::Reverse((
            expires,
            Timer::Allocation { slot, generation },
        )));
        self.stats.allocations_created += 1;
        self.stats.allocations_active += 1;
        info!(client = %p.client.client, relay = ?relays, user = %p.quota_user, lifetime = p.lifetime.as_secs(), "allocation created");
        let seal = Seal {
            integrity: Some((p.auth_kind, &p.key)),
            fingerprint: p.fingerprint,
        };
        self.allocate_success_with(
            p.client,
            p.txid,
            &relays,
            &failed,
            p.lifetime,
            seal,
            reservation,
        );
    }

    /// Holds `addr` for 30 s under a fresh unguessable token (RFC 8656 §7.2).
    fn reserve(&mut self, now: Instant, addr: SocketAddr) -> u64 {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.config.nonce_key)
            .expect("any key length");
        mac.update(b"cloudproxy-reservation-v1");
        mac.update(&self.next_token.to_be_bytes());
        mac.update(&[self.config.shard]);
        self.next_token += 1;
        let bytes = mac.finalize().into_bytes();
        let token = u64::from_be_bytes(bytes[..8].try_into().expect("8"));
        let expires = now + RESERVATION_LIFETIME;
        self.quota.reserve(token, addr, expires);
        self.timers
            .push(std::cmp::Reverse((expires, Timer::Reservation { token })));
        token
    }

    /// A reservation's time is up: release the held port unless an Allocate took it.
    pub(super) fn reservation_timeout(&mut self, now: Instant, token: u64) {
        if let Some(addr) = self.quota.take_expired_reservation(token, now) {
            self.events.push_back(Event::ReleaseRelay {
                relay: addr,
                transport: RelayTransport::Udp,
            });
        }
    }

    /// Queues the Allocate success (also the answer to a retransmission).
    #[allow(clippy::too_many_arguments)]
    fn allocate_success_with(
        &mut self,
        to: FiveTuple,
        txid: TransactionId,
        relays: &[SocketAddr],
        failed: &[Family],
        lifetime: Duration,
        seal: Seal<'_>,
        reservation: Option<u64>,
    ) {
        let typ = MessageType::new(Method::Allocate, crate::codec::Class::Request);
        let client = to.client;
        self.respond_success(to, typ, txid, seal, |b| {
            for r in relays {
                b.add_xor_address(attr::XOR_RELAYED_ADDRESS, *r);
            }
            for f in failed {
                // ADDRESS-ERROR-CODE (RFC 8656 §18.13): family, reserved, class, number, reason.
                let reason = b"Address Family not Supported";
                let mut v = Vec::with_capacity(4 + reason.len());
                v.extend_from_slice(&[f.to_u8(), 0, 4, 40]);
                v.extend_from_slice(reason);
                b.add(attr::ADDRESS_ERROR_CODE, &v);
            }
            b.add_u32(attr::LIFETIME, lifetime.as_secs() as u32);
            if let Some(token) = reservation {
                b.add(attr::RESERVATION_TOKEN, &token.to_be_bytes());
            }
            b.add_xor_address(attr::XOR_MAPPED_ADDRESS, client);
        });
    }

    /// Removes an allocation and everything hanging off it.
    pub(super) fn remove_allocation(&mut self, slot: u32) {
        let Some(a) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        self.by_client.remove(&a.client);
        for r in &a.relays {
            self.by_relay.remove(r);
            self.events.push_back(Event::ReleaseRelay {
                relay: *r,
                transport: a.transport,
            });
        }
        for id in &a.connections {
            if self.connections.remove(id).is_some() {
                self.events
                    .push_back(Event::CloseConnection { connection: *id });
            }
        }
        self.quota.release(&a.quota_user);
        self.stats.allocations_removed += 1;
        self.stats.allocations_active -= 1;
    }

    /// A TCP or TLS client connection ended: its allocation goes with it (RFC 8656 §2.2), and
    /// a data connection's peer connection is closed.
    pub fn handle_client_closed(&mut self, _now: Instant, client: FiveTuple) {
        let abandoned: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client == client)
            .map(|(&token, _)| token)
            .collect();
        for token in abandoned {
            // Sockets already bound for it go now; the others when their answer comes (see
            // `handle_relay_bound`). Its quota slot is given back.
            let p = self.pending.remove(&token).expect("present");
            let bound = p.parts.iter().filter_map(|(_, r)| r.and_then(Result::ok));
            for relay in bound.chain(p.reserved) {
                self.events.push_back(Event::ReleaseRelay {
                    relay,
                    transport: p.transport,
                });
            }
            self.quota.release(&p.quota_user);
        }
        if let Some(&slot) = self.by_client.get(&client) {
            self.remove_allocation(slot);
        }
    }
}
