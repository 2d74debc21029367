//! `loadtest` binary: load for a Switchboard deployment. Bounded in count and time always.
//!
//! Results go to stdout (a table, or `--json`); the progress bar and errors go to stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use loadtest::progress::Progress;
use loadtest::report::{Page, ReportFile, html};
use loadtest::signal::{self, Transport};
use loadtest::{nat, turn};

// The system allocator, not mimalloc as in signal-server: mimalloc here lowered the generator's
// CPU per WebSocket put but doubled the notify p99 it measures over SSE (A/B, low CPU steal).

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Peer pairs doing the signaling exchange (create, put offer, watch, put answer, notified, delete).
    Signal(SignalArgs),
    /// Pairs of TURN allocations relaying to each other through channels (clients on UDP or TCP).
    Turn(TurnArgs),
    /// Peers behind simulated NATs (network namespaces; root only) punching holes, falling back to TURN.
    Nat(NatArgs),
}

#[derive(Debug, clap::Args)]
struct NatArgs {
    /// NAT kinds to pair (every unordered pairing is tried): full-cone, address-restricted,
    /// port-restricted, symmetric.
    #[arg(
        long,
        env = "LOADTEST_NAT_KINDS",
        value_delimiter = ',',
        default_value = "full-cone,address-restricted,port-restricted,symmetric"
    )]
    kinds: Vec<nat::NatKind>,
    /// Trials (peer pairs) per pairing.
    #[arg(long, env = "LOADTEST_NAT_TRIALS", default_value_t = 3)]
    trials: usize,
    /// Trials at once (each builds four namespaces); at most 120.
    #[arg(long, env = "LOADTEST_NAT_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// TURN server to run on the lab's public side: `switchboard` (turn-server beside this
    /// binary, else on PATH), a path to a turn-server binary, or `coturn` (turnserver on PATH).
    #[arg(long, env = "LOADTEST_NAT_SERVER", default_value = "switchboard")]
    server: nat::ServerKind,
    /// How long peers try to punch a hole before falling back to the relay.
    #[arg(long, env = "LOADTEST_NAT_PUNCH_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    punch_timeout: Duration,
    /// Limit on one STUN or TURN exchange (the relay phase gets twice this).
    #[arg(long, env = "LOADTEST_STEP_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    step_timeout: Duration,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct TurnArgs {
    /// TURN server address (host:port).
    #[arg(long, env = "LOADTEST_TURN_SERVER", default_value = "127.0.0.1:3478")]
    server: std::net::SocketAddr,
    /// Client-to-server transport: udp, or tcp (one connection per client; relaying stays UDP).
    #[arg(long, env = "LOADTEST_TURN_TRANSPORT", default_value = "udp")]
    transport: turn::Transport,
    /// TURN REST shared secret the server accepts (credentials are minted here).
    #[arg(
        long,
        env = "LOADTEST_TURN_SECRET",
        hide_env_values = true,
        required_unless_present = "credentials_url"
    )]
    secret: Option<String>,
    /// Fetch credentials per allocation from this signal-server `/turn-credentials` URL instead.
    #[arg(long, env = "LOADTEST_CREDENTIALS_URL", conflicts_with = "secret")]
    credentials_url: Option<String>,
    /// Allocation pairs.
    #[arg(long, env = "LOADTEST_PAIRS", default_value_t = 10)]
    pairs: usize,
    /// Packets per second each client sends.
    #[arg(long, env = "LOADTEST_RATE", default_value_t = 50)]
    rate: u64,
    /// Payload bytes per packet (at least 32).
    #[arg(long, env = "LOADTEST_SIZE", default_value_t = 160)]
    size: usize,
    /// How long to send.
    #[arg(long, env = "LOADTEST_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Limit on one request (set-up, refreshes, release).
    #[arg(long, env = "LOADTEST_STEP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    step_timeout: Duration,
    /// How often each client refreshes its allocation and rebinds its channel while sending.
    #[arg(long, env = "LOADTEST_TURN_REFRESH", default_value = "4m", value_parser = humantime::parse_duration)]
    refresh: Duration,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct SignalArgs {
    /// signal-server base URLs, comma-separated; the two peers of a pair use neighbouring ones.
    #[arg(
        long,
        env = "LOADTEST_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    urls: Vec<String>,
    /// Concurrent rooms (peer pairs).
    #[arg(long, env = "LOADTEST_ROOMS", default_value_t = 100)]
    rooms: usize,
    /// Offer/answer rounds per room.
    #[arg(long, env = "LOADTEST_ROUNDS", default_value_t = 10)]
    rounds: usize,
    /// Watch transport: sse, ws or long-poll.
    #[arg(long, env = "LOADTEST_TRANSPORT", default_value = "sse")]
    transport: Transport,
    /// Puts go over each peer's own watch WebSocket instead of HTTP (needs `--transport ws`).
    #[arg(long, env = "LOADTEST_SOCKET_WRITES")]
    socket_writes: bool,
    /// Peers put without waiting to be notified of each other's puts (a write-throughput run;
    /// no notify latency is measured).
    #[arg(long, env = "LOADTEST_PUTS_ONLY")]
    puts_only: bool,
    /// Puts each peer sends back to back over its socket before awaiting their answers (needs
    /// `--socket-writes`): candidate slots `cand-<slot>-<j>`, then its offer or answer, like a
    /// peer sending a batch of ICE candidates with its description. A round is `2 x burst` puts.
    #[arg(long, env = "LOADTEST_BURST", default_value_t = 1)]
    burst: usize,
    /// Target puts per second over all rooms; 0 for as fast as possible.
    #[arg(long, env = "LOADTEST_RATE", default_value_t = 0.0)]
    rate: f64,
    /// Bytes per blob.
    #[arg(long, env = "LOADTEST_BLOB_BYTES", default_value_t = 512)]
    blob_bytes: usize,
    /// Hard limit on the whole run.
    #[arg(long, env = "LOADTEST_MAX_DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    max_duration: Duration,
    /// Limit on one step (a request or a notification).
    #[arg(long, env = "LOADTEST_STEP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    step_timeout: Duration,
    #[command(flatten)]
    output: Output,
}

