//! A progress bar on stderr while a run goes on (never stdout: that carries the results).
//!
//! The bar is drawn only when stderr is a terminal (indicatif hides it otherwise) and is
//! updated by a ticker task that reads the run's atomic counters a few times a second, so the
//! scenario's hot loops never touch it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::{nat, signal, turn};

/// How often the ticker reads the counters and redraws.
const TICK: Duration = Duration::from_millis(250);
/// Rates shown are averaged over at least this long, so they do not flicker.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// A running progress bar; cleared when finished or dropped.
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Rooms done (completed or failed) out of all, with rounds per second and errors.
    pub fn signal(enabled: bool, live: Arc<signal::Live>) -> Self {
        let mut rounds = Rate::default();
        Self::start(enabled, live.rooms as u64, move |bar| {
            let failed = live.errors.total();
            let done = live.completed_rooms.total() + failed;
            bar.set_position(done);
            bar.set_message(format!(
                "{done}/{} rooms  {:.0} rounds/s  {failed} errors",
                live.rooms,
                rounds.update(live.rounds.total()),
            ));
        })
    }

    /// Pairs set up out of all, then seconds sent out of the duration with packets per
    /// second, Mbit/s, loss so far and set-up errors.
    pub fn turn(enabled: bool, live: Arc<turn::Live>) -> Self {
        let (mut packets, mut bytes) = (Rate::default(), Rate::default());
        Self::start(enabled, live.pairs as u64, move |bar| {
            let errors = live.setup_errors.load(Ordering::Relaxed);
            let Some(traffic) = live.traffic() else {
                let n = live.set_up.load(Ordering::Relaxed);
                bar.set_position(n);
                bar.set_message(format!("set-up {n}/{} pairs  {errors} errors", live.pairs));
                return;
            };
            let total_ms = live.duration.as_millis() as u64;
            let done_ms = (traffic.started().elapsed().as_millis() as u64).min(total_ms);
            bar.set_length(total_ms.max(1));
            bar.set_position(done_ms);
            let (sent, received) = (traffic.sent.total(), traffic.received.total());
            // Packets in flight count as lost until they land; close enough for a live view.
            let loss = 1.0 - received as f64 / sent.max(1) as f64;
            bar.set_message(format!(
                "{:.1}/{:.1} s  {:.0} packets/s  {:.2} Mbit/s  loss {:.2}%  {errors} set-up errors",
                done_ms as f64 / 1000.0,
                total_ms as f64 / 1000.0,
                packets.update(received),
                bytes.update(traffic.bytes.total()) * 8.0 / 1e6,
                loss.max(0.0) * 100.0,
            ));
        })
    }

    /// NAT trials done out of all, with how many connected directly, through the relay, or not.
    pub fn nat(enabled: bool, live: Arc<nat::Live>) -> Self {
        Self::start(enabled, live.trials, move |bar| {
            let done = live.done.load(Ordering::Relaxed);
            bar.set_position(done);
            bar.set_message(format!(
                "{done}/{} trials  {} direct  {} relayed  {} failed",
                live.trials,
                live.direct.load(Ordering::Relaxed),
                live.relayed.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
            ));
        })
    }

    /// A bar of `len` steps that `update` refreshes every tick; nothing runs if it is hidden.
    fn start(
        enabled: bool,
        len: u64,
        mut update: impl FnMut(&ProgressBar) + Send + 'static,
    ) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target).with_style(style());
        if bar.is_hidden() {
            return Self { bar, ticker: None };
        }
        let drawn = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                update(&drawn);
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    /// Whether anything is drawn (false when stderr is not a terminal or progress is off).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Stops the ticker and clears the bar, before results go to stdout.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Events per second of a growing total, over the last [`RATE_WINDOW`] or more.
#[derive(Debug, Default)]
struct Rate {
    mark: Option<(Instant, u64)>,
    per_second: f64,
}

impl Rate {
    fn update(&mut self, total: u64) -> f64 {
        let now = Instant::now();
        match self.mark {
            None => self.mark = Some((now, total)),
            Some((at, before)) if now - at >= RATE_WINDOW => {
                let secs = (now - at).as_secs_f64();
                self.per_second = total.saturating_sub(before) as f64 / secs;
                self.mark = Some((now, total));
            }
            Some(_) => {}
        }
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_means_no_ticker() {
        let live = Arc::new(turn::Live::new(&turn::Options {
            server: "127.0.0.1:9".parse().unwrap(),
            transport: turn::Transport::Udp,
            credentials: turn::CredentialSource::Secret("s".into()),
            pairs: 1,
            rate: 1,
            size: 32,
            duration: Duration::from_secs(1),
            step_timeout: Duration::from_secs(1),
            refresh: Duration::from_secs(240),
        }));
        let p = Progress::turn(false, live);
        assert!(p.is_hidden());
        assert!(p.ticker.is_none());
        p.finish();
    }
}
