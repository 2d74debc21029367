//! Firebase streaming `GET`: `put` events carrying the whole value at path `/`, and periodic
//! `keep-alive` events, for as long as the client stays.
//!
//! The stream subscribes to the room's fan-out before its first read, then re-reads the value
//! after every change that concerns it and sends it when it differs from the last one sent. So
//! no change is lost between read and subscribe, bursts coalesce, and a room that does not
//! exist yet (a joiner waiting for the host) is simply `null` until its first write. Each
//! keep-alive tick also re-reads, which turns silent TTL expiry into a `null`.

use std::convert::Infallible;
use std::net::IpAddr;

use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Interval, MissedTickBehavior};

use super::firebase::{FirebaseError, Target, read_value};
use crate::app::AppState;
use crate::error::ApiError;
use crate::fanout::{FanoutEvent, Subscription};
use crate::limits::WatchPermit;
use crate::model::{Change, ChangeOp};
use crate::routes::watch::GaugeGuard;

/// Starts a stream of `target`; fails before any byte is sent if caps or the store refuse.
pub(super) async fn open(
    state: AppState,
    ip: IpAddr,
    target: Target,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, FirebaseError> {
    let keep_alive = state
        .settings
        .compat
        .firebase
        .as_ref()
        .map(|f| f.keep_alive)
        .ok_or_else(ApiError::not_found)?;
    let permit = state.admit_watcher(target.code().as_str(), ip)?;
    let subscription = state.store.fanout().subscribe(target.code().as_str());
    if !state.store.fanout().is_available() {
        return Err(ApiError::unavailable("the change feed is not connected").into());
    }
    let first = read_value(&state, &target).await?;
    let gauge = state.metrics.watchers.with_label_values(&["firebase"]);
    gauge.inc();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = FirebaseStream {
        state,
        target,
        subscription,
        ticker,
        last: first.clone(),
        stale: false,
        first: Some(first),
        _permit: permit,
        _gauge: GaugeGuard(gauge),
    };
    let events = stream::unfold(stream, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(event), s))
    });
    Ok(Sse::new(events))
}

struct FirebaseStream {
    state: AppState,
    target: Target,
    subscription: Subscription,
    ticker: Interval,
    /// The value the client holds.
    last: Value,
    /// A change may have happened since `last` was read.
    stale: bool,
    first: Option<Value>,
    _permit: WatchPermit,
    _gauge: GaugeGuard,
}

impl FirebaseStream {
    /// The next event, or `None` when the stream ends (shutdown, lost change feed, store down):
    /// Firebase clients reconnect and get the current value first.
    async fn next(&mut self) -> Option<Event> {
        if let Some(first) = self.first.take() {
            return Some(put(&first));
        }
        loop {
            if self.stale {
                self.stale = false;
                let value = read_value(&self.state, &self.target).await.ok()?;
                if value != self.last {
                    self.last = value;
                    return Some(put(&self.last));
                }
            }
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => return None,
                received = self.subscription.rx.recv() => match received {
                    Ok(FanoutEvent::Change(change)) => self.stale |= self.concerns(&change),
                    Err(RecvError::Lagged(_)) => self.stale = true,
                    Ok(FanoutEvent::Unavailable) | Err(RecvError::Closed) => return None,
                },
                _ = self.ticker.tick() => {
                    self.stale = true;
                    return Some(Event::default().event("keep-alive").data("null"));
                }
            }
        }
    }

    fn concerns(&self, change: &Change) -> bool {
        match &self.target {
            Target::Room(_) => true,
            Target::Slot(_, slot) => {
                change.op == ChangeOp::RoomDeleted || change.slot.as_deref() == Some(slot.as_str())
            }
        }
    }
}

/// Firebase's `put` event: the whole value at the stream's own path.
fn put(value: &Value) -> Event {
    Event::default()
        .event("put")
        .data(json!({"path": "/", "data": value}).to_string())
}
