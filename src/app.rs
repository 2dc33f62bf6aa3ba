//! The one place that builds components, wires their channels, and shuts them
//! down. Everything else receives what it needs as arguments.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::auth::{TokenReviewer, TokenVerifier};
use crate::cli::{serve::ServeArgs, Cli, Command};
use crate::index::Index;
use crate::metrics::Metrics;
use crate::model::MeshConfig;
use crate::source::file::FileSource;
use crate::source::kube::{KubeOptions, KubeSource};
use crate::source::SourceEvent;
use crate::xds::{Authenticate, ServingCert, WorkloadSecrets, XdsContext};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log_level)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(*args))
        }
        Command::Bootstrap(args) => crate::cli::bootstrap::run(args),
        Command::Iptables(args) => crate::cli::iptables::run(args),
        Command::Translate(args) => crate::cli::offline::translate(args),
        Command::Validate(args) => crate::cli::offline::validate(args),
        Command::Crds(args) => crate::cli::crds::run(args),
        Command::Token(args) => crate::cli::token::run(args),
        Command::Inject(args) => crate::cli::inject::run(args),
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?} is not a valid log filter"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());

    // source -> index
    let (events_tx, events_rx) = mpsc::channel(1024);
    let (source, mesh) = Source::build(&args, events_tx).await?;
    tracing::info!(?mesh, "mesh config");
    let kube_client = match &source {
        Source::Kube(source) => Some(source.client()),
        Source::File(..) => None,
    };
    let ca = match (&args.ca_dir, &args.ca_secret, &kube_client) {
        (Some(dir), _, _) => {
            let ca = crate::ca::Ca::load_or_create(dir, &mesh.trust_domain)
                .with_context(|| format!("loading the CA from --ca-dir {}", dir.display()))?;
            tracing::info!(ca = ?ca, dir = %dir.display(), "mesh CA ready");
            Some(ca)
        }
        (None, Some(secret), Some(client)) => {
            let ca =
                crate::source::kube::load_or_create_ca(client.clone(), secret, &mesh.trust_domain)
                    .await
                    .with_context(|| format!("--ca-secret {secret}"))?;
            tracing::info!(ca = ?ca, secret = %secret, "mesh CA ready");
            Some(ca)
        }
        (None, Some(_), None) => anyhow::bail!("--ca-secret needs --kube"),
        (None, None, _) => {
            tracing::warn!("no --ca-dir or --ca-secret: running without a CA, so no workload certificates, no mutual TLS, no TLS xDS port and no admission webhooks");
            None
        }
    };
    let identity = match ca {
        Some(ca) => Some(MeshIdentity::start(&args, ca, kube_client.clone())?),
        None => None,
    };
    let (index, snapshots) = Index::with_mesh(1, args.debounce, mesh);

    // Bind before spawning anything, so a taken port is a clean startup error.
    let xds_listener = tokio::net::TcpListener::bind(args.xds_addr)
        .await
        .with_context(|| format!("binding --xds-addr {}", args.xds_addr))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding --admin-addr {}", args.admin_addr))?;
    let tls_listener = match &identity {
        Some(_) => Some(
            tokio::net::TcpListener::bind(args.xds_tls_addr)
                .await
                .with_context(|| format!("binding --xds-tls-addr {}", args.xds_tls_addr))?,
        ),
        None => None,
    };
    tracing::warn!(addr = %args.xds_addr, "serving plaintext xDS: proxies are not authenticated and get no certificates; use for local work only");
    tracing::info!(admin = %args.admin_addr, source = %source, "rudder starting");

    let ctx = XdsContext::new(
        snapshots.clone(),
        identity.as_ref().map(|i| i.secrets.clone()),
        metrics.clone(),
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let wait_shutdown = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let webhooks = match &identity {
        Some(identity) => {
            Some(webhooks(&args, identity, wait_shutdown(shutdown_rx.clone())).await?)
        }
        None => None,
    };

    let cluster_writers = match kube_client {
        Some(client) => spawn_cluster_writers(
            &args,
            client,
            identity.as_ref().map(|i| i.secrets.ca().trust_bundle()),
            snapshots.clone(),
            metrics.leader.clone(),
        ),
        None => ClusterWriters::default(),
    };
    let index_task = tokio::spawn(index.run(events_rx));
    let source_task = tokio::spawn(source.run());
    let metrics_task = tokio::spawn(crate::admin::track_snapshots(
        snapshots.clone(),
        metrics.clone(),
    ));
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        crate::admin::AdminState {
            snapshots,
            xds: ctx.clone(),
            metrics,
            serving_cert: identity.as_ref().map(|i| i.serving.clone()),
        },
        wait_shutdown(shutdown_rx.clone()),
    ));
    let mut tls_task = match (identity, tls_listener) {
        (Some(identity), Some(listener)) => {
            tracing::info!(addr = %args.xds_tls_addr, trust_domain = identity.secrets.ca().trust_domain(), "serving TLS xDS; proxies authenticate with service-account tokens");
            let rotation = tokio::spawn(identity.secrets.clone().run_rotation());
            let serve = crate::xds::serve_tls(
                listener,
                ctx.clone(),
                identity.serving,
                identity.auth,
                wait_shutdown(shutdown_rx.clone()),
            );
            Some((tokio::spawn(serve), rotation))
        }
        _ => None,
    };
    let webhook_task = webhooks.map(tokio::spawn);
    let xds_task = tokio::spawn(crate::xds::serve(
        xds_listener,
        ctx,
        wait_shutdown(shutdown_rx),
    ));

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        r = source_task => match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("the config source stopped")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("the config source crashed: {e}")),
        },
        r = index_task => Err(anyhow::anyhow!("the index stopped: {r:?}")),
    };
    let _ = shutdown_tx.send(true);
    // Streams close with the server; give in-flight responses a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = xds_task.await;
        let _ = admin_task.await;
        if let Some((tls, _)) = &mut tls_task {
            let _ = tls.await;
        }
        if let Some(webhooks) = webhook_task {
            let _ = webhooks.await;
        }
    })
    .await;
    if let Some((_, rotation)) = tls_task {
        rotation.abort();
    }
    cluster_writers.stop().await;
    metrics_task.abort();
    outcome
}

