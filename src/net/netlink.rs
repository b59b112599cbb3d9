//! A small synchronous rtnetlink client: messages are built and parsed by
//! `netlink-packet-route`, carried by `netlink-sys`.
//!
//! It speaks for the network namespace of the thread that opened it, so it
//! is used from inside a sandbox (a run) to look at and change that
//! sandbox's links.

use std::io;

use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// The most source addresses a bridge of hermetic's learns
/// (`IFLA_BR_FDB_MAX_LEARNED`, Linux 6.7; older kernels ignore it). A
/// switch's hosts have an address each; past this, frames to an unknown
/// address are flooded to every port instead of more being learned. Each
/// entry is kernel memory no sandbox's memory cgroup is charged for,
/// learned from frames a host sends: a host sending from a million
/// made-up addresses held 122 MiB of it before (`tests/it/attacks14.rs`).
pub(crate) const BRIDGE_MAX_LEARNED: u32 = 4096;

/// A route netlink socket in the caller's network namespace.
pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub(crate) fn new() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends `msg` and collects the replies up to the ACK (or the end of a
    /// dump). A NACK becomes an `io::Error` with the kernel's errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link: (index, name).
    pub(crate) fn links(&mut self) -> io::Result<Vec<(u32, String)>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    let name = link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    Some((link.header.index, name))
                }
                _ => None,
            })
            .collect())
    }

    /// The index of the link called `name`.
    pub(crate) fn index(&mut self, name: &str) -> io::Result<u32> {
        self.links()?
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| i)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Sends a request that creates something that must not exist yet.
    fn create(&mut self, msg: RouteNetlinkMessage) -> io::Result<()> {
        self.request(msg, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    fn new_link(&mut self, link: LinkMessage) -> io::Result<()> {
        self.create(RouteNetlinkMessage::NewLink(link))
    }

    /// Creates a veth pair `name` <-> `peer`; with `peer_netns` (an fd of
    /// `/proc/PID/ns/net`), the peer end is created directly in that
    /// network namespace.
    pub(crate) fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<RawFd>,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        if let Some(fd) = peer_netns {
            peer_msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.new_link(link)
    }

    /// Creates a bridge `name` that learns at most [`BRIDGE_MAX_LEARNED`]
    /// addresses.
    pub(crate) fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::FdbMaxLearned(
                BRIDGE_MAX_LEARNED,
            )])),
        ]));
        self.new_link(link)
    }

    /// Asks for a root qdisc of `kind` with no options on link `index`.
    ///
    /// Used as a probe: a kernel without the qdisc answers `ENOENT`
    /// ("qdisc kind is unknown"); one that has it refuses the missing
    /// options with another errno (or accepts, for qdiscs without any).
    pub(crate) fn probe_qdisc(&mut self, index: u32, kind: &str) -> io::Result<()> {
        let mut tc = root_qdisc(index);
        tc.attributes.push(TcAttribute::Kind(kind.into()));
        self.create(RouteNetlinkMessage::NewQueueDiscipline(tc))
    }

    fn set_link(&mut self, link: LinkMessage) -> io::Result<()> {
        self.request(RouteNetlinkMessage::SetLink(link), NLM_F_ACK)
            .map(drop)
    }

    /// Sets link `index` up or down.
    pub(crate) fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        link.header.change_mask = LinkFlags::Up;
        self.set_link(link)
    }

    /// Deletes link `index` (a veth pair goes with either end).
    pub(crate) fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(link), NLM_F_ACK)
            .map(drop)
    }

    /// Makes link `index` a port of bridge `master` (0: of none).
    pub(crate) fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::Controller(master));
        self.set_link(link)
    }

    /// Adds `addr/prefix` to link `index`.
    pub(crate) fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        self.create(RouteNetlinkMessage::NewAddress(msg))
    }

    /// Adds an IPv4 default route out of link `index` (on-link, no
    /// gateway: every address is looked up on that segment).
    pub(crate) fn add_default_route(&mut self, index: u32) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: AddressFamily::Inet,
            destination_prefix_length: 0,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Link,
            kind: RouteType::Unicast,
            ..Default::default()
        };
        msg.attributes.push(RouteAttribute::Oif(index));
        self.create(RouteNetlinkMessage::NewRoute(msg))
    }

    /// Replaces the root qdisc of link `index` with `kind`, whose options
    /// (the qdisc's own `TCA_OPTIONS` payload) are `options`.
    pub(crate) fn replace_root_qdisc(
        &mut self,
        index: u32,
        kind: &str,
        options: Vec<u8>,
    ) -> io::Result<()> {
        let mut tc = root_qdisc(index);
        tc.attributes.push(TcAttribute::Kind(kind.into()));
        tc.attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(tc),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes the root qdisc of link `index` (back to the default).
    pub(crate) fn delete_root_qdisc(&mut self, index: u32) -> io::Result<()> {
        let tc = root_qdisc(index);
        match self.request(RouteNetlinkMessage::DelQueueDiscipline(tc), NLM_F_ACK) {
            // Nothing to delete: already the default.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(drop),
        }
    }
}

/// A qdisc message addressed to the root qdisc of link `index`.
fn root_qdisc(index: u32) -> TcMessage {
    let mut tc = TcMessage::default();
    tc.header.index = index as i32;
    tc.header.parent = TcHandle::ROOT;
    tc
}

/// `TCA_OPTIONS` of `linux/rtnetlink.h`.
const TCA_OPTIONS: u16 = 2;
