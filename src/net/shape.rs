//! Link shaping: what a user asks for, and the qdisc options that carry it.
//!
//! `netlink-packet-route` frames the messages but has no types for the tbf
//! option payload, so that payload (the kernel's `tc_tbf_qopt` struct,
//! `linux/pkt_sched.h`) is written here, with the attribute framing left to
//! `netlink-packet-core`.

use std::time::Duration;

use netlink_packet_core::{DefaultNla, Emitable};

/// How to shape one host's link: both directions with
/// [`Network::shape`](crate::Network::shape), or each its own with
/// [`Network::shape_each_way`](crate::Network::shape_each_way).
///
/// `rate` uses the kernel's `tbf` qdisc. Delay, jitter, loss, duplication
/// and reordering are applied in user space by the network's switch (no
/// `netem` needed, rootless, on every kernel), to unicast IP frames, drawn from a
/// generator seeded with [`with_seed`](Self::with_seed): the same seed and
/// the same datagrams give the same drops. A loss of 100% drops broadcast
/// and multicast IP datagrams too (ARP and IPv6's neighbour discovery
/// pass).
///
/// A shape is a value: each `with_*` returns the changed shape (and is
/// `#[must_use]`: `shape.with_loss(5.0);` alone changes nothing, and the
/// compiler says so).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let slow = hermetic::LinkShape::rate(1 << 20); // 1 MiB/s
/// let far = hermetic::LinkShape::delay(Duration::from_millis(50)).with_loss(1.0);
/// # let _ = (slow, far);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LinkShape {
    /// Bytes per second.
    pub rate: Option<u64>,
    /// Added one-way delay.
    pub delay: Option<Duration>,
    /// Random variation of the delay.
    pub jitter: Option<Duration>,
    /// Percentage of packets dropped, 0 to 100.
    pub loss: Option<f64>,
    /// Percentage of packets sent twice, 0 to 100.
    pub duplicate: Option<f64>,
    /// Percentage of packets sent at once, ahead of delayed ones, 0 to 100.
    pub reorder: Option<f64>,
    /// The seed of the generator that decides loss, jitter, duplication and
    /// reordering (0 unless set).
    pub seed: Option<u64>,
}

impl LinkShape {
    /// A rate limit of `bytes_per_second` (the kernel's `tbf`, whose
    /// bucket lets the first 20 ms of traffic, at least 4 KiB, through at
    /// once: a transfer of N bytes takes about `(N - bucket) / rate`).
    #[must_use = "a shape does nothing until given to Network::shape"]
    pub fn rate(bytes_per_second: u64) -> Self {
        LinkShape {
            rate: Some(bytes_per_second),
            ..Self::default()
        }
    }

    /// A fixed one-way delay (with any jitter, at most an hour:
    /// [`Network::shape`](crate::Network::shape) refuses more).
    #[must_use = "a shape does nothing until given to Network::shape"]
    pub fn delay(delay: Duration) -> Self {
        LinkShape {
            delay: Some(delay),
            ..Self::default()
        }
    }

    /// Random loss of `percent` of the datagrams (0 to 100), each way; 100
    /// is a [blackhole](crate::Network::blackhole).
    #[must_use = "a shape does nothing until given to Network::shape"]
    pub fn loss(percent: f64) -> Self {
        LinkShape {
            loss: Some(percent),
            ..Self::default()
        }
    }

    /// Adds a one-way delay (`LinkShape::rate(r).with_delay(d)`).
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_delay(..)`"]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds jitter to the delay.
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_jitter(..)`"]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Adds random loss, in percent.
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_loss(..)`"]
    pub fn with_loss(mut self, percent: f64) -> Self {
        self.loss = Some(percent);
        self
    }

    /// Sends this percentage of packets twice.
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_duplicate(..)`"]
    pub fn with_duplicate(mut self, percent: f64) -> Self {
        self.duplicate = Some(percent);
        self
    }