/// The leader-only tasks, and the election they wait on.
#[derive(Default)]
struct ClusterWriters {
    writers: Vec<tokio::task::JoinHandle<()>>,
    election: Option<tokio::task::JoinHandle<()>>,
}

impl ClusterWriters {
    /// Stops writing and hands the lease on (released, not left to expire).
    async fn stop(self) {
        for writer in self.writers {
            writer.abort();
            let _ = writer.await;
        }
        if let Some(election) = self.election {
            let wait = std::time::Duration::from_secs(2);
            if tokio::time::timeout(wait, election).await.is_err() {
                tracing::warn!(
                    "the leader lease was not released within {wait:?}; it expires by itself"
                );
            }
        }
    }
}

/// The writes made for the whole cluster, by the leader only: the status of
/// refused objects and, with a CA, the sidecars' trust anchor in every
/// namespace and the API server's in the webhook configurations.
fn spawn_cluster_writers(
    args: &ServeArgs,
    client: kube::Client,
    trust_bundle: Option<String>,
    snapshots: tokio::sync::watch::Receiver<Arc<crate::model::Snapshot>>,
    leader_gauge: prometheus_client::metrics::gauge::Gauge,
) -> ClusterWriters {
    use crate::source::kube as k;
    let mut election = None;
    let leadership = if args.leader_election {
        let config = k::LeaseConfig {
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            name: args.leader_election_lease.clone(),
            duration: args.leader_lease_duration,
        };
        let (leadership, task) = k::Leadership::elect(client.clone(), config, k::leader_identity());
        election = Some(task);
        leadership
    } else {
        tracing::info!("--leader-election=false: this replica makes the cluster-wide writes");
        k::Leadership::always()
    };
    let mut writers = Vec::new();
    let mut watched = leadership.clone();
    writers.push(tokio::spawn(async move {
        loop {
            leader_gauge.set(i64::from(watched.is_leader()));
            if !watched.changed().await {
                return;
            }
        }
    }));
    let status_client = client.clone();
    writers.push(tokio::spawn(
        leadership
            .clone()
            .run_while_leader("status of refused objects", move || {
                k::report_invalid_objects(status_client.clone(), snapshots.clone())
            }),
    ));
    if let Some(bundle) = trust_bundle {
        tracing::info!(
            config_map = k::ROOT_CERT_CONFIG_MAP,
            "the leader publishes the mesh root to every namespace"
        );
        let names = k::WebhookConfigNames {
            mutating: args.mutating_webhook_config.clone(),
            validating: args.validating_webhook_config.clone(),
        };
        tracing::info!(mutating = %names.mutating, validating = %names.validating, "the leader keeps the webhook configurations' caBundle on the mesh root");
        let (c, b) = (client.clone(), bundle.clone());
        writers.push(tokio::spawn(
            leadership
                .clone()
                .run_while_leader("webhook caBundle", move || {
                    k::patch_webhook_ca_bundles(c.clone(), names.clone(), b.clone())
                }),
        ));
        writers.push(tokio::spawn(
            leadership.run_while_leader("root certificate ConfigMaps", move || {
                k::publish_root_cert(client.clone(), bundle.clone())
            }),
        ));
    }
    ClusterWriters { writers, election }
}

