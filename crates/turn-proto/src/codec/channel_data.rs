//! ChannelData messages (RFC 8656 §12.4): a 4-byte header, then application data.

use super::DecodeError;

/// Lowest channel number a client may bind.
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number a client may bind.
///
/// RFC 8656 narrowed the range to 0x4000..=0x4FFF and reserved 0x5000..=0x7FFF, but RFC 5766
/// allowed up to 0x7FFE and clients written to it (coturn's `turnutils_uclient` among them)
/// still pick numbers there. The first two bits still say "ChannelData", so accepting the old
/// range costs nothing and keeps those clients working; 0x7FFF stays refused.
pub const CHANNEL_MAX: u16 = 0x7FFE;

/// A ChannelData message borrowing its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number.
    pub channel: u16,
    /// The application data.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes a ChannelData message. Bytes after the announced length are allowed up to the
    /// next multiple of 4 (padding, mandatory over TCP, optional over UDP) and refused beyond.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < 4 {
            return Err(DecodeError::Truncated {
                need: 4,
                have: buf.len(),
            });
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return Err(DecodeError::BadChannelNumber(channel));
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            return Err(DecodeError::Truncated {
                need: 4 + len,
                have: buf.len(),
            });
        }
        let padded = 4 + ((len + 3) & !3);
        if buf.len() > padded {
            return Err(DecodeError::TrailingBytes {
                extra: buf.len() - padded,
            });
        }
        Ok(Self {
            channel,
            data: &buf[4..4 + len],
        })
    }

    /// Writes the 4-byte header for `len` bytes of data on `channel`.
    pub fn write_header(channel: u16, len: u16, out: &mut [u8]) {
        out[..2].copy_from_slice(&channel.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_with_and_without_padding() {
        let m = [0x40, 0x01, 0, 3, 1, 2, 3];
        assert_eq!(ChannelData::decode(&m).unwrap().data, &[1, 2, 3]);
        let padded = [0x40, 0x01, 0, 3, 1, 2, 3, 0];
        assert_eq!(ChannelData::decode(&padded).unwrap().data, &[1, 2, 3]);
        let over = [0x40, 0x01, 0, 3, 1, 2, 3, 0, 0];
        assert!(ChannelData::decode(&over).is_err());
        assert!(ChannelData::decode(&[0x40, 0x01, 0, 4, 1]).is_err());
        assert_eq!(
            ChannelData::decode(&[0x7F, 0xFF, 0, 0]),
            Err(DecodeError::BadChannelNumber(0x7FFF))
        );
        assert!(ChannelData::decode(&[0x50, 0, 0, 0]).is_ok());
    }
}
