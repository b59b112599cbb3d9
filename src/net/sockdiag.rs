//! Resetting a host's TCP connections: every one of them is found with a
//! `sock_diag` dump and aborted with `SOCK_DESTROY` (Linux 4.5,
//! `CONFIG_INET_DIAG_DESTROY`), which sends the peer a reset. Run inside the
//! host, which holds `CAP_NET_ADMIN` over its network.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{SockDiagDestroy, SockDiagMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// Every TCP state but listening (servers keep listening) and the ends of
/// connections already closed.
fn connected() -> StateFlags {
    StateFlags::all() - StateFlags::LISTEN - StateFlags::TIME_WAIT - StateFlags::CLOSE
}

fn socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_SOCK_DIAG)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

fn send<T: netlink_packet_core::NetlinkSerializable>(
    s: &Socket,
    payload: T,
    flags: u16,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    s.send(&buf, 0)?;
    Ok(())
}

/// The ids of this network namespace's TCP connections of `family`.
fn connections(s: &Socket, family: u8) -> io::Result<Vec<SocketId>> {
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: connected(),
        socket_id: if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        },
    };
    send(
        s,
        SockDiagMessage::InetRequest(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = s.recv(&mut &mut buf[..], 0)?;
        let mut at = 0;
        while at < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            if len == 0 {
                return Ok(found);
            }
            at += len;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(found),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    };
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    found.push(r.header.socket_id.clone());
                }
                _ => {}
            }
        }
    }
}

/// Aborts every TCP connection of this network namespace (their peers get a
/// reset); how many.
pub(crate) fn reset_connections() -> io::Result<usize> {
    let s = socket()?;
    let mut reset = 0;
    for family in [AF_INET, AF_INET6] {
        for id in connections(&s, family)? {
            let request = InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: connected(),
                socket_id: id,
            };
            send(
                &s,
                SockDiagDestroy::new(SockDiagMessage::InetRequest(request)),
                NLM_F_REQUEST | NLM_F_ACK,
            )?;
            // The acknowledgement: 0, or why not (a socket closed meanwhile:
            // ENOENT, not an error of ours).
            let mut buf = vec![0u8; 4096];
            let n = s.recv(&mut &mut buf[..], 0)?;
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match msg.payload {
                NetlinkPayload::Error(e) => match e.code {
                    None => reset += 1,
                    Some(code) if -code.get() == libc::ENOENT => {}
                    Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                },
                _ => reset += 1,
            }
        }
    }
    Ok(reset)
}