/// The config source: `--config-dir` or `--kube`, exactly one (clap checks).
enum Source {
    File(FileSource, std::path::PathBuf),
    Kube(KubeSource),
}

impl Source {
    /// The source and the mesh config: `--mesh-config` if given, else in
    /// `--kube` mode the cluster's mesh ConfigMap, else the defaults.
    async fn build(
        args: &ServeArgs,
        events: mpsc::Sender<SourceEvent>,
    ) -> anyhow::Result<(Source, MeshConfig)> {
        let mesh = match &args.mesh_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --mesh-config {}", path.display()))?;
                let mesh = crate::api::parse_mesh_config(&text)
                    .map_err(|e| anyhow::anyhow!("--mesh-config {}: {e}", path.display()))?;
                Some(mesh)
            }
            None => None,
        };
        if let Some(dir) = &args.source.config_dir {
            let source = FileSource::new(dir.clone(), events)?;
            return Ok((Source::File(source, dir.clone()), mesh.unwrap_or_default()));
        }
        let source = kube_source(args, events).await?;
        let mesh = match mesh {
            Some(mesh) => mesh,
            None => source.mesh_config().await?,
        };
        Ok((Source::Kube(source), mesh))
    }

    async fn run(self) -> anyhow::Result<()> {
        match self {
            Source::File(source, _) => Ok(source.run().await?),
            Source::Kube(source) => {
                source.run().await;
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(_, dir) => write!(f, "--config-dir {}", dir.display()),
            Source::Kube(_) => f.write_str("--kube"),
        }
    }
}

/// `--kube`: a client from `--kubeconfig`, else `KUBECONFIG` or
/// `~/.kube/config`, else the in-cluster service account.
async fn kube_source(
    args: &ServeArgs,
    events: mpsc::Sender<SourceEvent>,
) -> anyhow::Result<KubeSource> {
    let client = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Client::try_from(config).context("creating the Kubernetes client")?
        }
        None => kube::Client::try_default().await.context(
            "no Kubernetes configuration: not in a cluster, and no KUBECONFIG or ~/.kube/config",
        )?,
    };
    let options = KubeOptions {
        mesh_config_map: args.mesh_config_map.clone(),
        // --mesh-config replaces the ConfigMap, so its edits must not apply.
        follow_mesh_config: args.mesh_config.is_none(),
    };
    Ok(KubeSource::new(client, events, options))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The CA and what hangs off it: workload certificates, the TLS xDS port's
/// certificate, and how that port authenticates proxies.
struct MeshIdentity {
    secrets: Arc<WorkloadSecrets>,
    serving: Arc<ServingCert>,
    auth: Arc<dyn Authenticate>,
}

