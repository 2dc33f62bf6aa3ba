//! `rudder-loadgen proxies`: N simulated sidecars over ADS, multiplexed on a
//! pool of HTTP/2 connections, with progress on stderr and a JSON report.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::node::{node, NodeOptions};
use crate::shared::{now_ns, Shared};
use crate::stream::Link;
use crate::{changes, plan, report};

#[derive(clap::Args, Debug, Clone)]
pub struct ProxiesArgs {
    /// Plaintext ADS address (Rudder's --xds-addr, or istiod's 15010).
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: String,
    #[arg(long, default_value_t = 100)]
    pub proxies: u32,
    /// New streams per second; 0 opens them all at once (a control-plane restart).
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Use DeltaAggregatedResources instead of State of the World.
    #[arg(long)]
    pub delta: bool,
    /// Proxies are spread over ns-0..ns-(K-1), as `mesh --namespaces K` names them.
    #[arg(long, default_value_t = 10)]
    pub namespace_count: u32,
    /// Make proxy i a pod of svc-(i % N), so services select it; 0: app=loadgen.
    #[arg(long, default_value_t = 0)]
    pub apps: u32,
    /// INTERCEPTION_MODE metadata: REDIRECT, TPROXY or NONE.
    #[arg(long, default_value = "REDIRECT")]
    pub interception: String,
    /// HTTP/2 connections shared by the streams [default: max(16, proxies/100)].
    #[arg(long)]
    pub connections: Option<u32>,
    /// Stop after this long (also the timeout of --until-*), e.g. 90s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop once every proxy has ACKed CDS, EDS, LDS and RDS.
    #[arg(long)]
    pub until_converged: bool,
    /// Stop once N changes are logged and each reached every proxy it should.
    #[arg(long, value_name = "N")]
    pub until_changes: Option<usize>,
    /// The churn driver's changes log (JSON lines), followed as it grows.
    #[arg(long, value_name = "FILE")]
    pub changes_log: Option<PathBuf>,
    /// Write the JSON report here (a summary goes to stdout either way).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Created once every proxy is ready, for scripts that start churn then.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Progress line interval on stderr.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub progress: Duration,
    /// Skip tracking resources re-sent unchanged (saves ~50 KB per proxy).
    #[arg(long)]
    pub no_redundancy_check: bool,
    /// One JSON line per response (small runs only).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    #[arg(long, default_value_t = 64 << 20)]
    pub max_message_bytes: usize,
    #[arg(long, default_value = "1.24.0")]
    pub istio_version: String,
    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,
}

/// How the run ended, for the exit code: 0 done, 2 an --until-* goal missed.
pub async fn run(args: ProxiesArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.proxies > 0 && args.proxies <= plan::MAX_PROXIES,
        "--proxies must be 1..={}",
        plan::MAX_PROXIES
    );
    let opts = NodeOptions {
        namespaces: args.namespace_count.max(1),
        apps: args.apps,
        interception: args.interception.clone(),
        istio_version: args.istio_version.clone(),
        cluster_id: args.cluster_id.clone(),
    };
    let mut shared = Shared::new(args.proxies as usize, args.delta, !args.no_redundancy_check);
    if let Some(path) = &args.trace {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        shared.trace = Some(parking_lot::Mutex::new(std::io::BufWriter::new(f)));
    }
    let shared = Arc::new(shared);
    let connections = args
        .connections
        .unwrap_or(16.max(args.proxies.div_ceil(100)))
        .clamp(1, args.proxies);
    let links = connect(&args, connections).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(path) = &args.changes_log {
        tokio::spawn(changes::tail(path.clone(), shared.clone()));
    }
    let ramp = tokio::spawn(spawn_proxies(
        shared.clone(),
        links,
        opts,
        args.proxies,
        args.ramp,
        stop_rx,
    ));
    let outcome = watch_run(&shared, &args).await;
    let _ = stop_tx.send(true);
    let handles = ramp.await.unwrap_or_default();
    let joined =
        tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(handles)).await;
    if joined.is_err() {
        eprintln!("loadgen: some proxies did not stop within 10s; reporting anyway");
    }
    if let Some(t) = &shared.trace {
        use std::io::Write;
        let _ = t.lock().flush();
    }
    shared.book.lock().finish();
    let report = report::build(&shared, &args, connections, outcome.all_ready_ns, now_ns());
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report::human(&report));
    Ok(if outcome.goal_met { 0 } else { 2 })
}

async fn connect(args: &ProxiesArgs, n: u32) -> anyhow::Result<Vec<Arc<Link>>> {
    let uri = format!("http://{}", args.xds_addr);
    let endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("--xds-addr {}", args.xds_addr))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        // Large CDS/RDS responses to many streams at once: keep windows wide.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(32 << 20));
    let mut links = Vec::new();
    for _ in 0..n {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {uri}"))?;
        links.push(Arc::new(Link {
            channel,
            max_message_bytes: args.max_message_bytes,
        }));
    }
    Ok(links)
}

/// Opens the streams, `ramp` per second; proxy i rides connection i % K.
async fn spawn_proxies(
    shared: Arc<Shared>,
    links: Vec<Arc<Link>>,
    opts: NodeOptions,
    n: u32,
    ramp: f64,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        if ramp > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(f64::from(i) / ramp)).await;
        }
        if *stop.borrow() {
            break;
        }
        let node = match node(i, &opts) {
            Ok(n) => n,
            Err(e) => {
                shared.warn(e);
                break;
            }
        };
        let link = links[i as usize % links.len()].clone();
        handles.push(tokio::spawn(crate::stream::run(
            shared.clone(),
            i as usize,
            node,
            link,
            stop.clone(),
        )));
    }
    handles
}

struct Outcome {
    all_ready_ns: Option<u64>,
    goal_met: bool,
}

/// Polls until a stop condition: an --until-* goal, --duration, or a signal.
async fn watch_run(shared: &Shared, args: &ProxiesArgs) -> Outcome {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_progress = Instant::now();
    let mut all_ready_ns = None;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let has_goal = args.until_converged || args.until_changes.is_some();
    let mut converged_changes = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut signal => {
                eprintln!("loadgen: signal received; stopping");
                return Outcome { all_ready_ns, goal_met: !has_goal };
            }
        }
        if all_ready_ns.is_none() && shared.ready.load(Relaxed) == args.proxies {
            let t = now_ns();
            all_ready_ns = Some(t);
            eprintln!(
                "loadgen: all {} proxies ready after {:.3}s",
                args.proxies,
                (t - shared.start_ns) as f64 / 1e9
            );
            if let Some(path) = &args.ready_file {
                if let Err(e) = std::fs::write(path, format!("{t}\n")) {
                    eprintln!("loadgen: writing {}: {e}", path.display());
                }
            }
        }
        let converged = !args.until_converged || all_ready_ns.is_some();
        let changes_done = match args.until_changes {
            Some(n) => {
                all_ready_ns.is_some() && shared.changes_converged(n, &mut converged_changes)
            }
            None => true,
        };
        if has_goal && converged && changes_done {
            return Outcome {
                all_ready_ns,
                goal_met: true,
            };
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            return Outcome {
                all_ready_ns,
                goal_met: !has_goal,
            };
        }
        if last_progress.elapsed() >= args.progress {
            last_progress = Instant::now();
            eprintln!("{}", report::progress(shared, args.proxies));
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
