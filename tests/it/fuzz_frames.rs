//! The frame decoder runs in the test process on bytes from the child: for
//! any bytes, in any chunking, it never panics, never reserves more than its
//! bound, and always finishes.

use hermetic::__fuzz::decode;
use proptest::prelude::*;

/// The decoder reserves at most this much past a frame's real payload.
const SLACK: usize = 1 << 20;

fn bounded(bytes: &[u8], limit: usize, chunks: &[usize]) {
    let d = decode(bytes, limit, chunks);
    // Never more than what arrived plus one step, and never past the limit
    // by more than one step: a claimed length alone reserves nothing big.
    assert!(
        d.max_capacity <= bytes.len() + SLACK,
        "reserved {} for {} bytes",
        d.max_capacity,
        bytes.len()
    );
    if let Some((_, len)) = d.frame {
        assert!(len <= limit);
        assert!(d.error.is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                       limit in 0usize..1 << 16,
                       chunks in proptest::collection::vec(1usize..32, 0..4)) {
        bounded(&bytes, limit, &chunks);
    }

    #[test]
    fn plausible_headers_with_any_claim(tag in 0u8..7,
                                         claim in any::<u64>(),
                                         payload in proptest::collection::vec(any::<u8>(), 0..512),
                                         limit in 0usize..1 << 20,
                                         chunks in proptest::collection::vec(1usize..64, 0..4)) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&claim.to_le_bytes());
        bytes.extend_from_slice(&payload);
        bounded(&bytes, limit, &chunks);
        let d = decode(&bytes, limit, &chunks);
        match tag {
            1..=5 if claim <= limit as u64 && claim as usize <= payload.len() => {
                prop_assert_eq!(d.frame, Some((tag, claim as usize)));
            }
            1..=5 if claim > limit as u64 => prop_assert!(d.error.unwrap().contains("over the limit")),
            1..=5 => prop_assert!(d.frame.is_none() && d.error.is_none()),
            _ => prop_assert!(d.error.unwrap().contains("unknown frame tag")),
        }
    }
}

#[test]
fn the_committed_corpus_decodes_as_expected() {
    // At run time, not build time: nextest may run an archive elsewhere.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(Default::default, std::path::PathBuf::from);
    let dir = root.join("fixtures/frame-corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for chunks in [&[][..], &[1], &[3, 7]] {
            bounded(&bytes, 1 << 20, chunks);
        }
        let d = decode(&bytes, 1 << 20, &[]);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "value-empty.bin" => assert_eq!(d.frame, Some((1, 0))),
            "value-small.bin" => assert_eq!(d.frame, Some((1, 6))),
            "panic.bin" => assert_eq!(d.frame.map(|f| f.0), Some(2)),
            "encode-failed.bin" => assert_eq!(d.frame.map(|f| f.0), Some(3)),
            "claims-2-pow-63.bin" => assert!(d.error.unwrap().contains("over the limit")),
            "claims-more-than-sent.bin" | "header-only-7-bytes.bin" => {
                assert_eq!((d.frame, d.error), (None, None))
            }
            "unknown-tag.bin" => assert!(d.error.unwrap().contains("unknown frame tag 0xde")),
            "trailing-garbage.bin" => assert_eq!(d.frame, Some((1, 2))),
            other => panic!("no expectation for corpus file {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 9);
}