/// Names every serving certificate carries, besides `--tls-san`.
const SERVING_NAMES: [&str; 4] = [
    "rudder",
    "rudder.rudder-system.svc",
    "localhost",
    "127.0.0.1",
];
/// Rudder's own certificate lives a year and is renewed at 80 % of that.
const SERVING_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

impl MeshIdentity {
    fn start(
        args: &ServeArgs,
        ca: crate::ca::Ca,
        kube: Option<kube::Client>,
    ) -> anyhow::Result<Self> {
        let ca = Arc::new(ca);
        let mut names: Vec<String> = SERVING_NAMES.iter().map(|n| n.to_string()).collect();
        names.extend(args.tls_sans.iter().cloned());
        let serving = ServingCert::new(ca.clone(), names, SERVING_CERT_TTL)?;
        let auth = authenticator(args, kube)?;
        Ok(MeshIdentity {
            secrets: WorkloadSecrets::new(ca, args.workload_cert_ttl),
            serving: Arc::new(serving),
            auth,
        })
    }
}

/// How the TLS xDS port authenticates proxies: `--token-public-key` if given
/// (a JWT checked locally), else with `--kube` the API server's TokenReview.
fn authenticator(
    args: &ServeArgs,
    kube: Option<kube::Client>,
) -> anyhow::Result<Arc<dyn Authenticate>> {
    if let Some(key_path) = &args.token_public_key {
        let key = std::fs::read_to_string(key_path)
            .with_context(|| format!("reading --token-public-key {}", key_path.display()))?;
        let verifier = TokenVerifier::new(
            args.token_issuer.clone(),
            args.token_audiences.clone(),
            &key,
        )
        .map_err(|e| anyhow::anyhow!("--token-public-key {}: {e}", key_path.display()))?;
        tracing::info!(issuer = %args.token_issuer, audiences = ?args.token_audiences, key = %key_path.display(), "proxies authenticate with tokens checked against --token-public-key");
        return Ok(Arc::new(verifier));
    }
    let client = kube.context(
        "--ca-dir needs a way to check service-account tokens: --kube (TokenReview) or \
         --token-public-key (make a key pair with `rudder token keygen`)",
    )?;
    let reviewer = TokenReviewer::new(client, args.token_audiences.clone())
        .map_err(|e| anyhow::anyhow!("--token-audience: {e}"))?;
    tracing::info!(audiences = ?reviewer.audiences(), "proxies authenticate with tokens checked by Kubernetes TokenReview (needs create on tokenreviews)");
    Ok(Arc::new(reviewer))
}

/// The admission webhooks on --webhook-addr, with the TLS xDS port's
/// certificate. Bound here, so a taken port is a startup error; served once
/// the returned future is spawned.
async fn webhooks(
    args: &ServeArgs,
    identity: &MeshIdentity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let audience = args
        .token_audiences
        .first()
        .map_or("rudder", String::as_str);
    let template = args.injector.template(audience)?;
    let listener = tokio::net::TcpListener::bind(args.webhook_addr)
        .await
        .with_context(|| format!("binding --webhook-addr {}", args.webhook_addr))?;
    tracing::info!(addr = %args.webhook_addr, proxy_image = %template.proxy_image, xds = %template.xds_addr, "serving the admission webhooks: /validate, /inject");
    let tls = crate::webhook::server_config(identity.serving.clone());
    Ok(crate::webhook::serve(
        listener,
        tls,
        Arc::new(template),
        shutdown,
    ))
}

// File mode: the token is a JWT checked against the configured issuer key.
impl Authenticate for TokenVerifier {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<crate::auth::TokenIdentity, crate::auth::AuthError>>
    {
        Box::pin(std::future::ready(
            self.verify(token, std::time::SystemTime::now()),
        ))
    }
}

// In a cluster: the API server reviews the token.
impl Authenticate for TokenReviewer {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<crate::auth::TokenIdentity, crate::auth::AuthError>>
    {
        Box::pin(self.review(token))
    }
}
