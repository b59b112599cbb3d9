//! Link faults carried in user space: delay, jitter, loss, duplication and
//! reordering of one host's link, on every kernel (no netem), rootless, and
//! reproducible with a seed.
//!
//! The switch takes the host's link (its end of the veth pair, `portN`) off
//! the bridge and plugs in a second pair (`impairN` <-> `bridgeN`) whose far
//! end takes its place on the bridge. A process of the switch's sandbox
//! (the impairment process) carries every frame between `portN` and
//! `impairN` through two raw packet
//! sockets, holding each one for its delay and dropping, doubling or
//! letting some pass early, as a seeded generator decides. Only unicast IP
//! frames are touched (not ICMPv6's neighbour discovery, nor ARP, nor
//! multicast and broadcast), so that the same seed and the same datagrams
//! give the same outcome; but a loss of 100% (a blackholed host) drops
//! multicast and broadcast IP datagrams too.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::sys;

/// What the impairment process does to the IP frames of each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Impairment {
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    /// Probabilities, 0 to 1.
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) seed: u64,
}

/// SplitMix64: small, fast, and the same sequence for the same seed on
/// every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The size of the `virtio_net_hdr` in front of each frame.
const VNET_HDR: usize = 10;

/// Whether `frame` (after its `virtio_net_hdr`) is an IP datagram (IPv4,
/// or IPv6 but the ICMPv6 of the link itself: neighbour discovery and
/// MLD), and if so, whether to a group (its destination's group bit:
/// multicast or broadcast). Other ICMPv6 (echo, errors) is a datagram like
/// any: a blackholed host exchanges none.
fn ip_datagram(frame: &[u8]) -> Option<bool> {
    let eth = &frame[VNET_HDR.min(frame.len())..];
    if eth.len() < 14 {
        return None;
    }
    // After the Ethernet header (14 bytes), IPv6's fixed header (40): its
    // next header (at 6), then an ICMPv6 message's type.
    let link_icmpv6 = |ip6: &[u8]| {
        ip6.get(6) == Some(&58) && ip6.get(40).is_some_and(|t| matches!(t, 130..=137 | 143))
    };
    let ip = match u16::from_be_bytes([eth[12], eth[13]]) {
        0x0800 => true,
        0x86DD => !link_icmpv6(&eth[14..]),
        _ => false,
    };
    ip.then_some(eth[0] & 1 == 1)
}

/// Whether the impairment process impairs `frame`: unicast IP datagrams.
/// Multicast and broadcast frames pass untouched: the kernel sends some on
/// its own (IPv6's MLD reports, at times of its choosing), and each
/// impaired frame takes draws from the generator, so they would shift a
/// seed's decisions from run to run.
fn impaired(frame: &[u8]) -> bool {
    ip_datagram(frame) == Some(false)
}

/// Whether `frame` is a multicast or broadcast IP datagram: what a link
/// with a loss of 100% (a blackholed host) drops too, though no seed's
/// draws are taken for it.
fn group_ip(frame: &[u8]) -> bool {
    ip_datagram(frame) == Some(true)
}

/// What to do with one impaired frame: dropped, or sent after a delay,
/// once or twice. Every frame takes the same four draws, whatever the
/// settings, so that one seed gives one sequence.
fn decide(imp: &Impairment, rng: &mut Rng) -> Option<(Duration, bool)> {
    let (lost, wobble, doubled, early) = (rng.unit(), rng.unit(), rng.unit(), rng.unit());
    if lost < imp.loss {
        return None;
    }
    let delay = if early < imp.reorder {
        Duration::ZERO
    } else {
        let offset = imp.jitter.as_secs_f64() * (2.0 * wobble - 1.0);
        Duration::from_secs_f64((imp.delay.as_secs_f64() + offset).max(0.0))
    };
    Some((delay, doubled < imp.duplicate))
}

/// A frame held back: (due, arrival order, direction, frame). Sent in due
/// order; frames due at once in the order they came.
type Held = (Instant, u64, usize, Vec<u8>);

/// How many bytes of frames the impairment process holds at most, as a
/// router's queue does: beyond, arriving frames are dropped (a sender
/// flooding a delayed link cannot make the switch's memory grow without
/// end).
const QUEUE_LIMIT: usize = 64 << 20;

/// The frames held back, in due order, and their size.
struct Queue {
    held: BinaryHeap<Reverse<Held>>,
    bytes: usize,
    limit: usize,
    order: u64,
}

