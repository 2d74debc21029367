//! The tokio driver: sockets in, [`crate::core::Server`] decides, sockets out.
//!
//! One task per UDP listener, per TCP connection and per relay socket; the core sits behind one
//! short-held lock (no await while holding it), taken once per batch of datagrams. UDP is read
//! and written in batches ([`batch`]): `recvmmsg`, and one GSO send per run of datagrams for one
//! destination, so a busy flow costs a few system calls per batch instead of two per packet.

mod batch;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustc_hash::FxHashMap as HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use self::batch::BatchSocket;
use self::batch::{Out, Pending, Scratch};
use crate::core::{ClientAction, ClientAddr, Command, PeerAction, Server, Transmit, Transport};
use crate::proto::peek_frame_len;

/// Frames queued for one slow TCP client before further ones are dropped.
const TCP_QUEUE: usize = 256;
/// Socket buffers for UDP listeners and relays: bursts at tens of thousands of packets per
/// second overflow the kernel's ~200 KB default before a task gets to read them.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;
/// A TLS client has this long to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// One batch's buffers per worker thread rather than per relay: relays borrow them only
    /// between readiness and the synchronous sends, never across an await, so an allocation
    /// holds no receive buffer of its own.
    static RELAY_SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::new());
}

/// Batches a relay forwards in one go before yielding to other tasks.
const RELAY_ROUNDS: usize = 4;
/// Batches a client-facing listener forwards in one go before yielding.
const LISTENER_ROUNDS: usize = 8;

/// What one forwarded batch left to do.
enum Forwarded {
    /// Nothing was waiting.
    Idle,
    Done {
        /// The core queued messages (responses, Data indications) to send.
        flush: bool,
        /// Datagrams a full socket refused.
        pending: Vec<Pending>,
    },
}

/// Bounds on TCP/TLS clients.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub max: usize,
    /// A client without an allocation is closed after this long without sending.
    pub idle: Duration,
}

