//! Batched UDP I/O: many datagrams per system call. Receives use `recvmmsg` (and UDP GRO where the
//! kernel coalesces a flow); sends coalesce datagrams for one destination into one GSO send.
//! `quinn-udp` does the platform work and falls back to one datagram per call where unsupported.
//!
//! A relay forwards a batch in three steps: receive into a [`Scratch`], let the core decide
//! (recording each outgoing datagram as an [`Out`] that points into the receive buffer), then
//! [`Scratch::send`] groups the records by socket and destination, order kept within a group.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Room for one received buffer: the largest datagram, or a GRO train (which the kernel caps at
/// 64 KiB too).
const SLOT: usize = 1 << 16;
/// Bytes in one GSO send (the UDP length field's limit, with headroom for headers).
const MAX_GSO_BYTES: usize = 64_000;
/// Datagrams larger than this are sent one per call: the kernel refuses GSO segments above the
/// interface MTU, and `quinn-udp` then turns GSO off for the socket.
const MAX_GSO_SEGMENT: usize = 1_400;

/// A UDP socket with its batching state.
#[derive(Debug)]
pub struct BatchSocket {
    io: UdpSocket,
    state: UdpSocketState,
}

impl BatchSocket {
    pub fn new(io: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&io).into())?;
        Ok(Self { io, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub(super) async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Receives up to one batch of what is queued, without waiting; the count of buffers filled.
    pub(super) fn try_recv(&self, rx: &mut RecvBatch) -> io::Result<usize> {
        let mut slots = rx.buf.chunks_mut(SLOT);
        let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        let meta = &mut rx.meta;
        let received = self.io.try_io(Interest::READABLE, || {
            self.state.recv((&self.io).into(), &mut bufs, meta)
        })?;
        rx.filled = received;
        Ok(received)
    }

    /// Sends `contents` to `to`, as `segment`-sized datagrams when `segment` is given, without
    /// waiting. When the kernel refuses the GSO send for another reason than a full buffer, the
    /// datagrams go one by one; any of those a full buffer refuses is dropped with an error that
    /// is not `WouldBlock`, since a caller retrying the whole train would send the rest twice.
    pub(super) fn try_send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        match (self.try_send_once(to, contents, segment), segment) {
            (Err(e), Some(segment)) if e.kind() != io::ErrorKind::WouldBlock => {
                let mut last = Ok(());
                for datagram in contents.chunks(segment.max(1)) {
                    match self.try_send_once(to, datagram, None) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            last = Err(io::Error::other("socket full after a refused GSO send"));
                        }
                        Err(e) => last = Err(e),
                    }
                }
                last
            }
            (sent, _) => sent,
        }
    }

    fn try_send_once(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.io).into(), &transmit)
        })
    }

    /// Sends, waiting while the socket's buffer is full.
    pub(super) async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        loop {
            match self.try_send(to, contents, segment) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.writable().await?,
                other => return other,
            }
        }
    }

    fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }
}

/// Buffers for one batch of received datagrams.
pub(super) struct RecvBatch {
    buf: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
    filled: usize,
}

impl RecvBatch {
    fn new() -> Self {
        Self {
            buf: vec![0; SLOT * BATCH_SIZE],
            meta: [RecvMeta::default(); BATCH_SIZE],
            filled: 0,
        }
    }

    /// The datagrams of the last receive: sender and place in [`Self::bytes`] (a GRO buffer is
    /// split at its stride).
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, Range<usize>)> + '_ {
        self.meta[..self.filled]
            .iter()
            .enumerate()
            .flat_map(|(slot, meta)| {
                let start = slot * SLOT;
                let end = start + meta.len.min(SLOT);
                let stride = meta.stride.max(1);
                (start..end)
                    .step_by(stride)
                    .map(move |at| (meta.addr, at..(at + stride).min(end)))
            })
    }

    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// One datagram to send: `head` then bytes of the receive buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Out {
    /// The sending socket's address.
    pub(super) via: SocketAddr,
    pub(super) to: SocketAddr,
    pub(super) head: [u8; 4],
    pub(super) head_len: u8,
    pub(super) start: u32,
    pub(super) len: u32,
    /// Arrival order, kept within a destination.
    pub(super) seq: u32,
}

impl Out {
    pub(super) fn new(via: SocketAddr, to: SocketAddr, head: &[u8], body: Range<usize>) -> Self {
        let mut bytes = [0u8; 4];
        let head_len = head.len().min(4);
        bytes[..head_len].copy_from_slice(&head[..head_len]);
        Self {
            via,
            to,
            head: bytes,
            head_len: head_len as u8,
            start: body.start as u32,
            len: body.len() as u32,
            seq: 0,
        }
    }

    fn size(&self) -> usize {
        usize::from(self.head_len) + self.len as usize
    }
}

