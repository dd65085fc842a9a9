//! The floor: what ZeroMQ alone costs through the same hops as emq.
//!
//! client DEALER -> broker ROUTER | ROUTER -> worker DEALER and back, each a
//! separate process, forwarding the same message sizes with no logic at all;
//! plus the cost of handing a message to another process over a pipe and back
//! (what the jobmanager pays per job to reach its worker).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// `emq-bench floor-broker`: forward client <-> worker, nothing else.
pub(crate) fn broker(front: &str, back: &str) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let f = ctx.socket(zmq::ROUTER)?;
    let b = ctx.socket(zmq::ROUTER)?;
    for s in [&f, &b] {
        s.set_sndhwm(0)?;
        s.set_rcvhwm(0)?;
    }
    f.bind(front)?;
    b.bind(back)?;
    // The worker says hello first so that we know its identity.
    let hello = b.recv_multipart(0)?;
    let worker = hello[0].clone();
    loop {
        let mut items = [f.as_poll_item(zmq::POLLIN), b.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, -1)?;
        if items[0].is_readable() {
            while let Ok(mut m) = f.recv_multipart(zmq::DONTWAIT) {
                m.insert(0, worker.clone());
                b.send_multipart(m, 0)?;
            }
        }
        if items[1].is_readable() {
            while let Ok(mut m) = b.recv_multipart(zmq::DONTWAIT) {
                m.remove(0);
                f.send_multipart(m, 0)?;
            }
        }
    }
}

/// `emq-bench floor-worker`: echo everything back.
pub(crate) fn worker(back: &str) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER)?;
    s.set_sndhwm(0)?;
    s.set_rcvhwm(0)?;
    s.connect(back)?;
    s.send("hello", 0)?;
    loop {
        let m = s.recv_multipart(0)?;
        s.send_multipart(m, 0)?;
    }
}

/// `emq-bench pipe-echo`: read length-prefixed records on stdin, echo them.
pub(crate) fn pipe_echo() -> anyhow::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    while input.read_exact(&mut len).is_ok() {
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        input.read_exact(&mut buf)?;
        output.write_all(&len)?;
        output.write_all(&buf)?;
        output.flush()?;
    }
    Ok(())
}

/// Round trips per second and per-message latency through the raw floor.
pub(crate) struct Floor {
    pub client: zmq::Socket,
    _ctx: zmq::Context,
}

impl Floor {
    pub(crate) fn connect(front: &str) -> anyhow::Result<Floor> {
        let ctx = zmq::Context::new();
        let client = ctx.socket(zmq::DEALER)?;
        client.set_sndhwm(0)?;
        client.set_rcvhwm(0)?;
        client.connect(front)?;
        Ok(Floor { client, _ctx: ctx })
    }

    /// Pipelined: `n` messages with at most `window` outstanding.
    pub(crate) fn throughput(&self, n: usize, window: usize, size: usize) -> anyhow::Result<f64> {
        let payload = vec![b'x'; size];
        let started = Instant::now();
        let (mut sent, mut received) = (0, 0);
        while received < n {
            while sent < n && sent - received < window {
                self.client.send(&payload[..], zmq::DONTWAIT)?;
                sent += 1;
            }
            self.client.recv_bytes(0)?;
            received += 1;
            while self.client.recv_bytes(zmq::DONTWAIT).is_ok() {
                received += 1;
            }
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// One at a time: each round trip's duration.
    pub(crate) fn latencies(&self, n: usize, size: usize) -> anyhow::Result<Vec<Duration>> {
        let payload = vec![b'x'; size];
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.client.send(&payload[..], 0)?;
            self.client.recv_bytes(0)?;
            out.push(t.elapsed());
        }
        Ok(out)
    }
}

/// Median round trip of a message to another process over a pipe and back.
pub(crate) fn pipe_handoff(n: usize, size: usize) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("pipe-echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let rec: Vec<u8> = (size as u32)
        .to_le_bytes()
        .into_iter()
        .chain(std::iter::repeat_n(b'x', size))
        .collect();
    let mut back = vec![0u8; rec.len()];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        stdin.write_all(&rec)?;
        stdout.read_exact(&mut back)?;
        times.push(t.elapsed());
    }
    drop(stdin);
    let _ = child.wait();
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
