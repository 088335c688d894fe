//! Sans-IO STUN/TURN: the wire codec ([`codec`]), the server state machine ([`server`]) and
//! the peer-address policy that keeps the relay from being an open proxy ([`policy`]).
//!
//! Nothing here reads a clock, opens a socket or spawns a task. Time comes in as an argument
//! (`now: Instant`), datagrams come in as byte slices, and everything the server wants done is
//! handed back: packets to send (`poll_transmit`), work for the I/O layer (`poll_event`) and the
//! next deadline (`poll_timeout`). The edge crate drives it with real sockets; the tests drive
//! it with a virtual clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod policy;
pub mod server;