/// One open stream's place under [`StreamLimits::max`]; dropping it frees the place.
struct StreamSlot(Arc<Shared>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of the driver itself (the core counts protocol events).
#[derive(Debug, Default)]
pub struct DriverStats {
    pub streams_refused: AtomicU64,
    pub streams_idle_closed: AtomicU64,
    pub send_errors: AtomicU64,
    pub relay_bind_failures: AtomicU64,
    pub tcp_queue_drops: AtomicU64,
}

/// State shared by every task of one server.
pub struct Shared {
    core: Mutex<Server>,
    started: Instant,
    udp: HashMap<SocketAddr, Arc<BatchSocket>>,
    tcp: Mutex<HashMap<ClientAddr, mpsc::Sender<Vec<u8>>>>,
    relays: Mutex<HashMap<SocketAddr, (Arc<BatchSocket>, CancellationToken)>>,
    relay_ip: Option<IpAddr>,
    relay_ports: RangeInclusive<u16>,
    streams: StreamLimits,
    open_streams: AtomicUsize,
    timer_wake: Notify,
    pub draining: AtomicBool,
    pub stats: DriverStats,
    /// Cancelled when the process stops relaying (after drain).
    stop: CancellationToken,
}

impl Shared {
    pub fn new(
        core: Server,
        udp: std::collections::HashMap<SocketAddr, Arc<BatchSocket>>,
        relay_ip: Option<IpAddr>,
        relay_ports: RangeInclusive<u16>,
        streams: StreamLimits,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            core: Mutex::new(core),
            started: Instant::now(),
            udp: udp.into_iter().collect(),
            tcp: Mutex::default(),
            relays: Mutex::default(),
            relay_ip,
            relay_ports,
            streams,
            open_streams: AtomicUsize::new(0),
            timer_wake: Notify::new(),
            draining: AtomicBool::new(false),
            stats: DriverStats::default(),
            stop,
        })
    }

    pub fn core(&self) -> MutexGuard<'_, Server> {
        self.core.lock().expect("core lock poisoned")
    }

    fn now(&self) -> Instant {
        // Tokio's clock, so paused-time tests steer expiry too.
        tokio::time::Instant::now().into_std().max(self.started)
    }

    fn relay_socket(&self, relay: SocketAddr) -> Option<Arc<BatchSocket>> {
        let relays = self.relays.lock().expect("relay lock poisoned");
        relays.get(&relay).map(|(socket, _)| Arc::clone(socket))
    }

    /// Sends queued responses and carries out queued commands until the core has none left.
    async fn flush(self: &Arc<Self>) {
        loop {
            let (transmits, commands) = {
                let mut core = self.core();
                if !core.has_output() {
                    return;
                }
                let transmits: Vec<Transmit> =
                    std::iter::from_fn(|| core.poll_transmit()).collect();
                let commands: Vec<Command> = std::iter::from_fn(|| core.poll_command()).collect();
                (transmits, commands)
            };
            for t in transmits {
                self.send_to_client(t.to, &t.data).await;
            }
            for command in commands {
                self.execute(command);
            }
            self.timer_wake.notify_one();
        }
    }

    fn execute(self: &Arc<Self>, command: Command) {
        match command {
            Command::BindRelay {
                id,
                client,
                ipv6,
                even_port,
            } => {
                let bound = self.bind_relay(client, ipv6, even_port);
                let now = self.now();
                self.core().relay_bound(now, id, bound);
            }
            Command::ReleaseRelay { relay } => {
                let removed = self
                    .relays
                    .lock()
                    .expect("relay lock poisoned")
                    .remove(&relay);
                if let Some((_, cancel)) = removed {
                    cancel.cancel();
                }
            }
        }
    }

    /// Binds a relay socket on a random port of the range and starts its task.
    fn bind_relay(
        self: &Arc<Self>,
        client: ClientAddr,
        ipv6: bool,
        even_port: bool,
    ) -> Option<SocketAddr> {
        let ip = match (self.relay_ip, ipv6) {
            (Some(ip), _) if ip.is_ipv6() == ipv6 => ip,
            // Unless told otherwise, relay from the address the client reached, so the relay is
            // reachable where the listener is.
            _ if client.local.is_ipv6() == ipv6 && !client.local.ip().is_unspecified() => {
                client.local.ip()
            }
            _ if ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let (low, high) = (*self.relay_ports.start(), *self.relay_ports.end());
        let span = u32::from(high - low) + 1;
        let start = rand::random::<u32>() % span;
        for attempt in 0..span.min(64) {
            let mut port = low + ((start + attempt) % span) as u16;
            if even_port {
                port &= !1;
                if port < low {
                    continue;
                }
            }
            let Ok(std_socket) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
                continue;
            };
            enlarge_buffers(&std_socket);
            let Ok(socket) = std_socket
                .set_nonblocking(true)
                .and_then(|()| UdpSocket::from_std(std_socket))
                .and_then(BatchSocket::new)
            else {
                continue;
            };
            let Ok(addr) = socket.local_addr() else {
                continue;
            };
            let socket = Arc::new(socket);
            let cancel = self.stop.child_token();
            self.relays
                .lock()
                .expect("relay lock poisoned")
                .insert(addr, (Arc::clone(&socket), cancel.clone()));
            tokio::spawn(Arc::clone(self).relay_loop(socket, addr, cancel));
            return Some(addr);
        }
        self.stats
            .relay_bind_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("no free relay port");
        None
    }

    async fn send_to_client(&self, to: ClientAddr, bytes: &[u8]) {
        match to.transport {
            Transport::Udp => {
                if let Some(socket) = self.udp.get(&to.local) {
                    self.send_udp(socket, bytes, to.remote, None).await;
                }
            }
            Transport::Tcp | Transport::Tls => self.queue_stream(to, bytes),
        }
    }

    /// Queues a frame for a TCP/TLS client's writer; a full queue drops it (counted).
    fn queue_stream(&self, to: ClientAddr, bytes: &[u8]) {
        let sender = self
            .tcp
            .lock()
            .expect("tcp lock poisoned")
            .get(&to)
            .cloned();
        let Some(sender) = sender else { return };
        let mut frame = bytes.to_vec();
        // ChannelData over streams is padded to 4 bytes (RFC 8656 §12.5); STUN already is.
        frame.resize(frame.len().next_multiple_of(4), 0);
        if sender.try_send(frame).is_err() {
            self.stats.tcp_queue_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Handles one frame from a TCP/TLS client and forwards what the core says to forward.
    async fn client_packet(self: &Arc<Self>, client: ClientAddr, packet: &[u8]) {
        let now = self.now();
        let action = self.core().handle_client(now, client, packet);
        match action {
            // The fast path queues nothing, so there is nothing to flush.
            ClientAction::ToPeer { relay, peer, data } => {
                if let Some(socket) = self.relay_socket(relay) {
                    self.send_udp(&socket, &packet[data], peer, None).await;
                }
            }
            ClientAction::Done => self.flush().await,
        }
    }

    /// Sends one datagram (or `segment`-sized ones), waiting while the socket is full.
    async fn send_udp(
        &self,
        socket: &BatchSocket,
        bytes: &[u8],
        to: SocketAddr,
        segment: Option<usize>,
    ) {
        if socket.send(to, bytes, segment).await.is_err() {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what a full socket refused, then flushes the core if the batch asked for it.
    async fn finish(self: &Arc<Self>, forwarded: Forwarded) -> bool {
        let Forwarded::Done { flush, pending } = forwarded else {
            return false;
        };
        for p in pending {
            self.send_udp(&p.socket, &p.bytes, p.to, p.segment).await;
        }
        if flush {
            self.flush().await;
        }
        true
    }

    /// Sends a batch's recorded datagrams; `socket_of` finds the sending socket by address.
    fn send_outs(
        &self,
        scratch: &mut Scratch,
        socket_of: impl FnMut(SocketAddr) -> Option<Arc<BatchSocket>>,
        flush: bool,
    ) -> Forwarded {
        let mut errors = 0;
        let pending = scratch.send(socket_of, &mut errors);
        if errors > 0 {
            self.stats.send_errors.fetch_add(errors, Ordering::Relaxed);
        }
        Forwarded::Done { flush, pending }
    }

    async fn relay_loop(
        self: Arc<Self>,
        socket: Arc<BatchSocket>,
        relay: SocketAddr,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                ready = socket.readable() => if ready.is_err() { continue },
            }
            // Drain a few batches without awaiting on the socket, then let other tasks run.
            for _ in 0..RELAY_ROUNDS {
                let forwarded = RELAY_SCRATCH
                    .with_borrow_mut(|scratch| self.forward_from_peers(&socket, relay, scratch));
                if !self.finish(forwarded).await {
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Receives a batch on a relay socket and forwards it to the allocation's client.
    fn forward_from_peers(
        &self,
        socket: &BatchSocket,
        relay: SocketAddr,
        scratch: &mut Scratch,
    ) -> Forwarded {
        if let Err(nothing) = receive(socket, scratch) {
            return nothing;
        }
        let now = self.now();
        let mut flush = false;
        let mut streams = Vec::new();
        {
            let mut core = self.core();
            for (peer, range) in scratch.rx.datagrams() {
                let payload = scratch.rx.bytes(range.clone());
                match core.handle_peer(now, relay, peer, payload) {
                    PeerAction::ChannelData { to, header } if to.transport == Transport::Udp => {
                        scratch
                            .outs
                            .push(Out::new(to.local, to.remote, &header, range));
                    }
                    PeerAction::ChannelData { to, header } => streams.push((to, header, range)),
                    PeerAction::Queued => flush = true,
                    PeerAction::Drop => {}
                }
            }
        }
        for (to, header, range) in streams {
            let mut frame = header.to_vec();
            frame.extend_from_slice(scratch.rx.bytes(range));
            self.queue_stream(to, &frame);
        }
        self.send_outs(scratch, |via| self.udp.get(&via).cloned(), flush)
    }

    /// Receives a batch on a client-facing UDP socket: requests go to the core, ChannelData and
    /// Send indications out of the allocations' relay sockets.
    fn forward_from_clients(
        &self,
        socket: &BatchSocket,
        local: SocketAddr,
        scratch: &mut Scratch,
    ) -> Forwarded {
        if let Err(nothing) = receive(socket, scratch) {
            return nothing;
        }
        let now = self.now();
        let mut flush = false;
        {
            let mut core = self.core();
            for (remote, range) in scratch.rx.datagrams() {
                let client = ClientAddr {
                    transport: Transport::Udp,
                    remote,
                    local,
                };
                match core.handle_client(now, client, scratch.rx.bytes(range.clone())) {
                    ClientAction::ToPeer { relay, peer, data } => {
                        let body = range.start + data.start..range.start + data.end;
                        scratch.outs.push(Out::new(relay, peer, &[], body));
                    }
                    ClientAction::Done => flush = true,
                }
            }
        }
        // One lookup per destination group, not per datagram.
        self.send_outs(scratch, |relay| self.relay_socket(relay), flush)
    }

    pub async fn udp_loop(self: Arc<Self>, socket: Arc<BatchSocket>) {
        let Ok(local) = socket.local_addr() else {
            return;
        };
        // Listener workers are few; each keeps its own batch buffers.
        let mut scratch = Scratch::new();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                ready = socket.readable() => if ready.is_err() { continue },
            }
            for _ in 0..LISTENER_ROUNDS {
                let forwarded = self.forward_from_clients(&socket, local, &mut scratch);
                if !self.finish(forwarded).await {
                    break;
                }
            }
            // Socket reads do not count against tokio's budget: yield so a busy listener does
            // not starve the relays sharing its thread.
            tokio::task::yield_now().await;
        }
    }

    pub async fn tcp_accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    let Some(slot) = self.stream_slot() else {
                        continue;
                    };
                    if let Some(client) = stream_client(&stream, Transport::Tcp) {
                        tokio::spawn(Arc::clone(&self).stream_connection(stream, client, slot));
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub async fn tls_accept_loop(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return,
                r = listener.accept() => r,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.stream_slot() else {
                continue;
            };
            let Some(client) = stream_client(&stream, Transport::Tls) else {
                continue;
            };
            let (shared, acceptor) = (Arc::clone(&self), acceptor.clone());
            // The handshake runs in the connection's task so a slow client cannot stall accepts.
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => shared.stream_connection(tls, client, slot).await,
                    _ => tracing::debug!("TLS handshake failed or timed out"),
                }
            });
        }
    }

    /// A place for one more stream, or `None` (counted) when `--max-streams` are open.
    fn stream_slot(self: &Arc<Self>) -> Option<StreamSlot> {
        let open = self.open_streams.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot(Arc::clone(self));
        if open >= self.streams.max {
            self.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(slot)
    }

    /// One TCP or TLS client: frames in (RFC 8656 §12.5 framing), responses and relayed data out.
    async fn stream_connection<S>(self: Arc<Self>, stream: S, client: ClientAddr, _slot: StreamSlot)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
        self.tcp
            .lock()
            .expect("tcp lock poisoned")
            .insert(client, tx);
        let writer_task = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        let mut buf = BytesMut::with_capacity(4096);
        'read: loop {
            let read = tokio::select! {
                () = self.stop.cancelled() => break,
                r = tokio::time::timeout(self.streams.idle, reader.read_buf(&mut buf)) => r,
            };
            let read = match read {
                Ok(read) => read,
                // Quiet is fine while an allocation lives (it has its own lifetime).
                Err(_) if self.core().has_allocation(&client) => continue,
                Err(_) => {
                    self.stats
                        .streams_idle_closed
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
            loop {
                match peek_frame_len(&buf) {
                    Ok(Some(len)) if buf.len() >= len => {
                        let frame = buf.split_to(len);
                        self.client_packet(client, &frame).await;
                    }
                    Ok(_) => break,
                    // Not STUN or ChannelData: the stream cannot be resynchronised.
                    Err(_) => break 'read,
                }
            }
        }
        self.tcp.lock().expect("tcp lock poisoned").remove(&client);
        self.core().client_closed(client);
        self.flush().await;
        writer_task.abort();
    }

    /// Runs expiry at the core's deadlines until `stop`.
    pub async fn timer_loop(self: Arc<Self>) {
        loop {
            let next = self.core().poll_timeout();
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(self.now())
            });
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.timer_wake.notified() => continue,
                () = tokio::time::sleep(wait) => {}
            }
            let now = self.now();
            self.core().handle_timeout(now);
            self.flush().await;
        }
    }
}

/// Receives a batch into `scratch`; when none came, what the batch amounts to instead.
fn receive(socket: &BatchSocket, scratch: &mut Scratch) -> Result<(), Forwarded> {
    match socket.try_recv(&mut scratch.rx) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Forwarded::Idle),
        // ICMP errors surface as receive errors on some systems; they do not end the socket's task.
        Err(_) => Err(Forwarded::Done {
            flush: false,
            pending: Vec::new(),
        }),
    }
}

/// The 5-tuple of an accepted stream, with Nagle off (small STUN messages must not wait).
fn stream_client(stream: &TcpStream, transport: Transport) -> Option<ClientAddr> {
    let _ = stream.set_nodelay(true);
    Some(ClientAddr {
        transport,
        remote: stream.peer_addr().ok()?,
        local: stream.local_addr().ok()?,
    })
}

/// Asks for [`UDP_BUFFER_BYTES`] of send and receive buffer; the kernel caps it at its maximum.
pub fn enlarge_buffers(socket: &impl std::os::fd::AsFd) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
}
