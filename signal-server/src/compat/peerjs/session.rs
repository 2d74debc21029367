//! One PeerJS signaling socket: the connect checks, then relaying until the client leaves,
//! goes silent for the liveness timeout, is replaced, or the server shuts down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WsParams;
use super::hub::{Hub, Join, Outbound, Sent};
use crate::app::AppState;
use crate::limits::Bucket;
use crate::routes::watch::GaugeGuard;

/// Frames waiting for one slow socket before new ones are dropped.
const SOCKET_QUEUE: usize = 256;
/// Offline destinations one socket tracks expiry for before forgetting settled ones.
const MAX_PENDING_DESTINATIONS: usize = 256;

/// Runs the socket to its end.
pub(super) async fn run<S>(
    mut socket: S,
    state: AppState,
    hub: Arc<Hub>,
    ip: IpAddr,
    key: String,
    params: WsParams,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
{
    let (Some(given_key), Some(id), Some(token)) = (params.key, params.id, params.token) else {
        return refuse(
            &mut socket,
            error("No id, token, or key supplied to websocket server"),
        )
        .await;
    };
    if given_key != key {
        return refuse(&mut socket, error("Invalid key provided")).await;
    }
    if !super::valid_id(&id) || token.is_empty() || token.len() > 128 {
        return refuse(&mut socket, error("Invalid id or token")).await;
    }
    // The per-IP watcher cap covers PeerJS sockets too; the "room" is the ID.
    let Ok(_permit) = state.admit_watcher(&format!("peerjs:{id}"), ip) else {
        return refuse(
            &mut socket,
            error("Too many connections from this address or to this ID"),
        )
        .await;
    };
    let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
    let (join, session) = match hub.join(&id, &token, tx.clone()).await {
        Ok(joined) => joined,
        Err(err) => {
            tracing::warn!(%err, "PeerJS join failed");
            return refuse(&mut socket, error("Server is unavailable; retry")).await;
        }
    };
    let queued = match join {
        Join::Taken => {
            let taken = json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}});
            return refuse(&mut socket, taken).await;
        }
        Join::Full => {
            return refuse(
                &mut socket,
                error("Server has reached its concurrent user limit"),
            )
            .await;
        }
        Join::Open(queued) => {
            if send(&mut socket, json!({"type": "OPEN"}).to_string())
                .await
                .is_err()
            {
                hub.leave(&id, &token, session).await;
                return;
            }
            queued
        }
        Join::Reattached(queued) => queued,
    };
    let gauge = state.metrics.watchers.with_label_values(&["peerjs"]);
    gauge.inc();
    let _gauge = GaugeGuard(gauge);
    let mut peer = Peer {
        state: &state,
        hub: &hub,
        ip,
        id: &id,
        token: &token,
        session,
        tx,
        pending_expiry: HashMap::new(),
        last_refresh: Instant::now(),
    };
    peer.relay_loop(&mut socket, rx, queued).await;
    hub.leave(&id, &token, session).await;
}

struct Peer<'a> {
    state: &'a AppState,
    hub: &'a Arc<Hub>,
    ip: IpAddr,
    id: &'a str,
    token: &'a str,
    session: u64,
    /// This socket's own queue, for EXPIRE notices from expiry timers.
    tx: mpsc::Sender<Outbound>,
    /// Per offline destination, ids of messages queued for it whose expiry is pending.
    pending_expiry: HashMap<String, Arc<std::sync::Mutex<Vec<String>>>>,
    last_refresh: Instant,
}

