//! The framed result channel between a run's child and the test process.
//!
//! A frame is a one-byte tag, a little-endian `u64` length and that many
//! bytes of payload. The child writes exactly one frame and exits. The
//! parent treats every byte as hostile: it checks the tag, refuses a length
//! above its limit before allocating anything, and grows its buffer only as
//! bytes actually arrive.

use serde::{Deserialize, Serialize};

use crate::error::{Error, PanicLocation};
use crate::proto::reports::{JoinReport, JoinStep};

/// Bytes before the payload: tag + length.
pub(crate) const HEADER_LEN: usize = 9;

/// The most the parent reserves ahead of bytes that have arrived.
pub(crate) const RESERVE_STEP: usize = 1 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    /// The closure returned; payload: its postcard encoding.
    Value = 1,
    /// The closure panicked; payload: a [`PanicReport`].
    Panic = 2,
    /// The closure returned but its value could not be encoded; payload:
    /// the encoder's message, UTF-8.
    EncodeFailed = 3,
    /// The runner's own setup failed before the closure ran; payload: a
    /// join report (step and errno, see [`JoinReport`]).
    SetupFailed = 4,
    /// The closure overflowed its stack; payload: the stack's size (u64,
    /// little-endian). Sent by the runner's fault handler (see
    /// [`stack_overflow_frame`]).
    StackOverflow = 5,
}

impl Tag {
    fn from_byte(b: u8) -> Option<Tag> {
        match b {
            1 => Some(Tag::Value),
            2 => Some(Tag::Panic),
            3 => Some(Tag::EncodeFailed),
            4 => Some(Tag::SetupFailed),
            5 => Some(Tag::StackOverflow),
            _ => None,
        }
    }
}

/// A panic as the child saw it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    pub(crate) location: Option<PanicLocation>,
}

/// Builds a whole frame (header and payload) in one buffer, so the child can
/// send it with a single loop of `write`.
pub(crate) fn encode_frame(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(tag as u8);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The frame a runner sends when its own setup fails (`step`, `errno`),
/// built on the stack: the runner has not started the closure yet.
pub(crate) fn setup_failed_frame(step: JoinStep, errno: i32) -> [u8; HEADER_LEN + 8] {
    let mut out = [0u8; HEADER_LEN + 8];
    out[0] = Tag::SetupFailed as u8;
    out[1..HEADER_LEN].copy_from_slice(&8u64.to_le_bytes());
    out[HEADER_LEN..].copy_from_slice(&JoinReport::failed(step, errno));
    out
}

/// The frame a runner's fault handler sends when the closure overflows its
/// stack of `size` bytes: built before the closure runs, so that the
/// handler only writes it.
pub(crate) const fn stack_overflow_frame(size: usize) -> [u8; HEADER_LEN + 8] {
    let mut out = [0u8; HEADER_LEN + 8];
    out[0] = Tag::StackOverflow as u8;
    let (len, size) = (8u64.to_le_bytes(), (size as u64).to_le_bytes());
    let mut i = 0;
    while i < 8 {
        out[1 + i] = len[i];
        out[HEADER_LEN + i] = size[i];
        i += 1;
    }
    out
}

/// Incremental, bounded decoder of one frame.
#[derive(Debug)]
pub(crate) struct FrameReader {
    limit: usize,
    header: Vec<u8>,
    tag: Option<Tag>,
    len: usize,
    payload: Vec<u8>,
}

impl FrameReader {
    /// A reader that refuses payloads longer than `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        FrameReader {
            limit,
            header: Vec::with_capacity(HEADER_LEN),
            tag: None,
            len: 0,
            payload: Vec::new(),
        }
    }

    /// Feeds bytes as they arrive. Returns how many were consumed; bytes
    /// after a complete frame are left alone (the caller ignores them).
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<usize, Error> {
        let start = bytes.len();
        if self.tag.is_none() {
            let want = HEADER_LEN - self.header.len();
            let take = want.min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(start - bytes.len());
            }
            let tag = Tag::from_byte(self.header[0]).ok_or_else(|| Error::Channel {
                reason: format!("unknown frame tag {:#04x}", self.header[0]),
            })?;
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.header[1..HEADER_LEN]);
            let len = u64::from_le_bytes(len);
            if len > self.limit as u64 {
                return Err(Error::Channel {
                    reason: format!(
                        "the result is {len} bytes, over the limit of {} bytes \
                         (raise it with SandboxBuilder::max_result_size)",
                        self.limit
                    ),
                });
            }
            self.tag = Some(tag);
            self.len = len as usize;
            self.payload.reserve(self.len.min(RESERVE_STEP));
        }
        let want = self.len - self.payload.len();
        let take = want.min(bytes.len());
        if self.payload.capacity() - self.payload.len() < take {
            // Grow by what arrived, in steps, never by what was claimed.
            self.payload.reserve(take.max(RESERVE_STEP).min(want));
        }
        self.payload.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        Ok(start - bytes.len())
    }

    /// The frame, once all of it has arrived.
    pub(crate) fn frame(&self) -> Option<(Tag, &[u8])> {
        match self.tag {
            Some(tag) if self.payload.len() == self.len => Some((tag, &self.payload)),
            _ => None,
        }
    }

    /// True once any byte arrived (so a missing frame is a truncation).
    pub(crate) fn started(&self) -> bool {
        !self.header.is_empty()
    }

    /// Describes an incomplete frame, for the error when the child is gone.
    pub(crate) fn truncation(&self) -> String {
        if self.tag.is_none() {
            format!("the frame header stopped after {} bytes", self.header.len())
        } else {
            format!(
                "the frame stopped after {} of {} bytes",
                self.payload.len(),
                self.len
            )
        }
    }
}

