//! The job queue every worker of a jobmanager takes from: one
//! `SOCK_SEQPACKET` socket pair. The jobmanager sends each job as one
//! message on its end (a turn's jobs in one `sendmmsg`); every worker holds
//! the other end and an idle one takes the next message, so a job never
//! waits behind another job while a worker is free (the way prefork servers
//! share one `accept()`). The kernel gives each message to exactly one
//! reader, whole.
//!
//! The jobmanager also keeps the workers' end, to take back what no worker
//! has taken yet (on shutdown, and to learn what a dead worker took).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Environment variable naming the workers' end's descriptor in a worker.
pub(crate) const QUEUE_FD_ENV: &str = "EMQ_WORKER_QUEUE_FD";

/// Send buffer asked for (the kernel caps it at `net.core.wmem_max`).
const SEND_BUFFER: libc::c_int = 4 << 20;

/// Most messages given to one `sendmmsg`.
const SEND_AT_ONCE: usize = 64;

/// The jobmanager's side of the queue.
pub(crate) struct SharedQueue {
    /// Where jobs are sent (non-blocking).
    send_end: OwnedFd,
    /// The end workers read; inherited by them (not close-on-exec).
    take_end: OwnedFd,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl SharedQueue {
    pub(crate) fn new() -> io::Result<SharedQueue> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: socketpair fills `fds` with two new descriptors we own.
        cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) })?;
        // SAFETY: both are fresh descriptors returned above.
        let (send_end, take_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl and setsockopt on descriptors we own.
        unsafe {
            cvt(libc::fcntl(send_end.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))?;
            let flags = cvt(libc::fcntl(send_end.as_raw_fd(), libc::F_GETFL))?;
            cvt(libc::fcntl(
                send_end.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            ))?;
            // Best effort: a smaller buffer only means fewer jobs queued in
            // the socket, the rest waiting in the jobmanager.
            libc::setsockopt(
                send_end.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&SEND_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(SharedQueue { send_end, take_end })
    }

    /// The descriptor workers inherit.
    pub(crate) fn take_fd(&self) -> RawFd {
        self.take_end.as_raw_fd()
    }

    /// The descriptor to poll for room (POLLOUT).
    pub(crate) fn send_fd(&self) -> RawFd {
        self.send_end.as_raw_fd()
    }

    /// Queue job messages, oldest first, in one syscall (`sendmmsg`): how
    /// many went in before the socket was full.
    pub(crate) fn send<'a>(&self, msgs: impl Iterator<Item = &'a [u8]>) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = msgs
            .take(SEND_AT_ONCE)
            .map(|m| libc::iovec {
                iov_base: m.as_ptr() as *mut libc::c_void,
                iov_len: m.len(),
            })
            .collect();
        if iovecs.is_empty() {
            return Ok(0);
        }
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is valid (no name, no control
                // data); its one iovec is set below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        loop {
            // SAFETY: each header points at one iovec of a message that
            // outlives the call; the count is the headers' length.
            let r = unsafe {
                libc::sendmmsg(
                    self.send_end.as_raw_fd(),
                    headers.as_mut_ptr(),
                    headers.len() as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }

    /// Take back every message no worker has taken yet, oldest first.
    pub(crate) fn take_back(&self, buf: &mut [u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Some(n)) = take(self.take_end.as_raw_fd(), buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

/// One message from the workers' end without blocking: `Ok(None)` when the
/// queue is empty. A message longer than `buf` is an error (the jobmanager
/// never sends one).
pub(crate) fn take(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: recv into a valid buffer; MSG_TRUNC reports the real length.
        let r = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if r >= 0 {
            let n = r as usize;
            if n > buf.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized job message"));
            }
            return Ok(Some(n));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_goes_whole_to_one_reader_and_comes_back_in_order() {
        let q = SharedQueue::new().unwrap();
        let msgs: Vec<[u8; 300]> = (0..100_000u32).map(|i| [(i % 251) as u8; 300]).collect();
        let mut sent = 0;
        let mut calls = 0;
        loop {
            let n = q.send(msgs[sent..].iter().map(|m| m.as_slice())).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= SEND_AT_ONCE);
            sent += n;
            calls += 1;
        }
        assert!(sent >= 32, "only {sent} small jobs fit in the queue");
        assert!(sent < 100_000, "a full queue says so");
        assert!(calls < sent, "{sent} messages took {calls} calls");
        let mut buf = vec![0u8; 1024];
        assert_eq!(take(q.take_fd(), &mut buf).unwrap(), Some(300));
        assert_eq!(buf[0], 0);
        let rest = q.take_back(&mut buf);
        assert_eq!(rest.len(), sent - 1);
        assert!(rest
            .iter()
            .enumerate()
            .all(|(i, m)| m.len() == 300 && m[0] == ((i + 1) % 251) as u8));
        assert_eq!(take(q.take_fd(), &mut buf).unwrap(), None);
        assert_eq!(q.send(std::iter::empty()).unwrap(), 0);
        let big = vec![1u8; crate::ipc::MAX_INLINE];
        assert_eq!(q.send(std::iter::once(big.as_slice())).unwrap(), 1);
        let mut small = [0u8; 16];
        assert!(take(q.take_fd(), &mut small).is_err());
    }
}
