//! `loadtest nat`: peers behind simulated NATs of different kinds, each pair trying a direct
//! path (STUN, then UDP hole punching) and falling back to a TURN relay, as ICE does.
//!
//! Everything runs inside network namespaces this process makes and deletes (root only):
//! a "public" one with the TURN/STUN server on a bridge, and per peer a NAT namespace (nftables
//! rules for its kind) with a host namespace behind it. No packet leaves those namespaces.
//!
//! - `rules.rs`: the NAT kinds and their nftables rulesets.
//! - `netns.rs`: building and deleting namespaces ([`netns::Lab`], [`netns::Site`]).
//! - `thread.rs`: running a peer on a thread inside its namespace.
//! - `server.rs`: the TURN server in the public namespace (ours or coturn).
//! - `peer.rs`: what one peer does in a trial.
//! - `results.rs`: the report, per NAT pairing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

mod netns;
mod peer;
mod results;
mod rules;
mod server;
mod thread;

pub use netns::NetnsError;
pub use results::{COLUMNS, Pairing, Report};
pub use rules::NatKind;
pub use server::ServerKind;

use netns::{Lab, MAX_NATS};
use peer::{Path, Peer};
use thread::in_namespace;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// NAT kinds; every unordered pairing of them is tried (a kind with itself included).
    pub kinds: Vec<NatKind>,
    /// Trials per pairing.
    pub trials: usize,
    /// Trials at once (each makes four namespaces).
    pub concurrency: usize,
    pub server: ServerKind,
    /// How long peers try to punch a hole before falling back to the relay.
    pub punch_timeout: Duration,
    /// Limit on one step: a STUN exchange, a TURN request; the relay phase gets twice this.
    pub step_timeout: Duration,
}

impl Options {
    /// Every unordered pairing of the kinds, in a stable order.
    pub fn pairings(&self) -> Vec<(NatKind, NatKind)> {
        let mut kinds = self.kinds.clone();
        kinds.sort();
        kinds.dedup();
        let mut out = Vec::new();
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i..] {
                out.push((*a, *b));
            }
        }
        out
    }
}

/// Why the lab could not run at all (per-trial failures are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("{0}")]
    Prerequisite(String),
    #[error("building the lab: {0}")]
    Netns(#[from] NetnsError),
    #[error("{0}")]
    Server(String),
    #[error("interrupted; every namespace made was deleted")]
    Interrupted,
}

/// Counters a progress bar reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub trials: u64,
    pub done: AtomicU64,
    pub direct: AtomicU64,
    pub relayed: AtomicU64,
    pub failed: AtomicU64,
}

impl Live {
    pub fn new(o: &Options) -> Self {
        Self {
            trials: (o.pairings().len() * o.trials) as u64,
            ..Self::default()
        }
    }
}

/// Whether this machine can run the scenario (root, `ip`, `nft`); the error says why not.
pub fn check_prerequisites() -> Result<(), String> {
    netns::check_prerequisites()
}

/// Runs every trial, bounded by the trial timeouts; stops early (cleaning up) when `stop`
/// completes, e.g. on Ctrl-C.
pub async fn run_until(
    options: Options,
    live: Arc<Live>,
    stop: impl Future<Output = ()>,
) -> Result<Report, NatError> {
    check_prerequisites().map_err(NatError::Prerequisite)?;
    netns::remove_stale();
    tokio::pin!(stop);
    let secret = format!("{:032x}", rand::random::<u128>());
    // Interruptible from the start: a half-built lab is deleted when this future is dropped.
    let setup = async {
        let lab = Lab::create(netns::prefix_for(std::process::id())).await?;
        let server = server::Server::start(
            &options.server,
            &lab.public,
            &secret,
            Duration::from_secs(10),
        )
        .await
        .map_err(NatError::Server)?;
        Ok::<_, NatError>((lab, server))
    };
    let (lab, server) = tokio::select! {
        built = setup => built?,
        () = &mut stop => return Err(NatError::Interrupted),
    };
    let started = Instant::now();
    let work = trials(&options, &lab, server.addr, &secret, &live);
    let pairings = tokio::select! {
        p = work => p,
        () = stop => return Err(NatError::Interrupted),
    };
    // Dropped here, in order: the server, then the lab with whatever namespaces are left.
    drop(server);
    drop(lab);
    Ok(Report {
        options,
        pairings,
        elapsed: started.elapsed(),
    })
}

