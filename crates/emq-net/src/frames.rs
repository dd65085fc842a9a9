//! Reading a multipart message into `zmq::Message` frames, which
//! `emq_proto::decode` reads in place.

use emq_proto::MAX_FRAMES;

/// Read one multipart message into `zmq::Message` frames: no copy per
/// frame. `flags` applies to the first frame (the rest of a multipart message
/// is always there once its first frame is).
pub fn recv_frames(socket: &zmq::Socket, flags: i32) -> Result<Vec<zmq::Message>, zmq::Error> {
    let mut frames = Vec::with_capacity(8);
    let mut flags = flags;
    loop {
        let mut m = zmq::Message::new();
        socket.recv(&mut m, flags)?;
        flags = 0;
        let more = m.get_more();
        frames.push(m);
        if !more {
            return Ok(frames);
        }
    }
}

/// Call `f` with the frames as plain slices. Each access to a
/// `zmq::Message`'s bytes is two calls into libzmq (data and size), and
/// decoding touches a frame many times: resolving them once here took about
/// a tenth of the router's instructions per job away.
pub fn with_slices<R>(frames: &[zmq::Message], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    const ON_STACK: usize = MAX_FRAMES + 2;
    if frames.len() <= ON_STACK {
        let mut slices: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        for (slice, frame) in slices.iter_mut().zip(frames) {
            *slice = frame;
        }
        f(&slices[..frames.len()])
    } else {
        let slices: Vec<&[u8]> = frames.iter().map(|m| &**m).collect();
        f(&slices)
    }
}
