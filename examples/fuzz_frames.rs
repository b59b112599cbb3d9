//! A long fuzzing run of the frame decoder, without nightly tools:
//! `cargo run --release --example fuzz_frames -- [iterations]`.
//!
//! Inputs are the committed corpus (fixtures/frame-corpus) mutated at
//! random (bit flips, byte overwrites, truncation, splices, length fields
//! set to extreme values) plus purely random bytes, each fed in random
//! chunks. Any panic fails the run; so does a decoder that reserves more
//! than what arrived plus one step.

use hermetic::__fuzz::decode;

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => {
                let other = &corpus[rng.below(corpus.len())];
                let at = rng.below(b.len() + 1);
                b.splice(at..at, other.iter().copied());
            }
            4 if b.len() >= 9 => {
                let extremes = [0u64, 1, u32::MAX as u64, u64::MAX, 1 << 63, rng.next()];
                let v = extremes[rng.below(extremes.len())];
                b[1..9].copy_from_slice(&v.to_le_bytes());
            }
            5 => b.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ => b = (0..rng.below(128)).map(|_| rng.next() as u8).collect(),
        }
    }
    b
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("iterations"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/frame-corpus");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("read the corpus")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut frames, mut errors, mut incomplete, mut max_cap) = (0u64, 0u64, 0u64, 0usize);
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        let seed = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed, &corpus);
        let chunks: Vec<usize> = (0..rng.below(4)).map(|_| 1 + rng.below(16)).collect();
        let limit = [0, 16, 1 << 10, 1 << 20, 256 << 20][rng.below(5)];
        let d = decode(&input, limit, &chunks);
        assert!(
            d.max_capacity <= input.len() + (1 << 20),
            "reserved {} for {} bytes: {input:?}",
            d.max_capacity,
            input.len()
        );
        max_cap = max_cap.max(d.max_capacity);
        match (d.frame, d.error) {
            (Some(_), None) => frames += 1,
            (None, Some(_)) => errors += 1,
            (None, None) => incomplete += 1,
            (Some(_), Some(_)) => panic!("both a frame and an error for {input:?}"),
        }
    }
    println!(
        "{iterations} inputs in {:.1}s: {frames} frames, {errors} refused, {incomplete} incomplete; \
         no panic; largest reservation {max_cap} bytes",
        start.elapsed().as_secs_f64()
    );
}
