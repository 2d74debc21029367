//! A TURN client with its allocation: authenticated requests over either transport.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use turn_server::proto::{
    AttrType, Attribute, Class, Message, MessageBuilder, Method, PROTOCOL_UDP, TransactionId,
    long_term_key,
};

use super::Transport;
use super::conn::{self, Rx, Tx};
use super::credentials::Source;

/// One TURN client with its allocation.
pub(crate) struct TurnClient {
    pub(crate) tx: Tx,
    pub(crate) rx: Rx,
    pub(crate) session: Session,
    pub(crate) relay: SocketAddr,
}

/// Where a request's response comes from.
pub(super) enum Inbox<'a> {
    /// Read from the connection itself (set-up and release); ChannelData met there is skipped.
    Direct(&'a mut Rx),
    /// STUN messages the receive loop hands over while traffic flows.
    Forwarded(&'a mut mpsc::Receiver<Vec<u8>>),
}

impl Inbox<'_> {
    /// The next STUN message, or an error kind.
    async fn next(&mut self) -> Result<Vec<u8>, &'static str> {
        match self {
            Self::Direct(rx) => loop {
                let frame = rx.next().await.map_err(|_| "recv")?;
                if frame.first().is_some_and(|b| b & 0xC0 == 0) {
                    return Ok(frame.to_vec());
                }
            },
            Self::Forwarded(messages) => messages.recv().await.ok_or("recv"),
        }
    }
}

/// The credentials of one allocation and the long-term authentication state (RFC 8489 §9.2).
pub(crate) struct Session {
    username: String,
    password: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
    txn: u64,
}

impl TurnClient {
    /// Connects over `transport` and allocates a UDP relay (REQUESTED-TRANSPORT is UDP either
    /// way). `frame_len` is the largest data frame the client will send.
    pub(crate) async fn connect(
        transport: Transport,
        server: SocketAddr,
        source: &Source,
        frame_len: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (tx, rx) = conn::open(transport, server, frame_len, timeout).await?;
        let (username, password) = source.credential(timeout).await?;
        let mut client = Self {
            tx,
            rx,
            session: Session {
                username,
                password,
                realm: String::new(),
                nonce: String::new(),
                key: [0; 16],
                txn: rand::random(),
            },
            relay: server,
        };
        let resp = client
            .request(
                Method::ALLOCATE,
                &[Attribute::RequestedTransport(PROTOCOL_UDP)],
                timeout,
            )
            .await?;
        let msg = Message::decode(&resp).map_err(|_| "allocate_bad_response".to_owned())?;
        client.relay = match msg.attribute(AttrType::XOR_RELAYED_ADDRESS) {
            Some(Ok(Attribute::XorRelayedAddress(a))) => a,
            _ => return Err("allocate_no_relay".into()),
        };
        Ok(client)
    }

    /// [`Session::request`] reading responses straight from the connection.
    pub(crate) async fn request(
        &mut self,
        method: Method,
        attrs: &[Attribute<'_>],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let inbox = &mut Inbox::Direct(&mut self.rx);
        self.session
            .request(&self.tx, inbox, method, attrs, timeout)
            .await
    }
}

impl Session {
    /// An authenticated request; a 401/438 challenge is answered with its realm and nonce (up to
    /// twice). Each attempt, sending included, has `timeout`. Errors are kinds such as
    /// `allocate_401`, `refresh_timeout` or `channel_bind_auth`.
    pub(super) async fn request(
        &mut self,
        tx: &Tx,
        inbox: &mut Inbox<'_>,
        method: Method,
        attrs: &[Attribute<'_>],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let name = method_name(method);
        for _ in 0..3 {
            let (txn, out) = self.encode(method, attrs)?;
            let resp = tokio::time::timeout(timeout, async {
                tx.send_control(out).await?;
                loop {
                    let resp = inbox.next().await?;
                    if Message::decode(&resp).is_ok_and(|m| m.transaction_id() == txn) {
                        return Ok(resp);
                    }
                }
            })
            .await
            .map_err(|_| format!("{name}_timeout"))?
            .map_err(|kind: &str| format!("{name}_{kind}"))?;
            let msg = Message::decode(&resp).map_err(|_| format!("{name}_bad_response"))?;
            if msg.class() == Class::Success {
                return Ok(resp);
            }
            let code = match msg.attribute(AttrType::ERROR_CODE) {
                Some(Ok(Attribute::ErrorCode(e))) => e.code,
                _ => 0,
            };
            if matches!(code, 401 | 438) {
                if let Some(Ok(Attribute::Realm(r))) = msg.attribute(AttrType::REALM) {
                    self.realm = r.to_owned();
                }
                if let Some(Ok(Attribute::Nonce(n))) = msg.attribute(AttrType::NONCE) {
                    self.nonce = n.to_owned();
                }
                self.key = long_term_key(&self.username, &self.realm, &self.password);
                continue;
            }
            return Err(format!("{name}_{code}"));
        }
        Err(format!("{name}_auth"))
    }

    /// A request with a fresh transaction id, authenticated once a nonce is known.
    fn encode(
        &mut self,
        method: Method,
        attrs: &[Attribute<'_>],
    ) -> Result<(TransactionId, Vec<u8>), String> {
        self.txn = self.txn.wrapping_add(1);
        let mut id = [0u8; 12];
        id[4..].copy_from_slice(&self.txn.to_be_bytes());
        let txn = TransactionId(id);
        let mut out = Vec::with_capacity(256);
        let mut b = MessageBuilder::new(&mut out, Class::Request, method, txn);
        for a in attrs {
            b.add(a);
        }
        if !self.nonce.is_empty() {
            b.add(&Attribute::Username(&self.username))
                .add(&Attribute::Realm(&self.realm))
                .add(&Attribute::Nonce(&self.nonce))
                .message_integrity(&self.key);
        }
        b.fingerprint();
        b.finish().map_err(|_| "encode".to_owned())?;
        Ok((txn, out))
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::ALLOCATE => "allocate",
        Method::CHANNEL_BIND => "channel_bind",
        Method::REFRESH => "refresh",
        _ => "request",
    }
}
