//! What every shard of an edge shares: allocation counts, and the relay ports held under a
//! RESERVATION-TOKEN (the Allocate that redeems one comes from another client socket, which
//! the kernel may hand to any shard).
//!
//! Only Allocate and allocation removal touch this, never the packet path, so a mutex that
//! crosses cores is fine here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Refusal;

/// Edge-wide allocation counts: the total and per user.
#[derive(Debug)]
pub struct SharedQuota {
    max_total: usize,
    total: AtomicUsize,
    /// Draining: no new allocation (existing ones keep refreshing and relaying).
    closed: AtomicBool,
    per_user: Mutex<HashMap<String, u32>>,
    /// RESERVATION-TOKEN → the held relay port and when the hold ends.
    reservations: Mutex<HashMap<u64, (SocketAddr, Instant)>>,
}

impl SharedQuota {
    /// A ledger allowing at most `max_total` allocations on the edge.
    pub fn new(max_total: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            total: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            per_user: Mutex::new(HashMap::new()),
            reservations: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one allocation slot for `user`, or says which limit stops it.
    pub(crate) fn acquire(&self, user: &str, max_per_user: u32) -> Result<(), Refusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refusal::InsufficientCapacity(
                "edge draining: allocate on another edge",
            ));
        }
        let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let n = users.get(user).copied().unwrap_or(0);
        if n >= max_per_user {
            return Err(Refusal::AllocationQuotaReached);
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::InsufficientCapacity(
                "edge allocation limit reached",
            ));
        }
        users.insert(user.to_owned(), n + 1);
        Ok(())
    }

    /// Gives back a slot taken by [`Self::acquire`].
    pub(crate) fn release(&self, user: &str) {
        let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Users (REST sessions or static users) holding allocations now. The edge reports these
    /// to the control plane, which keeps their sessions' quota leases alive.
    pub fn users(&self) -> Vec<String> {
        self.per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Stops new allocations on every shard (508, "edge draining"), for a graceful stop:
    /// allocations already made keep refreshing and relaying until they end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Allocations on the edge now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Records a port held under `token` until `expires`.
    pub(crate) fn reserve(&self, token: u64, addr: SocketAddr, expires: Instant) {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (addr, expires));
    }

    /// The port held under `token`, if the hold is still on at `now`.
    pub(crate) fn reservation(&self, token: u64, now: Instant) -> Option<SocketAddr> {
        let r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        r.get(&token)
            .filter(|(_, expires)| *expires > now)
            .map(|(addr, _)| *addr)
    }

    /// Ends the hold under `token` (redeemed) and says which port it held; `None` if it had
    /// already ended (another shard redeemed it first).
    pub(crate) fn take_reservation(&self, token: u64) -> Option<SocketAddr> {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token)
            .map(|(addr, _)| addr)
    }

    /// Ends the hold under `token` if its time is up at `now`, and says which port it held.
    pub(crate) fn take_expired_reservation(&self, token: u64, now: Instant) -> Option<SocketAddr> {
        let mut r = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        match r.get(&token) {
            Some(&(_, expires)) if expires <= now => r.remove(&token).map(|(addr, _)| addr),
            _ => None,
        }
    }
}