impl Peer<'_> {
    async fn relay_loop<S>(
        &mut self,
        socket: &mut S,
        mut rx: mpsc::Receiver<Outbound>,
        queued: Vec<String>,
    ) where
        S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
    {
        for text in queued {
            if send(socket, text).await.is_err() {
                return;
            }
        }
        let alive = self.hub.limits().alive;
        let mut deadline = Instant::now() + alive;
        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => {
                    close(socket, close_code::AWAY, "server shutting down").await;
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    close(socket, close_code::NORMAL, "no heartbeat").await;
                    return;
                }
                out = rx.recv() => match out {
                    Some(Outbound::Text(text)) => {
                        if send(socket, text).await.is_err() {
                            return;
                        }
                    }
                    Some(Outbound::Replaced) | None => {
                        close(socket, close_code::NORMAL, "replaced by a new connection").await;
                        return;
                    }
                },
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        deadline = Instant::now() + alive;
                        if let Some(reply) = self.handle(text.as_str()).await
                            && send(socket, reply.to_string()).await.is_err()
                        {
                            return;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                },
            }
        }
    }

    /// Handles one client frame; returns a frame for this client, if any.
    async fn handle(&mut self, text: &str) -> Option<Value> {
        // Bad JSON keeps the socket, as with the reference server.
        let frame: Value = serde_json::from_str(text).ok()?;
        let kind = frame.get("type")?.as_str()?;
        match kind {
            "HEARTBEAT" => {
                self.refresh().await;
                None
            }
            "OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE" | "EXPIRE" => {
                let dst = frame.get("dst")?.as_str()?.to_owned();
                if self
                    .state
                    .rate_limits
                    .check(Bucket::Write, self.ip)
                    .is_err()
                {
                    self.state
                        .metrics
                        .rate_limited
                        .with_label_values(&["peerjs"])
                        .inc();
                    return Some(error("Rate limit exceeded; slow down"));
                }
                let relayed = json!({
                    "type": kind,
                    "src": self.id,
                    "dst": dst,
                    "payload": frame.get("payload").cloned().unwrap_or(Value::Null),
                });
                let queueable = !matches!(kind, "LEAVE" | "EXPIRE");
                match self.hub.send(&dst, relayed.to_string(), queueable).await {
                    Ok(Sent::Delivered | Sent::Dropped) => None,
                    Ok(Sent::Queued(msg)) => {
                        self.expire_later(dst, msg);
                        None
                    }
                    Ok(Sent::QueueFull) => Some(expire_notice(&dst, self.id)),
                    Err(err) => {
                        tracing::warn!(%err, "PeerJS relay failed");
                        Some(error("Server is unavailable; message not delivered"))
                    }
                }
            }
            // Unknown types are dropped, as with the reference server.
            _ => None,
        }
    }

    /// After the expiry timeout, takes back whatever `dst` has not collected and tells this
    /// client once per destination, as the reference server does.
    fn expire_later(&mut self, dst: String, msg: String) {
        if !self.pending_expiry.contains_key(&dst)
            && self.pending_expiry.len() >= MAX_PENDING_DESTINATIONS
        {
            self.pending_expiry
                .retain(|_, ids| !ids.lock().expect("expiry lock poisoned").is_empty());
        }
        let pending = Arc::clone(self.pending_expiry.entry(dst.clone()).or_default());
        {
            let mut ids = pending.lock().expect("expiry lock poisoned");
            ids.push(msg);
            // An earlier message already has its timer running; it takes this one too.
            if ids.len() > 1 {
                return;
            }
        }
        let hub = Arc::clone(self.hub);
        let tx = self.tx.clone();
        let me = self.id.to_owned();
        let wait = hub.limits().expire;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let ids = std::mem::take(&mut *pending.lock().expect("expiry lock poisoned"));
            if hub.expire(&dst, &ids).await {
                let notice = expire_notice(&dst, &me).to_string();
                let _ = tx.try_send(Outbound::Text(notice));
            }
        });
    }

    /// Keeps the registration alive in Redis, at most a few times per liveness period.
    async fn refresh(&mut self) {
        let every = self.hub.limits().alive / 4;
        if self.last_refresh.elapsed() < every {
            return;
        }
        self.last_refresh = Instant::now();
        match self.hub.refresh(self.id, self.token, self.session).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.tx.try_send(Outbound::Replaced);
            }
            Err(err) => tracing::warn!(%err, "PeerJS registration refresh failed"),
        }
    }
}

fn error(msg: &str) -> Value {
    json!({"type": "ERROR", "payload": {"msg": msg}})
}

fn expire_notice(dst: &str, me: &str) -> Value {
    json!({"type": "EXPIRE", "src": dst, "dst": me})
}

async fn send<S: Sink<Message> + Unpin>(socket: &mut S, text: String) -> Result<(), ()> {
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

async fn refuse<S: Sink<Message> + Unpin>(socket: &mut S, frame: Value) {
    if send(socket, frame.to_string()).await.is_ok() {
        close(socket, close_code::NORMAL, "").await;
    }
}

async fn close<S: Sink<Message> + Unpin>(socket: &mut S, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