    /// Sends this percentage of packets at once, so that they overtake
    /// delayed ones (needs a delay or jitter: without one,
    /// [`Network::shape`](crate::Network::shape) refuses the shape).
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_reorder(..)`"]
    pub fn with_reorder(mut self, percent: f64) -> Self {
        self.reorder = Some(percent);
        self
    }

    /// Seeds the generator behind loss, jitter, duplication and reordering:
    /// a reproducible bad network.
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_seed(..)`"]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Adds a rate limit.
    #[must_use = "returns the changed shape and leaves this one as it was: `let shape = shape.with_rate(..)`"]
    pub fn with_rate(mut self, bytes_per_second: u64) -> Self {
        self.rate = Some(bytes_per_second);
        self
    }

    /// True when frames are carried in user space (anything but a rate).
    pub(crate) fn needs_impairment(&self) -> bool {
        self.delay.is_some()
            || self.jitter.is_some()
            || self.loss.is_some()
            || self.duplicate.is_some()
            || self.reorder.is_some()
    }

    /// What the impairment process does.
    pub(crate) fn impairment(&self) -> crate::net::impair::Impairment {
        let fraction = |p: Option<f64>| p.unwrap_or(0.0) / 100.0;
        crate::net::impair::Impairment {
            delay: self.delay.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
            loss: fraction(self.loss),
            duplicate: fraction(self.duplicate),
            reorder: fraction(self.reorder),
            seed: self.seed.unwrap_or(0),
        }
    }

    /// Checks the values; the reason when they make no sense.
    pub(crate) fn invalid(&self) -> Option<String> {
        if self.rate == Some(0) {
            return Some("a rate of 0 would stop all traffic; take the link down instead".into());
        }
        for (what, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if let Some(p) = p
                && !(0.0..=100.0).contains(&p)
            {
                return Some(format!(
                    "{what} must be a percentage from 0 to 100, not {p}"
                ));
            }
        }
        // Each datagram's due time is counted from its arrival: bounded,
        // so that it is a time (an `Instant`) at all.
        let most = self
            .delay
            .unwrap_or_default()
            .checked_add(self.jitter.unwrap_or_default());
        if most.is_none_or(|d| d > MAX_DELAY) {
            return Some(format!(
                "a delay and jitter of {:?} and {:?}: together at most {} s",
                self.delay.unwrap_or_default(),
                self.jitter.unwrap_or_default(),
                MAX_DELAY.as_secs()
            ));
        }
        // A seed alone decides nothing.
        let unseeded = LinkShape {
            seed: None,
            ..self.clone()
        };
        if unseeded == LinkShape::default() {
            return Some(
                "nothing to shape: set a rate, delay, jitter, loss, duplication or reordering"
                    .into(),
            );
        }
        // Reordering sends some datagrams at once, ahead of delayed ones:
        // without a delay there is nothing to be ahead of.
        let delayed =
            self.delay.is_some_and(|d| !d.is_zero()) || self.jitter.is_some_and(|j| !j.is_zero());
        if self.reorder.is_some_and(|r| r > 0.0) && !delayed {
            return Some(
                "reordering needs a delay (or jitter) to send datagrams ahead of: add one \
                 with with_delay"
                    .into(),
            );
        }
        None
    }
}

/// The longest delay (with its jitter) a link may add: an hour, far past
/// any test's patience, and far from the end of an `Instant`.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// `struct tc_ratespec` with `rate` (saturated to 32 bits; the full value
/// goes in a `*_RATE64` attribute).
fn ratespec(rate: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[1] = 1; // linklayer: TC_LINKLAYER_ETHERNET (no rate table needed)
    out[8..12].copy_from_slice(&(rate.min(u32::MAX as u64) as u32).to_ne_bytes());
    out
}

fn attrs(nlas: &[DefaultNla]) -> Vec<u8> {
    let mut out = vec![0u8; nlas.buffer_len()];
    nlas.emit(&mut out);
    out
}

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;

