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
        let target = target.trim_start_matches("tcp://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let endpoint = format!("tcp://{}", listener.local_addr().expect("proxy address"));
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
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
        });
        DelayProxy { endpoint, cut, stop }
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
