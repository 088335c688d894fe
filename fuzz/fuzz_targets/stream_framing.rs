//! A TURN-over-TCP reader: the input's first bytes choose chunk sizes, the rest is the byte
//! stream. Chunks are appended to a buffer and `frame_len` is looped as a real reader would,
//! parsing each complete frame. The reader must never panic or loop forever, must never hold
//! more than one maximum-size frame without deciding, and must see exactly the same frames (and
//! the same point of failure) as a reader handed the whole stream at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_proto::codec::{frame_len, ChannelData, DecodeError, FrameKind, Message, HEADER_LEN};

/// Largest frame: STUN 20 + 65,532 bytes (ChannelData: 4 + 65,536 with padding).
const MAX_FRAME: usize = HEADER_LEN + 0xFFFC;

#[derive(Debug, PartialEq)]
enum Event {
    Stun(Vec<u8>, bool),
    ChannelData(u16, Vec<u8>),
    Fatal(DecodeError),
}

/// Feeds `chunks` to a reader; returns what it saw.
fn read<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        // Each turn of the loop consumes at least 4 bytes or stops, so it ends; the bound
        // makes a regression a crash instead of a hang.
        let max_turns = buf.len() / 4 + 1;
        let mut turns = 0;
        loop {
            turns += 1;
            assert!(turns <= max_turns, "frame loop does not make progress");
            match frame_len(&buf) {
                Ok(Some((kind, len))) => {
                    assert!(len >= 4 && len <= buf.len(), "{kind:?} frame of {len}");
                    let frame = &buf[..len];
                    match kind {
                        FrameKind::Stun => {
                            assert!(len >= HEADER_LEN);
                            match Message::decode(frame) {
                                Ok(m) => {
                                    events.push(Event::Stun(frame.to_vec(), m.has_fingerprint()));
                                }
                                // A malformed STUN message is answered or dropped; the stream
                                // stays in sync because the frame length was valid.
                                Err(e) => {
                                    assert!(
                                        !matches!(
                                            e,
                                            DecodeError::Truncated { .. }
                                                | DecodeError::TrailingBytes { .. }
                                                | DecodeError::UnalignedLength(_)
                                                | DecodeError::NotStun(_)
                                        ),
                                        "frame_len and decode disagree on framing: {e}"
                                    );
                                    events.push(Event::Stun(frame.to_vec(), false));
                                }
                            }
                        }
                        FrameKind::ChannelData => {
                            let cd = ChannelData::decode(frame)
                                .unwrap_or_else(|e| panic!("framed ChannelData rejected: {e}"));
                            events.push(Event::ChannelData(cd.channel, cd.data.to_vec()));
                        }
                    }
                    buf.drain(..len);
                }
                Ok(None) => {
                    assert!(
                        buf.len() < MAX_FRAME,
                        "{} bytes buffered, undecided",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    // No way to resynchronise a byte stream: the connection is closed.
                    events.push(Event::Fatal(e));
                    return events;
                }
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // Chunk sizes from a tiny PRNG: 1..=64 bytes, with some one-byte dribbles.
    let mut state = u32::from(seed) | 1;
    let mut sizes = std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some(if state & 3 == 0 {
            1
        } else {
            (state >> 8) as usize % 64 + 1
        })
    });
    let mut rest = stream;
    let chunks = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        let n = sizes.next().unwrap().min(rest.len());
        let (c, r) = rest.split_at(n);
        rest = r;
        Some(c)
    });

    let chunked = read(chunks);
    let whole = read(std::iter::once(stream));
    assert_eq!(chunked, whole, "chunked and whole-stream readers disagree");
});