/// tbf options for `rate` bytes per second: a bucket of 20 ms of traffic
/// (at least 4 KiB, above the links' MTU of 1500: a frame larger than the
/// bucket could never pass, while tbf cuts a larger GSO segment into
/// frames itself) and a queue of 100 ms. A low rate holds from the first
/// bytes: with a bucket of 16 KiB, 32 KiB at 8 KiB/s took 2.2 s, not 4.
pub(crate) fn tbf_options(rate: u64) -> Vec<u8> {
    // At most half of 32 bits: the queue's limit is at least two bursts.
    let burst = (rate / 50).clamp(4 << 10, (u32::MAX / 2) as u64) as u32;
    let limit = (rate / 10).clamp(2 * burst as u64, u32::MAX as u64) as u32;
    // struct tc_tbf_qopt: rate, peakrate, limit, buffer, mtu.
    let mut qopt = Vec::with_capacity(36);
    qopt.extend_from_slice(&ratespec(rate));
    qopt.extend_from_slice(&[0u8; 12]);
    qopt.extend_from_slice(&limit.to_ne_bytes());
    qopt.extend_from_slice(&0u32.to_ne_bytes()); // buffer: from TCA_TBF_BURST
    qopt.extend_from_slice(&0u32.to_ne_bytes()); // mtu: no peak rate
    let mut nlas = vec![
        DefaultNla::new(TCA_TBF_PARMS, qopt),
        DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec()),
    ];
    if rate > u32::MAX as u64 {
        nlas.push(DefaultNla::new(TCA_TBF_RATE64, rate.to_ne_bytes().to_vec()));
    }
    attrs(&nlas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn tbf_payload_layout() {
        let b = tbf_options(1 << 20);
        // TCA_TBF_PARMS: header (4) + 36 bytes.
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 40);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), TCA_TBF_PARMS);
        assert_eq!(b[4 + 1], 1, "linklayer ethernet");
        assert_eq!(u32_at(&b, 4 + 8), 1 << 20, "rate");
        let limit = u32_at(&b, 4 + 24);
        // TCA_TBF_BURST follows.
        assert_eq!(u16::from_ne_bytes([b[42], b[43]]), TCA_TBF_BURST);
        let burst = u32_at(&b, 44);
        assert_eq!(burst, 20971);
        assert!(limit >= 2 * burst);
        assert_eq!(b.len(), 48);
    }

    #[test]
    fn tbf_small_rates_keep_a_burst_above_the_mtu() {
        let b = tbf_options(1000);
        assert_eq!(u32_at(&b, 44), 4 << 10);
    }

    #[test]
    fn tbf_rates_over_32_bits_add_rate64() {
        let b = tbf_options(10 << 30);
        assert_eq!(u32_at(&b, 4 + 8), u32::MAX);
        assert_eq!(u16::from_ne_bytes([b[50], b[51]]), TCA_TBF_RATE64);
    }

    #[test]
    fn what_is_impaired_in_user_space() {
        assert!(!LinkShape::rate(1).needs_impairment());
        assert!(LinkShape::delay(Duration::from_millis(1)).needs_impairment());
        assert!(LinkShape::rate(1).with_duplicate(1.0).needs_impairment());
        let imp = LinkShape::delay(Duration::from_millis(5))
            .with_loss(30.0)
            .with_seed(9)
            .impairment();
        assert_eq!(
            (imp.delay, imp.loss, imp.seed),
            (Duration::from_millis(5), 0.3, 9)
        );
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(LinkShape::default().invalid().is_some());
        assert!(LinkShape::rate(0).invalid().is_some());
        assert!(
            LinkShape::delay(Duration::ZERO)
                .with_loss(101.0)
                .invalid()
                .is_some()
        );
        assert!(LinkShape::rate(1).with_reorder(-1.0).invalid().is_some());
        assert!(LinkShape::rate(10).invalid().is_none());
        // A due time past any `Instant`, or past an hour.
        assert!(LinkShape::delay(Duration::MAX).invalid().is_some());
        let hour = Duration::from_secs(3600);
        assert!(LinkShape::delay(hour).invalid().is_none());
        assert!(LinkShape::delay(hour).with_jitter(hour).invalid().is_some());
        assert!(
            LinkShape::loss(1.0)
                .with_jitter(Duration::MAX)
                .invalid()
                .is_some()
        );
    }
}