impl Queue {
    fn new(limit: usize) -> Self {
        Queue {
            held: BinaryHeap::new(),
            bytes: 0,
            limit,
            order: 0,
        }
    }

    /// Holds `frame` until `due`; false (and dropped) when the queue is
    /// full.
    fn push(&mut self, due: Instant, dir: usize, frame: Vec<u8>) -> bool {
        if self.bytes + frame.len() > self.limit {
            return false;
        }
        self.bytes += frame.len();
        self.order += 1;
        self.held.push(Reverse((due, self.order, dir, frame)));
        true
    }

    /// How long until the next frame is due, if any is held.
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.held
            .peek()
            .map(|Reverse((due, ..))| due.saturating_duration_since(now))
    }

    /// The next frame due by `now`, with its direction.
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Vec<u8>)> {
        if self
            .held
            .peek()
            .is_some_and(|Reverse((due, ..))| *due <= now)
        {
            let Reverse((_, _, dir, frame)) = self.held.pop()?;
            self.bytes -= frame.len();
            Some((dir, frame))
        } else {
            None
        }
    }
}

/// Carries frames between the links `host_side` and `bridge_side` (their
/// indexes) until killed, impairing what the host sends with `imp[0]` and
/// what it receives with `imp[1]`;
/// writes one byte to `ready` (a pipe handed to the run) once it carries.
/// Returns only on an error, which it names.
pub(crate) fn run(
    host_side: u32,
    bridge_side: u32,
    imp: [Impairment; 2],
    ready: crate::sys::fd::Fd,
) -> String {
    let open = |index: u32| {
        let fd = sys::packet_socket(index)?;
        sys::set_nonblocking(std::os::fd::AsFd::as_fd(&fd))
            .map_err(std::io::Error::from_raw_os_error)?;
        Ok::<_, std::io::Error>(fd)
    };
    let (a, b) = match (open(host_side), open(bridge_side)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return format!("opening the impairment process's packet sockets: {e}");
        }
    };
    use std::os::fd::AsFd;
    let ends = [a.as_fd(), b.as_fd()];
    let _ = sys::write_all(ready.as_fd(), b"r");
    drop(ready);
    // Independent streams for the two directions, even with one seed.
    let mut rngs = [
        Rng(imp[0].seed ^ 0x5555_5555_5555_5555),
        Rng(imp[1].seed ^ 0xAAAA_AAAA_AAAA_AAAA),
    ];
    let mut queue = Queue::new(QUEUE_LIMIT);
    let mut buf = vec![0u8; VNET_HDR + 65536];
    loop {
        match sys::poll(&ends, queue.wait(Instant::now())) {
            Ok(_) | Err(libc::EINTR) => {}
            Err(e) => return format!("waiting for frames: errno {e}"),
        }
        for (dir, from) in ends.iter().enumerate() {
            loop {
                let n = match sys::packet_recv(*from, &mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    // The link went down (set_link) or away (the network's
                    // teardown): the kernel says so once, and carries on
                    // once it is up again.
                    Err(libc::ENETDOWN | libc::ENXIO | libc::ENODEV) => break,
                    Err(e) => return format!("reading a frame: errno {e}"),
                };
                let frame = buf[..n].to_vec();
                let now = Instant::now();
                // Every datagram of a blackholed link, broadcast and
                // multicast too; ARP passes, so that the host still seems
                // there.
                if imp[dir].loss >= 1.0 && group_ip(&frame) {
                    continue;
                }
                let (delay, twice) = if impaired(&frame) {
                    match decide(&imp[dir], &mut rngs[dir]) {
                        Some(d) => d,
                        None => continue,
                    }
                } else {
                    (Duration::ZERO, false)
                };
                if twice {
                    queue.push(now + delay, dir, frame.clone());
                }
                queue.push(now + delay, dir, frame);
            }
        }
        let now = Instant::now();
        while let Some((dir, frame)) = queue.pop_due(now) {
            // Out of the other end; a frame the link refuses is lost, as on
            // a wire.
            let _ = sys::packet_send(ends[1 - dir], &frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(loss: f64, seed: u64) -> Impairment {
        Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss,
            duplicate: 0.0,
            reorder: 0.0,
            seed,
        }
    }

    fn drops(imp: &Impairment) -> Vec<bool> {
        let mut rng = Rng(imp.seed);
        (0..1000).map(|_| decide(imp, &mut rng).is_none()).collect()
    }

    #[test]
    fn group_datagrams_are_told_from_arp_and_neighbour_discovery() {
        let frame = |dest: [u8; 6], ethertype: u16, next: u8| {
            let mut f = vec![0u8; VNET_HDR + 14 + 40 + 8];
            f[VNET_HDR..VNET_HDR + 6].copy_from_slice(&dest);
            f[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&ethertype.to_be_bytes());
            f[VNET_HDR + 14 + 6] = next;
            // An ICMPv6 message's type: a neighbour solicitation.
            f[VNET_HDR + 14 + 40] = 135;
            f
        };
        let broadcast = [0xff; 6];
        let multicast = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
        let unicast = [0x02, 0, 0, 0, 0, 1];
        assert!(group_ip(&frame(broadcast, 0x0800, 17)));
        assert!(group_ip(&frame(multicast, 0x0800, 17)));
        assert!(group_ip(&frame([0x33, 0x33, 0, 0, 0, 1], 0x86DD, 17)));
        assert!(!group_ip(&frame([0x33, 0x33, 0, 0, 0, 1], 0x86DD, 58)));
        assert!(!group_ip(&frame(broadcast, 0x0806, 0)), "ARP");
        assert!(!group_ip(&frame(unicast, 0x0800, 17)));
    }

    #[test]
    fn the_queue_sends_in_due_order_and_drops_what_does_not_fit() {
        let t = Instant::now();
        let mut q = Queue::new(10);
        assert!(q.push(t + Duration::from_millis(2), 0, vec![1; 4]));
        assert!(q.push(t + Duration::from_millis(1), 1, vec![2; 4]));
        assert!(!q.push(t, 0, vec![3; 4]), "over the limit of 10 bytes");
        assert!(q.push(t + Duration::from_millis(1), 0, vec![4; 2]));
        assert_eq!(q.wait(t), Some(Duration::from_millis(1)));
        assert_eq!(q.pop_due(t), None, "nothing due yet");
        let later = t + Duration::from_millis(5);
        // Due order; at the same due time, arrival order.
        assert_eq!(q.pop_due(later), Some((1, vec![2; 4])));
        assert_eq!(q.pop_due(later), Some((0, vec![4; 2])));
        assert_eq!(q.pop_due(later), Some((0, vec![1; 4])));
        assert_eq!(q.pop_due(later), None);
        assert!(q.push(t, 0, vec![5; 10]), "room again once sent");
    }

    #[test]
    fn a_seed_decides_the_same_drops_every_time_and_another_seed_others() {
        let a = drops(&imp(0.3, 7));
        assert_eq!(a, drops(&imp(0.3, 7)));
        assert_ne!(a, drops(&imp(0.3, 8)));
        let lost = a.iter().filter(|&&d| d).count();
        assert!((200..400).contains(&lost), "{lost} of 1000 at 30%");
    }

    #[test]
    fn only_unicast_ip_frames_but_the_link_s_icmpv6_are_impaired() {
        let frame = |ethertype: u16, next: u8| {
            let mut f = vec![0u8; VNET_HDR + 14 + 40 + 8];
            f[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&ethertype.to_be_bytes());
            f[VNET_HDR + 14 + 6] = next;
            f
        };
        let icmpv6 = |kind: u8| {
            let mut f = frame(0x86DD, 58);
            f[VNET_HDR + 14 + 40] = kind;
            f
        };
        assert!(impaired(&frame(0x0800, 17)));
        assert!(impaired(&frame(0x86DD, 17)));
        // Neighbour solicitation and advertisement, router solicitation,
        // an MLD report: the link's own, never impaired.
        for kind in [135, 136, 133, 131, 143] {
            assert!(!impaired(&icmpv6(kind)), "ICMPv6 type {kind}");
        }
        // Echo request and reply, destination unreachable: datagrams.
        for kind in [128, 129, 1] {
            assert!(impaired(&icmpv6(kind)), "ICMPv6 type {kind}");
        }
        // Cut short before its type: taken as a datagram.
        assert!(impaired(&frame(0x86DD, 58)[..VNET_HDR + 14 + 40]));
        assert!(!impaired(&frame(0x0806, 0)));
        // MLD: to 33:33:00:00:00:16, behind a hop-by-hop header (0).
        let mut mld = frame(0x86DD, 0);
        mld[VNET_HDR..VNET_HDR + 6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 0x16]);
        assert!(!impaired(&mld));
        let mut broadcast = frame(0x0800, 17);
        broadcast[VNET_HDR..VNET_HDR + 6].fill(0xff);
        assert!(!impaired(&broadcast));
    }
}
