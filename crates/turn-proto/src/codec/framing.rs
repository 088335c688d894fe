//! Stream framing for TURN over TCP and TLS (RFC 8656 §12.5): STUN messages and ChannelData
//! share one byte stream and are told apart by their first two bits.
//!
//! [`frame_len`] is the cheap "is a whole frame buffered?" test. Parsing only runs after it
//! says yes, so a reader never parses a partial frame and never buffers more than one frame
//! (at most 65,555 bytes for STUN, 65,540 for ChannelData).

use super::{DecodeError, HEADER_LEN};

/// What a frame on a TURN byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A STUN message.
    Stun,
    /// A ChannelData message (length includes padding to 4 bytes).
    ChannelData,
}

/// Returns `Ok(None)` if more bytes are needed, `Ok(Some((kind, len)))` once a whole frame of
/// `len` bytes is at the front of `buf`, and an error when the stream is not TURN at all (then
/// the connection should be closed; there is no way to resynchronise a byte stream).
pub fn frame_len(buf: &[u8]) -> Result<Option<(FrameKind, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = match first >> 6 {
        0b00 => FrameKind::Stun,
        0b01 => FrameKind::ChannelData,
        _ => return Err(DecodeError::UnknownFraming(first)),
    };
    if buf.len() < 4 {
        return Ok(None);
    }
    if kind == FrameKind::ChannelData {
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !(super::CHANNEL_MIN..=super::CHANNEL_MAX).contains(&channel) {
            return Err(DecodeError::BadChannelNumber(channel));
        }
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let total = match kind {
        FrameKind::Stun => {
            if !len.is_multiple_of(4) {
                return Err(DecodeError::UnalignedLength(len as u16));
            }
            HEADER_LEN + len
        }
        FrameKind::ChannelData => 4 + ((len + 3) & !3),
    };
    Ok((buf.len() >= total).then_some((kind, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental() {
        let cd = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        for n in 0..cd.len() {
            assert_eq!(frame_len(&cd[..n]).unwrap(), None, "prefix {n}");
        }
        assert_eq!(frame_len(&cd).unwrap(), Some((FrameKind::ChannelData, 12)));
        assert!(frame_len(&[0x16, 3, 1]).is_ok()); // 0x16 = 0b00010110: looks like STUN
                                                   // HTTP methods start with 0x4x/0x5x bytes: they look like ChannelData headers, and
                                                   // only the length tells them apart. Port sniffing (TLS vs HTTP vs TURN) is done above.
        assert!(frame_len(&[0x7F, 0xFF, 0, 0]).is_err());
        assert!(frame_len(&[0xC0, 0, 0, 0]).is_err());
        assert!(frame_len(&[0x00, 0x01, 0x00, 0x03]).is_err());
    }
}
