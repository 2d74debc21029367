//! The connection from one client to the TURN server, over UDP or TCP, split into a sending
//! half ([`Tx`], cloneable) and a receiving half ([`Rx`]) that yields one STUN message or
//! ChannelData frame at a time.
//!
//! Over TCP (RFC 8656 §3.1) both kinds share one byte stream: [`Rx`] buffers what it reads and
//! cuts frames with the server's own framing rule ([`peek_frame_len`]: a STUN message is its
//! 20-byte header plus the length it declares, a ChannelData frame its 4-byte header plus its
//! length padded to 4, §12.5), so partial frames and several frames per read both work. Writes go
//! through a bounded queue to one writer task per connection: data that finds the queue full is
//! dropped (and counted by the caller), so a stream that cannot keep up never grows memory.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use turn_server::proto::peek_frame_len;

use super::Transport;

/// Bytes the writer queue of a TCP connection may hold (plus one frame of slack).
const QUEUE_BYTES: usize = 256 * 1024;
/// Bytes the writer gathers from its queue into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// The sending half of a connection.
#[derive(Clone)]
pub(crate) enum Tx {
    Udp(Arc<UdpSocket>, SocketAddr),
    Tcp(mpsc::Sender<Vec<u8>>),
}

/// The receiving half of a connection.
pub(crate) enum Rx {
    Udp(Arc<UdpSocket>, Vec<u8>),
    Tcp(FrameReader),
}

/// Opens a connection to `server`; `frame_len` is the largest data frame that will be sent,
/// which sizes the TCP writer queue.
pub(super) async fn open(
    transport: Transport,
    server: SocketAddr,
    frame_len: usize,
    timeout: Duration,
) -> Result<(Tx, Rx), String> {
    match transport {
        Transport::Udp => {
            let bind: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("valid");
            let socket = Arc::new(UdpSocket::bind(bind).await.map_err(|_| "bind")?);
            let rx = Rx::Udp(Arc::clone(&socket), vec![0; 65_536]);
            Ok((Tx::Udp(socket, server), rx))
        }
        Transport::Tcp => {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
                .await
                .map_err(|_| "connect_timeout")?
                .map_err(|_| "connect")?;
            stream.set_nodelay(true).map_err(|_| "connect")?;
            let (read, write) = stream.into_split();
            let frames = (QUEUE_BYTES / frame_len.max(1)).clamp(8, 1024);
            let (queue, pending) = mpsc::channel(frames);
            tokio::spawn(write_loop(write, pending));
            Ok((Tx::Tcp(queue), Rx::Tcp(FrameReader::new(read))))
        }
    }
}

impl Tx {
    /// Sends a data frame now or not at all: a full TCP queue drops it. The error is its kind.
    pub(crate) async fn send_data(&self, frame: &[u8]) -> Result<(), &'static str> {
        match self {
            Self::Udp(socket, server) => match socket.send_to(frame, server).await {
                Ok(_) => Ok(()),
                Err(_) => Err("send"),
            },
            Self::Tcp(queue) => queue.try_send(frame.to_vec()).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => "tcp_queue_full",
                mpsc::error::TrySendError::Closed(_) => "tcp_closed",
            }),
        }
    }

    /// Sends a STUN message, waiting for room in a TCP queue rather than dropping it.
    pub(super) async fn send_control(&self, message: Vec<u8>) -> Result<(), &'static str> {
        match self {
            Self::Udp(socket, server) => match socket.send_to(&message, server).await {
                Ok(_) => Ok(()),
                Err(_) => Err("send"),
            },
            Self::Tcp(queue) => queue.send(message).await.map_err(|_| "tcp_closed"),
        }
    }
}

impl Rx {
    /// The next datagram (UDP) or frame (TCP, ChannelData with its padding). Cancel-safe.
    pub(crate) async fn next(&mut self) -> io::Result<&[u8]> {
        match self {
            Self::Udp(socket, buf) => {
                let (n, _) = socket.recv_from(buf).await?;
                Ok(&buf[..n])
            }
            Self::Tcp(reader) => reader.next().await,
        }
    }
}

/// Cuts a TCP stream from the server into STUN messages and ChannelData frames.
pub(crate) struct FrameReader {
    read: OwnedReadHalf,
    buf: BytesMut,
    /// Length of the frame last returned, dropped from `buf` on the next call.
    returned: usize,
}

impl FrameReader {
    fn new(read: OwnedReadHalf) -> Self {
        Self {
            read,
            buf: BytesMut::with_capacity(WRITE_BATCH),
            returned: 0,
        }
    }

    async fn next(&mut self) -> io::Result<&[u8]> {
        self.buf.advance(std::mem::take(&mut self.returned));
        loop {
            match peek_frame_len(&self.buf) {
                Ok(Some(len)) if self.buf.len() >= len => {
                    self.returned = len;
                    return Ok(&self.buf[..len]);
                }
                Ok(_) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            self.buf.reserve(WRITE_BATCH);
            // `read_buf` only appends what one read returned, so cancelling loses nothing.
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Writes queued frames, several per write when they pile up, until every [`Tx`] is gone or the
/// stream fails (then sends find the queue closed).
async fn write_loop(mut write: OwnedWriteHalf, mut pending: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(frame) = pending.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_BATCH {
            let Ok(frame) = pending.try_recv() else { break };
            batch.extend_from_slice(&frame);
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Frames split across reads and several frames in one read come out whole and in order.
    #[tokio::test]
    async fn reader_cuts_frames_across_and_within_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (read, _write) = client.unwrap().into_split();
        let mut server = accepted.unwrap().0;
        let mut reader = FrameReader::new(read);
        // ChannelData of 5 bytes (padded to 8), a STUN header with no attributes, ChannelData of 4.
        let mut stream = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        stream.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]);
        stream.extend_from_slice(&[7; 12]);
        stream.extend_from_slice(&[0x40, 0x01, 0x00, 0x04, 9, 9, 9, 9]);
        server.write_all(&stream[..3]).await.unwrap();
        server.flush().await.unwrap();
        let reading = tokio::spawn(async move {
            let mut frames = Vec::new();
            for _ in 0..3 {
                frames.push(reader.next().await.unwrap().to_vec());
            }
            frames
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        server.write_all(&stream[3..]).await.unwrap();
        let frames = reading.await.unwrap();
        assert_eq!(frames[0], stream[..12]);
        assert_eq!(frames[1], stream[12..32]);
        assert_eq!(frames[2], stream[32..]);
    }

    /// A queue that nobody drains drops data instead of growing.
    #[tokio::test]
    async fn a_full_queue_drops_data() {
        let (queue, _pending) = mpsc::channel(2);
        let tx = Tx::Tcp(queue);
        assert_eq!(tx.send_data(&[0x40, 0, 0, 0]).await, Ok(()));
        assert_eq!(tx.send_data(&[0x40, 0, 0, 0]).await, Ok(()));
        assert_eq!(tx.send_data(&[0x40, 0, 0, 0]).await, Err("tcp_queue_full"));
    }
}
