//! The SDK's built-in test sources: what `cloudproxy join` and the tests publish so that a
//! real receiver (a browser) has something to decode.
//!
//! - audio: an Opus packet of 20 ms of silence (RFC 6716 CELT frame, TOC `0xF8`), 50 a second;
//! - video: a 2-second VP8 clip (320×240, 15 fps, a key frame every second) embedded from
//!   `assets/test-pattern.ivf`, looped. A key-frame request restarts it at the next key frame.

use std::time::Duration;

/// 20 ms of Opus silence (CELT-only, fullband, 20 ms frame: TOC 0xF8, then the "silence" bytes
/// every Opus encoder emits for digital silence).
pub const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Interval between audio packets.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

const CLIP: &[u8] = include_bytes!("../../assets/test-pattern.ivf");

/// One frame of a VP8 clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// The VP8 frame (one RTP "frame", packetized by the media engine).
    pub data: Vec<u8>,
    /// A key frame (VP8 frame tag bit 0 clear).
    pub key: bool,
}

/// Why an IVF file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IvfError {
    /// Not an IVF file or not VP8.
    #[error("not a VP8 IVF file: {0}")]
    Format(&'static str),
    /// A frame header announces more bytes than there are.
    #[error("frame {0} is truncated")]
    Truncated(usize),
}

/// A looping VP8 clip.
#[derive(Debug, Clone)]
pub struct VideoClip {
    frames: Vec<VideoFrame>,
    fps: u32,
    next: usize,
}

impl VideoClip {
    /// The embedded test pattern.
    pub fn test_pattern() -> Self {
        Self::from_ivf(CLIP).expect("the embedded clip is a valid VP8 IVF file")
    }

    /// Reads an IVF container (32-byte file header "DKIF", then 12-byte frame headers).
    pub fn from_ivf(b: &[u8]) -> Result<Self, IvfError> {
        if b.len() < 32 || &b[..4] != b"DKIF" {
            return Err(IvfError::Format("no DKIF header"));
        }
        if &b[8..12] != b"VP80" {
            return Err(IvfError::Format("codec is not VP80"));
        }
        let header_len = usize::from(u16::from_le_bytes([b[6], b[7]]));
        // The time base (scale / rate seconds); frame timestamps count in it.
        let rate = u64::from(u32::from_le_bytes([b[16], b[17], b[18], b[19]])).max(1);
        let scale = u64::from(u32::from_le_bytes([b[20], b[21], b[22], b[23]])).max(1);
        let mut frames = Vec::new();
        let mut pts = Vec::new();
        let mut at = header_len.max(32);
        while at + 12 <= b.len() {
            let len = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            let start = at + 12;
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&b[at + 4..at + 12]);
            pts.push(u64::from_le_bytes(ts));
            let data = b
                .get(start..start + len)
                .ok_or(IvfError::Truncated(frames.len()))?;
            if data.is_empty() {
                return Err(IvfError::Truncated(frames.len()));
            }
            frames.push(VideoFrame {
                key: data[0] & 1 == 0,
                data: data.to_vec(),
            });
            at = start + len;
        }
        if !frames.first().is_some_and(|f| f.key) {
            return Err(IvfError::Format("the first frame is not a key frame"));
        }
        // Frame rate from the timestamps: (frames - 1) intervals between the first and last.
        let span = pts.last().copied().unwrap_or(0).saturating_sub(pts[0]);
        let fps = if frames.len() > 1 && span > 0 {
            let intervals = (frames.len() - 1) as u64;
            ((intervals * rate + span * scale / 2) / (span * scale)).clamp(1, 60) as u32
        } else {
            15
        };
        Ok(Self {
            frames,
            fps,
            next: 0,
        })
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// The interval between frames.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps
    }

    /// Number of frames in one loop.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Never true: a clip has at least its first key frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The next frame, looping.
    pub fn next_frame(&mut self) -> &VideoFrame {
        let i = self.next;
        self.next = (self.next + 1) % self.frames.len();
        &self.frames[i]
    }

    /// Makes the next frame a key frame (a receiver asked for one): the next key frame at or
    /// after the current position, wrapping to the start.
    pub fn request_key_frame(&mut self) {
        let n = self.frames.len();
        self.next = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| self.frames[i].key)
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_clip_is_two_seconds_of_vp8_with_a_key_frame_every_second() {
        let mut c = VideoClip::test_pattern();
        assert_eq!(c.fps(), 15);
        assert_eq!(c.len(), 30);
        let keys: Vec<usize> = (0..c.len()).filter(|_| c.next_frame().key).collect();
        assert!(keys.contains(&0), "starts with a key frame: {keys:?}");
        assert!(keys.len() >= 2, "a key frame every second: {keys:?}");
        // VP8 key frames carry the start code 9d 01 2a and the size after the 3-byte tag.
        let first = &c.frames[0].data;
        assert_eq!(&first[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([first[6], first[7]]) & 0x3fff, 320);
        assert_eq!(u16::from_le_bytes([first[8], first[9]]) & 0x3fff, 240);
    }

    #[test]
    fn a_key_frame_request_jumps_to_the_next_key_frame() {
        let mut c = VideoClip::test_pattern();
        c.next_frame();
        c.next_frame();
        c.request_key_frame();
        assert!(c.next_frame().key);
    }

    #[test]
    fn malformed_ivf_is_an_error_not_a_panic() {
        let good = CLIP;
        assert!(VideoClip::from_ivf(&good[..10]).is_err());
        assert!(
            VideoClip::from_ivf(&good[..40]).is_err(),
            "truncated first frame"
        );
        let mut bad = good.to_vec();
        bad[8..12].copy_from_slice(b"VP90");
        assert!(VideoClip::from_ivf(&bad).is_err());
        // Every prefix either parses or fails cleanly.
        for n in 0..good.len().min(2000) {
            let _ = VideoClip::from_ivf(&good[..n]);
        }
    }
}
