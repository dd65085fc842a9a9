//! The client's connections: one DEALER socket per router endpoint, and the
//! choice of the one to send on.
//!
//! Not one socket connected to every endpoint with `ZMQ_IMMEDIATE`: libzmq
//! 4.3 aborts the process (`!_more`, fq.cpp) when such a socket loses its
//! connection while a multipart message is half read, because the hiccup
//! terminates the pipe between two frames (libzmq issues 2163, 3663). And
//! without `IMMEDIATE` one socket round-robins over all its endpoints, so
//! submissions would wait in the pipe of a standby router that never binds.
//! Here each socket keeps its messages across reconnections, and a
//! submission goes to a router whose handshake has succeeded: the one used
//! last while it stays up, else the first that is.

use std::cell::Cell;
use std::time::{Duration, Instant};

use emq_net::handshake::{HandshakeFailure, HandshakeMonitor, Watched};

use crate::ClientError;

struct Link {
    /// The DEALER socket and its handshake monitor.
    watched: Watched,
    /// The router there sent us a BATCH: it reads ours (until we connect
    /// again, maybe to another router).
    batches: Cell<bool>,
}

impl Link {
    fn socket(&self) -> &zmq::Socket {
        self.watched.socket()
    }

    fn monitor(&self) -> &HandshakeMonitor {
        self.watched.monitor()
    }
}

pub(crate) struct Links {
    links: Vec<Link>,
    endpoints: Vec<String>,
    /// The link sent on last.
    current: Cell<Option<usize>>,
    /// The current link changed to another router since the last
    /// `take_reconnected`.
    switched: Cell<bool>,
}

impl Links {
    /// Connect one socket per endpoint, all with the same `identity`. Each is
    /// set up by `configure` (timeouts, CURVE) before it connects.
    pub(crate) fn connect(
        ctx: &zmq::Context,
        endpoints: &[impl AsRef<str>],
        identity: &[u8],
        curve: bool,
        configure: impl Fn(&zmq::Socket) -> Result<(), ClientError>,
    ) -> Result<Links, ClientError> {
        let mut links = Vec::with_capacity(endpoints.len());
        let mut names = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let socket = ctx.socket(zmq::DEALER)?;
            socket.set_identity(identity)?;
            configure(&socket)?;
            let watched = Watched::new(ctx, socket, curve)?;
            watched.socket().connect(endpoint.as_ref())?;
            links.push(Link {
                watched,
                batches: Cell::new(false),
            });
            names.push(endpoint.as_ref().to_string());
        }
        Ok(Links {
            links,
            endpoints: names,
            current: Cell::new(None),
            switched: Cell::new(false),
        })
    }

    /// Send `frames` to a router that is up, waiting up to `timeout` for one:
    /// `Rejected` at once when every endpoint has refused our handshake,
    /// `Unreachable` when none answered.
    pub(crate) fn send(&self, frames: Vec<Vec<u8>>, timeout: Duration) -> Result<(), ClientError> {
        let unreachable = || ClientError::Unreachable {
            endpoint: self.endpoints.join(","),
            waited: timeout,
        };
        let link = match self.await_up(timeout) {
            Ok(Some(link)) => link,
            Ok(None) => return Err(unreachable()),
            Err(refused) => return Err(ClientError::Rejected(refused.to_string())),
        };
        match self.links[link].socket().send_multipart(frames, 0) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => Err(unreachable()),
            Err(e) => Err(e.into()),
        }
    }

    /// The link to send on, once one is up (within `timeout`).
    fn await_up(&self, timeout: Duration) -> Result<Option<usize>, HandshakeFailure> {
        let deadline = Instant::now() + timeout;
        let mut refused: Vec<HandshakeFailure> = Vec::new();
        loop {
            for link in &self.links {
                for failure in link.monitor().failures() {
                    refused.retain(|f| f.endpoint != failure.endpoint);
                    refused.push(failure);
                }
            }
            if let Some(up) = self.choose() {
                return Ok(Some(up));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if refused.len() >= self.links.len().max(1) || (left.is_zero() && !refused.is_empty()) {
                return Err(refused.pop().expect("not empty"));
            }
            if left.is_zero() {
                return Ok(None);
            }
            let mut items: Vec<zmq::PollItem<'_>> = self
                .links
                .iter()
                .map(|l| l.monitor().socket().as_poll_item(zmq::POLLIN))
                .collect();
            let _ = zmq::poll(&mut items, left.as_millis().max(1).min(i64::MAX as u128) as i64);
        }
    }

    /// The current link while it is up, else the first that is (from the
    /// events the monitors have taken in).
    fn choose(&self) -> Option<usize> {
        if let Some(c) = self.current.get() {
            if self.links[c].monitor().is_connected() {
                return Some(c);
            }
        }
        let up = self.links.iter().position(|l| l.monitor().is_connected())?;
        if self.current.replace(Some(up)).is_some() {
            self.switched.set(true);
        }
        Some(up)
    }

    /// Whether we connected again, to the same router or another, after a
    /// connection was lost, since the last call: the router we talk to may
    /// have forgotten us.
    pub(crate) fn take_reconnected(&self) -> bool {
        let mut again = false;
        for link in &self.links {
            if link.monitor().take_reconnected() {
                link.batches.set(false);
                again = true;
            }
        }
        self.choose();
        again | self.switched.replace(false)
    }

    /// Wait up to `timeout` for any socket to have a message; false on a
    /// timeout or an interrupted wait.
    pub(crate) fn poll(&self, timeout: Duration) -> Result<bool, ClientError> {
        let ms = timeout.as_micros().div_ceil(1000).min(i64::MAX as u128) as i64;
        let polled = if let [one] = &self.links[..] {
            zmq::poll(&mut [one.socket().as_poll_item(zmq::POLLIN)], ms)
        } else {
            let mut items: Vec<zmq::PollItem<'_>> = self
                .links
                .iter()
                .map(|l| l.socket().as_poll_item(zmq::POLLIN))
                .collect();
            zmq::poll(&mut items, ms)
        };
        match polled {
            Ok(0) | Err(zmq::Error::EINTR) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the router we send to reads BATCH (it sent us one).
    pub(crate) fn reads_batches(&self) -> bool {
        self.choose().is_some_and(|l| self.links[l].batches.get())
    }

    /// The next message waiting on any socket, without blocking.
    pub(crate) fn try_recv(&self) -> Result<Option<Vec<zmq::Message>>, ClientError> {
        for link in &self.links {
            match emq_net::recv_frames(link.socket(), zmq::DONTWAIT) {
                Ok(frames) => {
                    if emq_proto::batch_entries(&frames).is_some() {
                        link.batches.set(true);
                    }
                    return Ok(Some(frames));
                }
                Err(zmq::Error::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}
