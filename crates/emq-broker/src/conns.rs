//! Which TCP connection each jobmanager talks on, so that a closed
//! connection (its process died: the kernel closed the socket) is known at
//! once instead of after the liveness window.
//!
//! ZeroMQ hides connections behind identities, but a received message carries
//! its connection's descriptor (the `__fd` property behind the deprecated
//! `ZMQ_SRCFD`), and the socket monitor reports DISCONNECTED with the same
//! descriptor. A descriptor number is reused by the next connection, and the
//! monitor's event may be read after a message of that next connection: so a
//! closed descriptor condemns an identity only if the descriptor no longer
//! holds the connection that identity was seen on (same peer address, still
//! established). Otherwise the liveness window decides, as before.

use std::collections::HashMap;
use std::os::fd::RawFd;

/// An identity, and its peer's address when it was seen.
type Seen = (Vec<u8>, Option<Vec<u8>>);

/// Jobmanager identities by the descriptor their messages came on.
#[derive(Default)]
pub(crate) struct Connections {
    by_fd: HashMap<RawFd, Vec<Seen>>,
    /// The identity of the latest message looked at: a run of messages from
    /// one jobmanager (its results under load) is looked at once.
    last: Vec<u8>,
}

impl Connections {
    /// Whether a message from `identity` needs its descriptor looked up
    /// (reading it from the message allocates in libzmq): not when the
    /// message before came from the same identity.
    pub(crate) fn wants(&mut self, identity: &[u8]) -> bool {
        if self.last == identity {
            return false;
        }
        self.last.clear();
        self.last.extend_from_slice(identity);
        true
    }

    /// A message from `identity` arrived on descriptor `fd`. Cheap when
    /// nothing changed (no allocation, no syscall).
    pub(crate) fn seen(&mut self, fd: RawFd, identity: &[u8]) {
        if self
            .by_fd
            .get(&fd)
            .is_some_and(|ids| ids.iter().any(|(id, _)| id == identity))
        {
            return;
        }
        // The identity may have moved from another descriptor.
        for ids in self.by_fd.values_mut() {
            ids.retain(|(id, _)| id != identity);
        }
        self.by_fd.retain(|_, ids| !ids.is_empty());
        let addr = peer_address(fd);
        self.by_fd.entry(fd).or_default().push((identity.to_vec(), addr));
    }

    /// The connection on `fd` closed: the identities that were on it and
    /// whose connection is gone (not a later one on the same number).
    pub(crate) fn closed(&mut self, fd: RawFd) -> Vec<Vec<u8>> {
        let Some(ids) = self.by_fd.remove(&fd) else {
            return Vec::new();
        };
        // Its next message (on a new connection) is looked at again.
        self.last.clear();
        let now = peer_address(fd);
        let alive = now.is_some() && established(fd);
        let (gone, kept): (Vec<_>, Vec<_>) = ids.into_iter().partition(|(_, addr)| !(alive && *addr == now));
        if !kept.is_empty() {
            self.by_fd.insert(fd, kept);
        }
        gone.into_iter().map(|(id, _)| id).collect()
    }
}

/// The peer's address on `fd`, as raw bytes (`None`: not a connected socket).
fn peer_address(fd: RawFd) -> Option<Vec<u8>> {
    // SAFETY: a zeroed sockaddr_storage is valid; getpeername writes at most
    // `len` bytes into it.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above; a closed or reused descriptor only makes it fail or
    // answer for the socket now there, which the caller compares.
    let r = unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) };
    if r != 0 {
        return None;
    }
    // SAFETY: getpeername wrote `len` bytes of the struct.
    let bytes =
        unsafe { std::slice::from_raw_parts((&addr as *const libc::sockaddr_storage).cast::<u8>(), len as usize) };
    Some(bytes.to_vec())
}

/// Whether `fd` is a TCP connection still established (a peer that closed
/// its end leaves ours in CLOSE_WAIT until ZeroMQ closes it).
fn established(fd: RawFd) -> bool {
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // TCP_ESTABLISHED is 1 in the kernel's state numbering.
    r == 0 && info.tcpi_state == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_closed_connection_condemns_only_who_was_on_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (a, _) = listener.accept().unwrap();
        let b_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let mut c = Connections::default();
        c.seen(a.as_raw_fd(), b"jm-a");
        c.seen(a.as_raw_fd(), b"jm-a");
        c.seen(b.as_raw_fd(), b"jm-b");
        // A stale event for b's descriptor while b is alive: nobody.
        assert!(c.closed(b.as_raw_fd()).is_empty());
        // a's peer goes away (its process died): a's identity is gone.
        drop(a_client);
        let mut a = a;
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 0, "FIN seen");
        assert_eq!(c.closed(a.as_raw_fd()), vec![b"jm-a".to_vec()]);
        assert!(c.closed(a.as_raw_fd()).is_empty(), "told once");
        // An unknown descriptor, or one closed already: nothing, no panic.
        drop(a);
        assert!(c.closed(12345).is_empty());
        drop(b_client);
    }
}