/// Datagrams a full socket did not take: sent later, waiting.
pub(super) struct Pending {
    pub(super) socket: Arc<BatchSocket>,
    pub(super) to: SocketAddr,
    pub(super) bytes: Vec<u8>,
    pub(super) segment: Option<usize>,
}

/// Datagrams recorded for sending, in arrival order.
pub(super) struct Outs(Vec<Out>);

impl Outs {
    pub(super) fn push(&mut self, mut out: Out) {
        out.seq = self.0.len() as u32;
        self.0.push(out);
    }
}

/// Per-thread (or per-listener) working memory for one batch.
pub(super) struct Scratch {
    pub(super) rx: RecvBatch,
    pub(super) outs: Outs,
    gso: Vec<u8>,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Self {
            rx: RecvBatch::new(),
            outs: Outs(Vec::with_capacity(BATCH_SIZE)),
            gso: Vec::with_capacity(MAX_GSO_BYTES),
        }
    }

    /// Sends every recorded datagram, one system call per run of equal-sized datagrams for one
    /// destination. Returns what full sockets refused, and counts the failures in `errors`.
    pub(super) fn send(
        &mut self,
        mut socket_of: impl FnMut(SocketAddr) -> Option<Arc<BatchSocket>>,
        errors: &mut u64,
    ) -> Vec<Pending> {
        let mut pending = Vec::new();
        let outs = &mut self.outs.0;
        outs.sort_unstable_by_key(|o| (o.via, o.to, o.seq));
        for group in outs.chunk_by(|a, b| a.via == b.via && a.to == b.to) {
            let Some(socket) = socket_of(group[0].via) else {
                continue;
            };
            let max = socket.max_segments();
            let mut rest = group;
            // Once the socket is full, the rest of this destination's runs wait too, in order.
            let mut blocked = false;
            while !rest.is_empty() {
                let taken = gather(&mut self.gso, &self.rx.buf, rest, max);
                let segment = (taken > 1).then(|| rest[0].size());
                rest = &rest[taken..];
                let sent = if blocked {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    socket.try_send(group[0].to, &self.gso, segment)
                };
                match sent {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        pending.push(Pending {
                            socket: Arc::clone(&socket),
                            to: group[0].to,
                            bytes: self.gso.clone(),
                            segment,
                        });
                    }
                    Err(_) => *errors += 1,
                }
            }
        }
        outs.clear();
        pending
    }
}

/// Copies the longest GSO-able run at the head of `outs` into `gso`: equal sizes, the last may be
/// shorter, at most `max` datagrams and [`MAX_GSO_BYTES`]. Returns how many it took (at least 1).
fn gather(gso: &mut Vec<u8>, buf: &[u8], outs: &[Out], max: usize) -> usize {
    gso.clear();
    let segment = outs[0].size();
    let batchable = (1..=MAX_GSO_SEGMENT).contains(&segment);
    let mut taken = 0;
    for out in outs {
        let size = out.size();
        let fits = taken == 0
            || (batchable
                && taken < max
                && size <= segment
                && size > 0
                && gso.len() + size <= MAX_GSO_BYTES);
        if !fits {
            break;
        }
        gso.extend_from_slice(&out.head[..usize::from(out.head_len)]);
        let start = out.start as usize;
        gso.extend_from_slice(&buf[start..start + out.len as usize]);
        taken += 1;
        if size < segment {
            break;
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(size: u32, seq: u32) -> Out {
        Out {
            via: "127.0.0.1:1".parse().unwrap(),
            to: "127.0.0.1:2".parse().unwrap(),
            head: [0; 4],
            head_len: 0,
            start: 0,
            len: size,
            seq,
        }
    }

    #[test]
    fn runs_of_equal_sizes_end_at_a_shorter_datagram() {
        let buf = vec![7u8; 4096];
        let mut gso = Vec::new();
        let outs = [out(100, 0), out(100, 1), out(60, 2), out(100, 3)];
        assert_eq!(gather(&mut gso, &buf, &outs, 64), 3);
        assert_eq!(gso.len(), 260);
        assert_eq!(gather(&mut gso, &buf, &outs[3..], 64), 1);
    }

    #[test]
    fn a_longer_datagram_starts_a_new_run_and_limits_hold() {
        let buf = vec![7u8; 70_000];
        let mut gso = Vec::new();
        assert_eq!(gather(&mut gso, &buf, &[out(100, 0), out(200, 1)], 64), 1);
        assert_eq!(gather(&mut gso, &buf, &[out(100, 0); 10], 4), 4);
        assert_eq!(gather(&mut gso, &buf, &[out(1_401, 0); 3], 64), 1);
        assert_eq!(gather(&mut gso, &buf, &[out(0, 0); 3], 64), 1);
        let many = [out(1_000, 0); 80];
        assert_eq!(gather(&mut gso, &buf, &many, 64), 64);
        assert!(gso.len() <= MAX_GSO_BYTES);
    }
}