/// Where results go; the same for every scenario.
#[derive(Debug, clap::Args)]
struct Output {
    /// Print the report as JSON (with per-second time series under `timeline`).
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with plots to this file (checked before the run).
    #[arg(long, env = "LOADTEST_REPORT", value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Draw no progress bar (one is drawn on stderr only when it is a terminal).
    #[arg(long)]
    no_progress: bool,
}

impl Output {
    /// Fails now, before any load, if the report path cannot be written.
    fn prepare(&self) -> anyhow::Result<Option<ReportFile>> {
        Ok(self.report.as_deref().map(ReportFile::create).transpose()?)
    }

    /// Prints the results, then writes the HTML report if one was asked for.
    fn emit(
        &self,
        json: serde_json::Value,
        human: String,
        file: Option<ReportFile>,
        page: impl FnOnce() -> Page,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json).context("report")?);
        } else {
            print!("{human}");
        }
        if let Some(file) = file {
            file.commit(&html::render(&page(), SystemTime::now()))?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let complete = match Cli::parse().command {
        Command::Signal(args) => signal(args).await?,
        Command::Turn(args) => turn(args).await?,
        Command::Nat(args) => nat(args).await?,
    };
    if !complete {
        std::process::exit(1);
    }
    Ok(())
}

/// Largest `--burst`: two peers' bursts fit the default 64 slots of a room.
const MAX_BURST: usize = 32;

/// Runs `loadtest signal`; false if a room did not complete.
async fn signal(args: SignalArgs) -> anyhow::Result<bool> {
    if args.rooms == 0 || args.rounds == 0 || args.urls.is_empty() {
        bail!("--rooms, --rounds and --urls must be non-empty");
    }
    if args.socket_writes && args.transport != Transport::WebSocket {
        bail!("--socket-writes needs --transport ws");
    }
    // Both peers' bursts share the room's slots (64 by default).
    if args.burst == 0 || args.burst > MAX_BURST || (args.burst > 1 && !args.socket_writes) {
        bail!("--burst must be 1 to {MAX_BURST}, and above 1 only with --socket-writes");
    }
    let file = args.output.prepare()?;
    let options = signal::Options {
        urls: args
            .urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
        rooms: args.rooms,
        rounds: args.rounds,
        transport: args.transport,
        socket_writes: args.socket_writes,
        puts_only: args.puts_only,
        burst: args.burst,
        rate: args.rate,
        blob_bytes: args.blob_bytes,
        max_duration: args.max_duration,
        step_timeout: args.step_timeout,
    };
    let live = Arc::new(signal::Live::new(&options));
    let progress = Progress::signal(!args.output.no_progress, Arc::clone(&live));
    let report = signal::run_with(options, live).await;
    progress.finish();
    let page = || Page::signal(&report);
    args.output
        .emit(report.to_json(), report.human(), file, page)?;
    Ok(report.completed_rooms == args.rooms)
}