/// What decoding some bytes did (the fuzz entry point's answer,
/// re-exported as `hermetic::__fuzz::Decoded`).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The complete frame's tag and payload length, if one arrived.
    pub frame: Option<(u8, usize)>,
    /// The error, if the bytes were refused.
    pub error: Option<String>,
    /// The most the decoder ever reserved for the payload.
    pub max_capacity: usize,
}

/// Drives a [`FrameReader`] over `bytes` for the fuzz entry point.
pub(crate) fn fuzz_decode(bytes: &[u8], limit: usize, chunks: &[usize]) -> Decoded {
    let mut reader = FrameReader::new(limit);
    let mut max_capacity = 0;
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().filter(|&c| c > 0).cycle();
    let mut error = None;
    while !rest.is_empty() && reader.frame().is_none() {
        let take = sizes.next().unwrap_or(rest.len()).min(rest.len());
        match reader.feed(&rest[..take]) {
            Ok(used) => rest = &rest[used.max(take).min(rest.len())..],
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        max_capacity = max_capacity.max(reader.payload.capacity());
    }
    max_capacity = max_capacity.max(reader.payload.capacity());
    Decoded {
        frame: reader.frame().map(|(t, p)| (t as u8, p.len())),
        error,
        max_capacity,
    }
}

/// Turns a complete frame into the closure's outcome.
pub(crate) fn decode_outcome<T: serde::de::DeserializeOwned>(
    tag: Tag,
    payload: &[u8],
) -> Result<T, Error> {
    match tag {
        Tag::Value => {
            crate::proto::bounded::from_bytes(payload).map_err(|reason| Error::Decode { reason })
        }
        Tag::Panic => {
            let report: PanicReport =
                postcard::from_bytes(payload).map_err(|e| Error::Channel {
                    reason: format!("undecodable panic report: {e}"),
                })?;
            Err(Error::Panicked {
                message: report.message,
                location: report.location,
            })
        }
        Tag::EncodeFailed => Err(Error::Encode {
            reason: String::from_utf8_lossy(payload).into_owned(),
        }),
        Tag::StackOverflow => match <[u8; 8]>::try_from(payload) {
            Ok(size) => Err(Error::StackOverflow {
                size: u64::from_le_bytes(size) as usize,
            }),
            Err(_) => Err(Error::Channel {
                reason: "a garbled stack overflow report".into(),
            }),
        },
        Tag::SetupFailed => match <[u8; 8]>::try_from(payload).map(JoinReport::decode) {
            Ok(JoinReport::Failed { step, errno }) => Err(Error::Sys {
                step: step.what(),
                error: std::io::Error::from_raw_os_error(errno),
            }),
            _ => Err(Error::Channel {
                reason: "a garbled setup report".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], limit: usize) -> Result<Option<(Tag, Vec<u8>)>, Error> {
        let mut r = FrameReader::new(limit);
        // Feed one byte at a time: the worst case for the state machine.
        for b in bytes {
            r.feed(std::slice::from_ref(b))?;
        }
        Ok(r.frame().map(|(t, p)| (t, p.to_vec())))
    }

    #[test]
    fn round_trip() {
        let f = encode_frame(Tag::Value, b"hello");
        let (tag, payload) = decode_all(&f, 100).unwrap().unwrap();
        assert_eq!(tag, Tag::Value);
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn empty_payload_is_complete() {
        let f = encode_frame(Tag::Value, b"");
        assert_eq!(decode_all(&f, 0).unwrap().unwrap().1, b"");
    }

    #[test]
    fn oversized_claim_is_refused_before_allocation() {
        let mut f = vec![Tag::Value as u8];
        f.extend_from_slice(&(1u64 << 63).to_le_bytes());
        let mut r = FrameReader::new(1 << 20);
        let err = r.feed(&f).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(r.payload.capacity(), 0);
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let err = decode_all(&[0xff; 20], 100).unwrap_err();
        assert!(err.to_string().contains("unknown frame tag 0xff"), "{err}");
    }

    #[test]
    fn truncated_frame_is_incomplete() {
        let f = encode_frame(Tag::Value, b"hello");
        let mut r = FrameReader::new(100);
        r.feed(&f[..7]).unwrap();
        assert!(r.frame().is_none());
        assert!(r.started());
        assert_eq!(r.truncation(), "the frame header stopped after 7 bytes");
        r.feed(&f[7..11]).unwrap();
        assert_eq!(r.truncation(), "the frame stopped after 2 of 5 bytes");
    }

    #[test]
    fn bytes_after_the_frame_are_not_consumed() {
        let mut f = encode_frame(Tag::Value, b"ab");
        f.extend_from_slice(b"trailing");
        let mut r = FrameReader::new(100);
        assert_eq!(r.feed(&f).unwrap(), HEADER_LEN + 2);
    }

    #[test]
    fn reserve_follows_arrival_not_claim() {
        let mut f = vec![Tag::Value as u8];
        f.extend_from_slice(&(64u64 << 20).to_le_bytes());
        let mut r = FrameReader::new(128 << 20);
        r.feed(&f).unwrap();
        assert!(r.payload.capacity() <= RESERVE_STEP);
        r.feed(&[0u8; 10]).unwrap();
        assert!(r.payload.capacity() <= 2 * RESERVE_STEP);
    }

    #[test]
    fn a_stack_overflow_frame_decodes_to_its_error() {
        const FRAME: [u8; HEADER_LEN + 8] = stack_overflow_frame(8 << 20);
        let mut r = FrameReader::new(100);
        assert_eq!(r.feed(&FRAME).unwrap(), FRAME.len());
        let (tag, payload) = r.frame().unwrap();
        assert_eq!(tag, Tag::StackOverflow);
        let err = decode_outcome::<u32>(tag, payload).unwrap_err();
        assert!(
            matches!(err, Error::StackOverflow { size } if size == 8 << 20),
            "{err:?}"
        );
        assert!(decode_outcome::<u32>(Tag::StackOverflow, b"short").is_err());
    }

    #[test]
    fn outcomes_decode() {
        let v = postcard::to_allocvec(&(7u32, "x".to_string())).unwrap();
        let got: (u32, String) = decode_outcome(Tag::Value, &v).unwrap();
        assert_eq!(got, (7, "x".into()));

        let p = postcard::to_allocvec(&PanicReport {
            message: "boom".into(),
            location: None,
        })
        .unwrap();
        let err = decode_outcome::<u32>(Tag::Panic, &p).unwrap_err();
        assert!(matches!(err, Error::Panicked { ref message, .. } if message == "boom"));

        let err = decode_outcome::<u32>(Tag::Panic, b"\xff\xff\xff").unwrap_err();
        assert!(matches!(err, Error::Channel { .. }));
    }
}
