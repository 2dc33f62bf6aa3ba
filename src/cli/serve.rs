//! `rudder serve`: run the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Exactly one config source: `--config-dir DIR` or `--kube`.
#[derive(clap::Args, Debug, Clone)]
#[group(id = "source", required = true, multiple = false)]
pub struct SourceArgs {
    /// Directory of Kubernetes YAML (Services, EndpointSlices, Istio kinds, ...),
    /// read recursively from *.yaml and *.yml files and watched for edits.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Watch a Kubernetes cluster, through --kubeconfig, else KUBECONFIG or
    /// ~/.kube/config, else the in-cluster service account.
    #[arg(long)]
    pub kube: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// With --kube: the kubeconfig file to use (its current context).
    #[arg(long, value_name = "FILE", conflicts_with = "config_dir")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kube: Istio's mesh ConfigMap, whose `mesh` key holds MeshConfig
    /// YAML. Read at start-up; Istio's defaults when it does not exist.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "istio-system/istio",
        conflicts_with = "config_dir"
    )]
    pub mesh_config_map: crate::source::kube::MeshConfigMap,
    /// Istio MeshConfig YAML (outboundTrafficPolicy, accessLogFile, ...): the
    /// content of Istio's `mesh` ConfigMap key. Read at start-up. With --kube
    /// it replaces the ConfigMap.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// Plaintext xDS (ADS) address. For local work: it authenticates nobody.
    #[arg(long, default_value = "0.0.0.0:15010")]
    pub xds_addr: SocketAddr,
    /// Mesh CA directory: Istio's plug-in `cacerts` files, or Rudder's own
    /// root, generated there on first start. Enables workload certificates
    /// (SDS), mutual TLS and the authenticated TLS xDS port.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// With --kube, instead of --ca-dir: the mesh CA in a Secret, with the
    /// same file names as keys. Missing, Rudder generates a root and creates
    /// the Secret (root-cert.pem, root-key.pem), so replicas and restarts
    /// share it. Needs get and create on secrets in NAMESPACE.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        conflicts_with_all = ["config_dir", "ca_dir"]
    )]
    pub ca_secret: Option<crate::source::kube::CaSecret>,
    /// Lifetime of workload certificates; each is replaced at 80 % of it.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub workload_cert_ttl: Duration,
    /// TLS xDS (ADS) address; every call must carry a service-account token.
    /// Served when --ca-dir is set.
    #[arg(long, default_value = "0.0.0.0:15012")]
    pub xds_tls_addr: SocketAddr,
    /// Extra DNS name or IP for the TLS xDS serving certificate, as proxies
    /// dial it (repeatable). Always included: rudder,
    /// rudder.rudder-system.svc, localhost, 127.0.0.1.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// Public key (PEM) that signs proxies' service-account JWTs, checked
    /// locally. `rudder token keygen` makes a pair. With --ca-dir: required
    /// in file mode; with --kube, optional (without it, Kubernetes
    /// TokenReview checks tokens) and preferred when given.
    #[arg(long, value_name = "FILE")]
    pub token_public_key: Option<PathBuf>,
    /// File mode: the `iss` every service-account token must carry.
    #[arg(long, default_value = "rudder-local")]
    pub token_issuer: String,
    /// An `aud` a token must carry (repeatable); with TokenReview, the
    /// audiences the review asks for.
    #[arg(long = "token-audience", default_value = "rudder")]
    pub token_audiences: Vec<String>,
    /// Admission webhooks over HTTPS: /validate and /inject. Served when
    /// --ca-dir is set, with the TLS xDS port's certificate.
    #[arg(long, default_value = "0.0.0.0:15017")]
    pub webhook_addr: SocketAddr,
    /// With --kube and --ca-dir: the MutatingWebhookConfiguration whose
    /// webhooks' caBundle Rudder keeps equal to its CA root.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "rudder-sidecar-injector",
        conflicts_with = "config_dir"
    )]
    pub mutating_webhook_config: String,
    /// With --kube and --ca-dir: the ValidatingWebhookConfiguration whose
    /// webhooks' caBundle Rudder keeps equal to its CA root.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "rudder-validator",
        conflicts_with = "config_dir"
    )]
    pub validating_webhook_config: String,
    /// With --kube: compete for a Lease so that one replica makes the
    /// cluster-wide writes (root-certificate ConfigMaps, webhook caBundle,
    /// status of refused objects); every replica serves xDS regardless.
    /// `false`: this replica always writes.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL",
        conflicts_with = "config_dir"
    )]
    pub leader_election: bool,
    /// The leader Lease's namespace; default: the client's namespace (in a
    /// pod, its own).
    #[arg(long, value_name = "NAMESPACE", conflicts_with = "config_dir")]
    pub leader_election_namespace: Option<String>,
    /// The leader Lease's name.
    #[arg(
        long,
        default_value = "rudder-leader",
        value_name = "NAME",
        conflicts_with = "config_dir"
    )]
    pub leader_election_lease: String,
    /// How long the leader holds the Lease without renewing it: a replica
    /// takes over at most this long after its leader stops.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, conflicts_with = "config_dir")]
    pub leader_lease_duration: Duration,
    /// What the injection webhook adds; its token audience is the first
    /// --token-audience.
    #[command(flatten)]
    pub injector: super::inject::InjectorArgs,
    /// Admin address: /healthz, /ready, /metrics, /debug/*.
    #[arg(long, default_value = "0.0.0.0:15014")]
    pub admin_addr: SocketAddr,
    /// Quiet period after a configuration change before the new config is
    /// pushed, e.g. 100ms; endpoint-only changes are pushed at most once per period.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, default_value = "info", env = "RUDDER_LOG")]
    pub log_level: String,
}

#[cfg(test)]
mod source_tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<super::ServeArgs, String> {
        let argv = ["rudder", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn exactly_one_source_is_required() {
        let file = parse(&["--config-dir", "cfg"]).unwrap();
        assert!(file.source.config_dir.is_some() && !file.source.kube);
        let kube = parse(&["--kube", "--kubeconfig", "k", "--mesh-config-map", "m/n"]).unwrap();
        assert!(kube.source.kube && kube.kubeconfig.is_some());
        assert_eq!(kube.mesh_config_map.to_string(), "m/n key mesh");

        let none = parse(&[]).unwrap_err();
        assert!(
            none.contains("--config-dir") && none.contains("--kube"),
            "{none}"
        );
        let both = parse(&["--config-dir", "cfg", "--kube"]).unwrap_err();
        assert!(both.contains("cannot be used with"), "{both}");
        let stray = parse(&["--config-dir", "cfg", "--kubeconfig", "k"]).unwrap_err();
        assert!(stray.contains("cannot be used with"), "{stray}");
        let stray = parse(&["--config-dir", "cfg", "--mesh-config-map", "a/b"]).unwrap_err();
        assert!(stray.contains("cannot be used with"), "{stray}");
    }

    #[test]
    fn ca_secret_needs_kube_and_excludes_ca_dir() {
        let ok = parse(&["--kube", "--ca-secret", "rudder-system/rudder-ca"]).unwrap();
        assert_eq!(ok.ca_secret.unwrap().to_string(), "rudder-system/rudder-ca");
        for bad in [
            &["--config-dir", "cfg", "--ca-secret", "a/b"][..],
            &["--kube", "--ca-dir", "ca", "--ca-secret", "a/b"],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("cannot be used with"), "{err}");
        }
        let err = parse(&["--kube", "--ca-secret", "just-a-name"]).unwrap_err();
        assert!(err.contains("NAMESPACE/NAME"), "{err}");
    }
}
