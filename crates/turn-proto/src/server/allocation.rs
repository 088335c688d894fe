//! One allocation: its relayed addresses, permissions and channel bindings (RFC 8656 §2.2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::codec::{LongTermKey, TransactionId};

use super::FiveTuple;

/// Transport between the edge and peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTransport {
    /// UDP relay (RFC 8656).
    Udp,
    /// TCP relay (RFC 6062).
    Tcp,
}

#[derive(Debug, Clone)]
pub(crate) struct Permission {
    pub(crate) ip: IpAddr,
    pub(crate) expires: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub(crate) number: u16,
    pub(crate) peer: SocketAddr,
    pub(crate) expires: Instant,
}

#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) generation: u32,
    pub(crate) client: FiveTuple,
    /// Relayed transport addresses, at most one per family.
    pub(crate) relays: Vec<SocketAddr>,
    pub(crate) transport: RelayTransport,
    pub(crate) username: Arc<str>,
    pub(crate) quota_user: Arc<str>,
    pub(crate) key: LongTermKey,
    pub(crate) allocate_txid: TransactionId,
    /// The RESERVATION-TOKEN the Allocate success carried (EVEN-PORT R = 1), repeated in the
    /// answer to a retransmitted Allocate.
    pub(crate) reservation: Option<u64>,
    pub(crate) expires: Instant,
    pub(crate) permissions: Vec<Permission>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) connections: Vec<u32>,
}

impl Allocation {
    pub(crate) fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }

    /// Installs or refreshes a permission; false when the table is full.
    pub(crate) fn permit(&mut self, ip: IpAddr, until: Instant, now: Instant, max: usize) -> bool {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = until;
            return true;
        }
        self.permissions.retain(|p| p.expires > now);
        if self.permissions.len() >= max {
            return false;
        }
        // Exactly one more slot: most allocations hold one or two permissions for their whole
        // life, and Vec's first growth to 4 would cost every idle allocation ~100 bytes.
        self.permissions.reserve_exact(1);
        self.permissions.push(Permission { ip, expires: until });
        true
    }

    pub(crate) fn channel_by_number(&self, number: u16, now: Instant) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
    }

    pub(crate) fn channel_by_peer(&self, peer: SocketAddr, now: Instant) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
    }

    pub(crate) fn relay_for(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.relays
            .iter()
            .copied()
            .find(|r| r.is_ipv4() == peer.is_ipv4())
    }

    /// Drops expired permissions and channels; returns the earliest remaining deadline.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires > now);
    }
}