/// Runs `loadtest turn`; false if a pair could not be set up.
async fn turn(args: TurnArgs) -> anyhow::Result<bool> {
    if args.pairs == 0 || args.rate == 0 || args.duration > Duration::from_secs(3600) {
        bail!("--pairs and --rate must be positive and --duration at most 1h");
    }
    if args.refresh < Duration::from_millis(100) || args.refresh > Duration::from_secs(240) {
        bail!("--refresh must be between 100ms and 4m (permissions last 5 minutes)");
    }
    let file = args.output.prepare()?;
    let options = turn::Options {
        server: args.server,
        transport: args.transport,
        credentials: match (args.secret, args.credentials_url) {
            (_, Some(url)) => turn::CredentialSource::Url(url),
            (Some(secret), None) => turn::CredentialSource::Secret(secret),
            (None, None) => bail!("--secret or --credentials-url is needed"),
        },
        pairs: args.pairs,
        rate: args.rate,
        size: args.size.clamp(32, 65_000),
        duration: args.duration,
        step_timeout: args.step_timeout,
        refresh: args.refresh,
    };
    let live = Arc::new(turn::Live::new(&options));
    let progress = Progress::turn(!args.output.no_progress, Arc::clone(&live));
    let report = turn::run_with(options, live).await;
    progress.finish();
    let page = || Page::turn(&report);
    args.output
        .emit(report.to_json(), report.human(), file, page)?;
    Ok(report.ready_pairs == args.pairs)
}

/// Runs `loadtest nat`; false if a trial connected neither directly nor through the relay.
/// Bad flags: an error (exit 1). Not root (or no `ip`/`nft`): a message and exit status 2.
async fn nat(args: NatArgs) -> anyhow::Result<bool> {
    if args.kinds.is_empty() || args.trials == 0 || args.trials > 1000 {
        bail!("--kinds must name at least one NAT kind and --trials be 1 to 1000");
    }
    if !(1..=120).contains(&args.concurrency) {
        bail!("--concurrency must be 1 to 120");
    }
    if args.punch_timeout > Duration::from_secs(60) || args.step_timeout > Duration::from_secs(60) {
        bail!("--punch-timeout and --step-timeout must be at most 60s");
    }
    let stop = interrupted();
    // Flags first, so a bad one is named whoever runs it; then what building the lab needs.
    if let Err(why) = nat::check_prerequisites() {
        eprintln!("loadtest nat: {why}");
        std::process::exit(2);
    }
    let file = args.output.prepare()?;
    let options = nat::Options {
        kinds: args.kinds,
        trials: args.trials,
        concurrency: args.concurrency,
        server: args.server,
        punch_timeout: args.punch_timeout,
        step_timeout: args.step_timeout,
    };
    let live = Arc::new(nat::Live::new(&options));
    let progress = Progress::nat(!args.output.no_progress, Arc::clone(&live));
    let report = nat::run_until(options, live, stop).await;
    progress.finish();
    let report = match report {
        Ok(r) => r,
        Err(e @ nat::NatError::Interrupted) => {
            eprintln!("loadtest nat: {e}");
            std::process::exit(130);
        }
        Err(e) => return Err(e).context("loadtest nat"),
    };
    let page = || Page::nat(&report);
    args.output
        .emit(report.to_json(), report.human(), file, page)?;
    Ok(report.failed() == 0)
}

/// Completes on Ctrl-C or SIGTERM, so a run can delete what it made before exiting. The
/// handlers are installed here, at the call, not when the future is first polled: a signal in
/// between would otherwise kill the process with its namespaces still in place.
fn interrupted() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(int.as_mut()) => {}
            () = received(term.as_mut()) => {}
        }
    }
}

/// The next delivery of `signal`; never, when it could not be installed.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