/// All trials of all pairings, `concurrency` at a time; worker `w` uses NAT slots 2w and 2w+1.
async fn trials(
    o: &Options,
    lab: &Lab,
    server: std::net::SocketAddr,
    secret: &str,
    live: &Live,
) -> Vec<Pairing> {
    let pairings = o.pairings();
    let queue: Vec<(usize, NatKind, NatKind)> = pairings
        .iter()
        .enumerate()
        .flat_map(|(i, (a, b))| std::iter::repeat_n((i, *a, *b), o.trials))
        .collect();
    let next = AtomicU64::new(0);
    let workers = o.concurrency.clamp(1, MAX_NATS / 2);
    let results = futures_util::future::join_all((0..workers).map(|w| {
        let (queue, next) = (&queue, &next);
        async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(pairing, a, b)) = queue.get(i) else {
                    break;
                };
                let trial = trial(o, lab, (2 * w, 2 * w + 1), (a, b), server, secret).await;
                live.done.fetch_add(1, Ordering::Relaxed);
                let counter = match trial.path {
                    Path::Direct => &live.direct,
                    Path::Relayed => &live.relayed,
                    Path::Failed => &live.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                mine.push((pairing, trial));
            }
            mine
        }
    }))
    .await;
    let mut out: Vec<Pairing> = pairings
        .into_iter()
        .map(|(a, b)| Pairing::new(a, b))
        .collect();
    for (pairing, trial) in results.into_iter().flatten() {
        out[pairing].add(&trial);
    }
    out
}

/// What one trial (one pair of peers) came to.
#[derive(Debug)]
pub(crate) struct Trial {
    pub(crate) path: Path,
    /// From the start (before STUN) until both peers had the path open.
    pub(crate) connect: Option<Duration>,
    pub(crate) errors: Vec<String>,
}

/// Two NATs of kinds `a` and `b` with a host behind each, and a peer on each host.
async fn trial(
    o: &Options,
    lab: &Lab,
    slots: (usize, usize),
    (a, b): (NatKind, NatKind),
    server: std::net::SocketAddr,
    secret: &str,
) -> Trial {
    let failed = |errors| Trial {
        path: Path::Failed,
        connect: None,
        errors,
    };
    let site_a = match lab.site(slots.0, a).await {
        Ok(s) => s,
        Err(e) => return failed(vec![format!("lab: {e}")]),
    };
    let site_b = match lab.site(slots.1, b).await {
        Ok(s) => s,
        Err(e) => return failed(vec![format!("lab: {e}")]),
    };
    let (to_b, from_a) = mpsc::channel(16);
    let (to_a, from_b) = mpsc::channel(16);
    let peer = |to_other, from_other| Peer {
        server,
        secret: secret.to_owned(),
        punch_timeout: o.punch_timeout,
        step_timeout: o.step_timeout,
        to_other,
        from_other,
        early: Vec::new(),
    };
    let (peer_a, peer_b) = (peer(to_b, from_b), peer(to_a, from_a));
    let start = Instant::now();
    let (ra, rb) = tokio::join!(
        in_namespace(&site_a.host, move || peer_a.run()),
        in_namespace(&site_b.host, move || peer_b.run()),
    );
    let (ra, rb) = match (ra, rb) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (ra, rb) => {
            let errors = [ra.err(), rb.err()].into_iter().flatten().collect();
            return failed(errors);
        }
    };
    let mut errors = ra.errors.clone();
    errors.extend(rb.errors.iter().cloned());
    // Both peers must agree; if they do not, the trial failed (and says so).
    let path = if ra.path == rb.path {
        ra.path
    } else {
        errors.push(format!("peers_disagree_{:?}_{:?}", ra.path, rb.path).to_lowercase());
        Path::Failed
    };
    let connect = match (path, ra.done_at, rb.done_at) {
        (Path::Direct | Path::Relayed, Some(x), Some(y)) => Some(x.max(y) - start),
        _ => None,
    };
    Trial {
        path,
        connect,
        errors,
    }
}
