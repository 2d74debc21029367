//! What each client does while traffic flows: send stamped ChannelData at the set rate, receive
//! the other client's (handing STUN responses to the refresher), and keep the allocation,
//! permission and channel alive. The same for UDP and TCP; only the framing differs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use turn_server::proto::{Attribute, ChannelNumber, Method, Packet, channel_data_header};

use super::client::{Inbox, Session};
use super::conn::{Rx, Tx};
use super::{Options, Traffic, Transport};
use crate::stats::{Latency, Tally};

/// The channel every client binds towards the other client's relay.
pub(crate) const CHANNEL: ChannelNumber = ChannelNumber::MIN;
/// Bytes a packet's payload starts with: sequence number, send time, sender's clock base.
const STAMP: usize = 24;
/// The smallest payload sent; larger than the stamp.
const MIN_SIZE: usize = 32;

/// The ChannelData frame a client sends: header, `size` payload bytes (32 to 65535) and, on a
/// stream, padding to a multiple of 4 (RFC 8656 §12.5).
pub(super) fn data_frame(size: usize, transport: Transport) -> Vec<u8> {
    let size = size.clamp(MIN_SIZE, 65_535);
    let header = channel_data_header(CHANNEL, size).expect("at most 65535");
    let mut frame = header.to_vec();
    let len = match transport {
        Transport::Udp => size,
        Transport::Tcp => size.next_multiple_of(4),
    };
    frame.resize(4 + len, 0);
    frame
}

/// Sends ChannelData frames at the configured rate until `until`; returns errors by kind.
pub(super) async fn send_loop(tx: Tx, o: Options, until: Instant, traffic: Arc<Traffic>) -> Tally {
    let mut tally = Tally::default();
    let mut frame = data_frame(o.size, o.transport);
    let period = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    let base = Instant::now();
    let id = base_id(&base);
    let mut seq = 0u64;
    while Instant::now() < until {
        seq += 1;
        let sent_at = base.elapsed().as_nanos() as u64;
        frame[4..12].copy_from_slice(&seq.to_be_bytes());
        frame[12..20].copy_from_slice(&sent_at.to_be_bytes());
        frame[20..28].copy_from_slice(&id.to_be_bytes());
        match tx.send_data(&frame).await {
            Ok(()) => {
                // The receiver buckets by the same stamp, so per-second loss is exact.
                let stamp = stamp_instant(id, sent_at).unwrap_or(until);
                traffic.sent.add(stamp, 1);
            }
            Err(kind) => tally.error(kind),
        }
        next += period;
        tokio::time::sleep_until(next).await;
    }
    tally
}

/// What a receive loop measured.
pub(super) struct Received {
    pub(super) latency: Latency,
    /// Summed absolute differences of consecutive one-way delays (ms), and how many.
    pub(super) jitter_sum: f64,
    pub(super) jitter_n: u64,
    pub(super) tally: Tally,
}

/// Receives until `until`: ChannelData carrying a stamp is counted, STUN messages go to
/// `responses` (for the refresher; dropped if it is not waiting). Returns the connection's
/// receiving half for the release at the end.
pub(super) async fn receive_loop(
    mut rx: Rx,
    responses: mpsc::Sender<Vec<u8>>,
    until: Instant,
    traffic: Arc<Traffic>,
) -> (Rx, Received) {
    let mut r = Received {
        latency: Latency::default(),
        jitter_sum: 0.0,
        jitter_n: 0,
        tally: Tally::default(),
    };
    let mut last = None::<f64>;
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        let frame = match tokio::time::timeout_at(deadline, rx.next()).await {
            Err(_) => break,
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => {
                r.tally.error("recv");
                break;
            }
        };
        let data = match Packet::decode(frame) {
            Ok(Packet::ChannelData(c)) if c.data.len() >= STAMP => c.data,
            Ok(Packet::ChannelData(_)) => continue,
            Ok(Packet::Stun(_)) => {
                let _ = responses.try_send(frame.to_vec());
                continue;
            }
            Err(_) => {
                r.tally.error("undecodable");
                continue;
            }
        };
        let sent_at = u64::from_be_bytes(data[8..16].try_into().expect("8 bytes"));
        let sender_base = u64::from_be_bytes(data[16..24].try_into().expect("8 bytes"));
        let arrived = Instant::now();
        let now = arrived.duration_since(*EPOCH).as_nanos() as u64;
        let one_way = now.saturating_sub(sender_base.saturating_add(sent_at));
        let d = Duration::from_nanos(one_way);
        r.latency.record(d);
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(prev) = last {
            r.jitter_sum += (ms - prev).abs();
            r.jitter_n += 1;
        }
        last = Some(ms);
        traffic.received.add(arrived, 1);
        traffic.bytes.add(arrived, data.len() as u64);
        let stamp = stamp_instant(sender_base, sent_at).unwrap_or(arrived);
        traffic.delivered_by_send.add(stamp, 1);
    }
    (rx, r)
}

/// Every `o.refresh` until `until`: refreshes the allocation (default lifetime) and binds the
/// channel to `peer` again, which renews the channel and its permission (RFC 8656 §7, §12).
/// Responses arrive through `responses` and must come before `drain_end`, when the receive loop
/// stops. Returns the session for the release at the end.
pub(super) async fn refresh_loop(
    mut session: Session,
    tx: Tx,
    mut responses: mpsc::Receiver<Vec<u8>>,
    peer: SocketAddr,
    o: Options,
    until: Instant,
    drain_end: Instant,
) -> (Session, Tally) {
    let mut tally = Tally::default();
    let mut next = Instant::now() + o.refresh;
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        let started = Instant::now();
        let timeout = o
            .step_timeout
            .min(drain_end.saturating_duration_since(started));
        let inbox = &mut Inbox::Forwarded(&mut responses);
        let bind = [
            Attribute::ChannelNumber(CHANNEL),
            Attribute::XorPeerAddress(peer),
        ];
        let done = match session
            .request(&tx, inbox, Method::REFRESH, &[], timeout)
            .await
        {
            Ok(_) => {
                session
                    .request(&tx, inbox, Method::CHANNEL_BIND, &bind, timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => tally.record("refresh", started.elapsed()),
            Err(kind) => tally.error(kind),
        }
        next += o.refresh;
    }
    (session, tally)
}

/// A process-wide epoch so receivers can turn a sender's timestamp into latency.
fn base_id(base: &Instant) -> u64 {
    base.duration_since(*EPOCH).as_nanos() as u64
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// The send time a packet carries, as an `Instant`; `None` for a stamp out of range.
fn stamp_instant(sender_base: u64, sent_at: u64) -> Option<Instant> {
    EPOCH.checked_add(Duration::from_nanos(sender_base.checked_add(sent_at)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use turn_server::proto::ChannelData;

    #[test]
    fn frames_are_padded_on_streams_only() {
        let udp = data_frame(33, Transport::Udp);
        let tcp = data_frame(33, Transport::Tcp);
        assert_eq!((udp.len(), tcp.len()), (37, 40));
        for frame in [&udp, &tcp] {
            let c = ChannelData::decode(frame).unwrap();
            assert_eq!((c.channel, c.data.len()), (CHANNEL, 33));
        }
        assert_eq!(data_frame(1, Transport::Udp).len(), 4 + MIN_SIZE);
    }
}
