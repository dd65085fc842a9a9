//! A TCP proxy that stands for a network between two hosts: every byte is
//! delivered a fixed one-way delay after it was sent, in order, both ways,
//! and the link can be cut (nothing passes, connections stay open: a
//! partition) and healed. This machine's kernel has no `netem`; a proxy on
//! loopback gives the tests the round trip of a real network without it.
//!
//! Each connection has a reader and a writer thread per direction: the
//! reader stamps what it reads with its arrival time, the writer holds it
//! until that time plus the delay, so throughput is not bounded by the delay.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netbed::Host;

/// A delaying proxy in front of one TCP endpoint.
pub struct DelayProxy {
    /// `tcp://127.0.0.1:PORT`: connect here instead of the target.
    pub endpoint: String,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Proxy `target` (`tcp://HOST:PORT`) with `one_way` delay each way.
    pub fn start(target: &str, one_way: Duration) -> DelayProxy {
        Self::start_in(None, target, one_way)
    }

    /// As [`DelayProxy::start`], run inside `host` of a test bed: it listens
    /// on the host's address and reaches `target` from there.
    pub fn start_in(host: Option<&Host>, target: &str, one_way: Duration) -> DelayProxy {
        let target = target.trim_start_matches("tcp://").to_string();
        let bind = host.map_or("127.0.0.1:0".to_string(), |h| format!("{}:0", h.addr));
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        let (bound_tx, bound_rx) = crossbeam_channel::bounded(1);
        let serve = move || {
            let listener = TcpListener::bind(&bind).expect("bind the proxy");
            let _ = bound_tx.send(listener.local_addr().expect("proxy address"));
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"));
                    pump(from, to, one_way, c.clone(), s.clone());
                }
            }
        };
        match host {
            Some(h) => {
                let h = h.clone();
                std::thread::spawn(move || h.within(serve))
            }
            None => std::thread::spawn(serve),
        };
        let addr = bound_rx.recv().expect("the proxy listens");
        DelayProxy {
            endpoint: format!("tcp://{addr}"),
            cut,
            stop,
        }
    }

    /// Stop forwarding (both ways) until [`DelayProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forward again, starting with what was held.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("tcp://"));
    }
}

/// Copy `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            while cut.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if stop.load(Ordering::SeqCst) || to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
