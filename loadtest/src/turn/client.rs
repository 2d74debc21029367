//! A TURN client over UDP with its allocation, and where it gets its credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::turn_auth::{SharedSecret, mint};
use serde_json::Value;
use tokio::net::UdpSocket;
use turn_server::proto::{
    AttrType, Attribute, Class, Message, MessageBuilder, Method, PROTOCOL_UDP, TransactionId,
    long_term_key,
};

use super::CredentialSource;

/// A ready credential source.
pub(super) enum Source {
    Secret(SharedSecret),
    Url(reqwest::Client, String),
}

impl Source {
    pub(super) fn new(from: &CredentialSource) -> Result<Self, String> {
        match from {
            CredentialSource::Secret(s) => SharedSecret::new(s.clone())
                .map(Self::Secret)
                .map_err(|_| "empty_secret".to_owned()),
            CredentialSource::Url(url) => Ok(Self::Url(reqwest::Client::new(), url.clone())),
        }
    }

    /// A username and password for one allocation.
    async fn credential(&self, timeout: Duration) -> Result<(String, String), String> {
        match self {
            Self::Secret(secret) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let cred = mint(secret, Some("loadtest"), Duration::from_secs(3600), now)
                    .map_err(|e| e.to_string())?;
                Ok((cred.username, cred.credential))
            }
            Self::Url(http, url) => {
                let response = http
                    .get(url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|_| "credentials_http".to_owned())?;
                if !response.status().is_success() {
                    return Err(format!("credentials_{}", response.status().as_u16()));
                }
                let body: Value = response
                    .json()
                    .await
                    .map_err(|_| "credentials_body".to_owned())?;
                let servers = body["iceServers"].as_array().cloned().unwrap_or_default();
                servers
                    .iter()
                    .find_map(|s| {
                        Some((
                            s["username"].as_str()?.to_owned(),
                            s["credential"].as_str()?.to_owned(),
                        ))
                    })
                    .ok_or_else(|| "credentials_missing".to_owned())
            }
        }
    }
}

/// One TURN client with its allocation.
pub(super) struct TurnClient {
    pub(super) socket: Arc<UdpSocket>,
    pub(super) server: SocketAddr,
    username: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
    password: String,
    pub(super) relay: SocketAddr,
    txn: u64,
}

impl TurnClient {
    pub(super) async fn connect(
        server: SocketAddr,
        source: &Source,
        timeout: Duration,
    ) -> Result<Self, String> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("valid");
        let socket = UdpSocket::bind(bind).await.map_err(|_| "bind".to_owned())?;
        let (username, password) = source.credential(timeout).await?;
        let mut client = Self {
            socket: Arc::new(socket),
            server,
            username,
            realm: String::new(),
            nonce: String::new(),
            key: [0; 16],
            password,
            relay: server,
            txn: rand::random(),
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

    /// An authenticated request; a 401/438 challenge is answered once with its realm and nonce.
    pub(super) async fn request(
        &mut self,
        method: Method,
        attrs: &[Attribute<'_>],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        for _ in 0..3 {
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
            self.socket
                .send_to(&out, self.server)
                .await
                .map_err(|_| "send".to_owned())?;
            let resp = self.response(txn, timeout).await?;
            let msg = Message::decode(&resp).map_err(|_| "bad_response".to_owned())?;
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
            return Err(format!("{}_{code}", method_name(method)));
        }
        Err(format!("{}_auth", method_name(method)))
    }

    async fn response(&self, txn: TransactionId, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 2048];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .map_err(|_| "timeout".to_owned())?
                .map_err(|_| "recv".to_owned())?;
            if Message::decode(&buf[..n]).is_ok_and(|m| m.transaction_id() == txn) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
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
