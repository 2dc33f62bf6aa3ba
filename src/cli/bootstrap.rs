//! `rudder bootstrap`: print the Envoy bootstrap that points a stock Envoy
//! (sidecar or gateway) at Rudder's ADS endpoint.
//!
//! The bootstrap mirrors Istio's `envoy_bootstrap.json` where it matters to
//! users (admin on 127.0.0.1, Prometheus stats on 15090, readiness on 15021),
//! without the agent: readiness is Envoy's own admin `/ready`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use serde_json::{json, Map, Value};

/// Name of the static cluster that carries the ADS stream.
pub const XDS_CLUSTER: &str = "xds-grpc";
/// Name of the static cluster that reaches Envoy's own admin listener.
pub const ADMIN_CLUSTER: &str = "prometheus_stats";

#[derive(clap::Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// Proxy node id, Istio form: `sidecar~IP~POD.NS~NS.svc.cluster.local`
    /// (`router~...` for gateways).
    #[arg(long, value_name = "ID")]
    pub node_id: String,

    /// Envoy service cluster (node.cluster). Default: `POD.NAMESPACE`.
    #[arg(long)]
    pub cluster: Option<String>,

    /// Rudder's xDS address, `HOST:PORT`; HOST is an IP or a DNS name.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:15010")]
    pub xds_addr: String,

    /// Rudder's root certificate (PEM), e.g. the mounted `rudder-ca-root-cert`
    /// ConfigMap. Given, Envoy dials --xds-addr (the TLS port, 15012) over
    /// TLS with its `google_grpc` client, trusting only this root, and sends
    /// --token-file on every call.
    #[arg(long, value_name = "FILE", requires = "token_file")]
    pub xds_root_cert: Option<PathBuf>,

    /// The proxy's service-account token (a JWT), re-read by Envoy on every
    /// call so a rotated token is used as is. Needs --xds-root-cert.
    #[arg(long, value_name = "FILE", requires = "xds_root_cert")]
    pub token_file: Option<PathBuf>,

    /// The name Rudder's certificate is checked against, when it differs
    /// from the --xds-addr host (e.g. dialing an IP).
    #[arg(long, value_name = "NAME", requires = "xds_root_cert")]
    pub xds_server_name: Option<String>,

    /// Use incremental (delta) ADS instead of state-of-the-world.
    #[arg(long)]
    pub delta: bool,

    /// Node metadata entry; a VALUE that is a JSON object is kept as an object.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,

    /// Workload label, merged into the metadata's LABELS object.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// The proxy's locality, `region/zone/subzone` (suffixes optional), sent
    /// as Envoy's `node.locality`: locality load balancing prefers endpoints
    /// near it. Without it, Rudder uses the pod's `istio-locality` label.
    #[arg(long, value_name = "REGION/ZONE/SUBZONE")]
    pub locality: Option<String>,

    /// Envoy admin port (bound on 127.0.0.1 only).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,

    /// Prometheus stats listener port (`/stats/prometheus`).
    #[arg(long, default_value_t = 15090)]
    pub stats_port: u16,

    /// Readiness listener port (`/healthz/ready`).
    #[arg(long, default_value_t = 15021)]
    pub readiness_port: u16,

    /// Write the bootstrap here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("--node-id {id:?}: {reason}")]
    NodeId { id: String, reason: String },
    #[error("--xds-addr {addr:?}: {reason}")]
    XdsAddr { addr: String, reason: String },
    #[error("--meta {arg:?}: {reason}")]
    Meta { arg: String, reason: String },
    #[error("--label {arg:?}: {reason}")]
    Label { arg: String, reason: String },
    #[error("--cluster {cluster:?}: must not be empty")]
    Cluster { cluster: String },
    #[error("--locality {locality:?}: expected REGION/ZONE/SUBZONE, e.g. us-east1/us-east1-b (zone and subzone optional)")]
    Locality { locality: String },
    #[error("--{flag} {port}: {reason}")]
    Port {
        flag: &'static str,
        port: u16,
        reason: String,
    },
}

/// Proxy type, the first node-id field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    Router,
}

/// A parsed Istio-style node id: `TYPE~IP~POD.NS~NS.svc.DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId {
    pub kind: ProxyKind,
    pub ip: IpAddr,
    pub pod: String,
    pub namespace: String,
}

impl FromStr for NodeId {
    type Err = BootstrapError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| BootstrapError::NodeId {
            id: id.to_string(),
            reason,
        };
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod_ns, domain] = parts[..] else {
            return Err(err(format!(
                "want 4 '~'-separated fields TYPE~IP~POD.NS~NS.svc.cluster.local, got {}",
                parts.len()
            )));
        };
        let kind = match kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            other => return Err(err(format!("type {other:?} is not sidecar or router"))),
        };
        let ip = ip
            .parse()
            .map_err(|_| err(format!("{ip:?} is not an IP address")))?;
        let namespace = namespace_of_domain(domain).map_err(err)?;
        let pod = pod_of(pod_ns, &namespace).map_err(err)?;
        Ok(NodeId {
            kind,
            ip,
            pod,
            namespace,
        })
    }
}

/// The namespace from the 4th field, `NS.svc.DOMAIN` (Istio derives it the same way).
fn namespace_of_domain(domain: &str) -> Result<String, String> {
    let mut labels = domain.splitn(3, '.');
    let (ns, svc, rest) = (labels.next(), labels.next(), labels.next());
    match (ns, svc, rest) {
        (Some(ns), Some("svc"), Some(rest)) if !rest.is_empty() && is_dns_label(ns) => {
            Ok(ns.to_string())
        }
        _ => Err(format!(
            "4th field {domain:?} is not NS.svc.DOMAIN (e.g. default.svc.cluster.local)"
        )),
    }
}

/// The pod name from the 3rd field `POD.NS`; pod names may themselves hold dots.
fn pod_of(pod_ns: &str, namespace: &str) -> Result<String, String> {
    let Some((pod, ns)) = pod_ns.rsplit_once('.') else {
        return Err(format!("3rd field {pod_ns:?} is not POD.NAMESPACE"));
    };
    if ns != namespace {
        return Err(format!(
            "3rd field's namespace {ns:?} differs from the 4th field's {namespace:?}"
        ));
    }
    if pod.is_empty() || !pod.split('.').all(is_dns_label) {
        return Err(format!("pod name {pod:?} is not a DNS-1123 name"));
    }
    Ok(pod.to_string())
}

fn is_dns_label(s: &str) -> bool {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(valid)
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Where the xDS server is: an IP needs no DNS (STATIC), a name does (STRICT_DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
enum XdsTarget {
    Ip(SocketAddr),
    Dns { host: String, port: u16 },
}

fn parse_xds_addr(addr: &str) -> Result<XdsTarget, BootstrapError> {
    let err = |reason: &str| BootstrapError::XdsAddr {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return match sock.port() {
            0 => Err(err("port must not be 0")),
            _ => Ok(XdsTarget::Ip(sock)),
        };
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| err("want HOST:PORT"))?;
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return Err(err("port must be 1-65535")),
        Ok(p) => p,
    };
    let host_ok = host
        .split('.')
        .all(|l| is_dns_label(&l.to_ascii_lowercase()));
    if !host_ok {
        return Err(err("host is neither an IP address nor a DNS name"));
    }
    Ok(XdsTarget::Dns {
        host: host.to_string(),
        port,
    })
}

/// Splits `KEY=VALUE` at the first '='; the key must not be empty.
fn split_kv(arg: &str) -> Result<(&str, &str), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        Some(_) => Err("KEY must not be empty".into()),
        None => Err("want KEY=VALUE".into()),
    }
}

/// Node metadata: defaults from the node id, then `--meta`, then `--label`.
fn metadata(node: &NodeId, args: &BootstrapArgs) -> Result<Map<String, Value>, BootstrapError> {
    let mut meta = Map::new();
    meta.insert("NAMESPACE".into(), node.namespace.clone().into());
    meta.insert("NAME".into(), node.pod.clone().into());
    meta.insert("INTERCEPTION_MODE".into(), "REDIRECT".into());
    meta.insert("ISTIO_VERSION".into(), "rudder-0.1".into());
    meta.insert("CLUSTER_ID".into(), "Kubernetes".into());
    for arg in &args.meta {
        let (key, value) = split_kv(arg).map_err(|reason| BootstrapError::Meta {
            arg: arg.clone(),
            reason,
        })?;
        meta.insert(key.to_string(), meta_value(value));
    }
    merge_labels(&mut meta, &args.labels)?;
    Ok(meta)
}

/// Only JSON objects are decoded: `--meta PORT=8080` must stay the string "8080".
fn meta_value(value: &str) -> Value {
    match serde_json::from_str::<Value>(value) {
        Ok(obj @ Value::Object(_)) => obj,
        _ => Value::String(value.to_string()),
    }
}

fn merge_labels(meta: &mut Map<String, Value>, labels: &[String]) -> Result<(), BootstrapError> {
    if labels.is_empty() {
        return Ok(());
    }
    let entry = meta
        .entry("LABELS")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(obj) = entry.as_object_mut() else {
        return Err(BootstrapError::Meta {
            arg: "LABELS".into(),
            reason: "must be a JSON object for --label to merge into".into(),
        });
    };
    for arg in labels {
        let (key, value) = split_kv(arg).map_err(|reason| BootstrapError::Label {
            arg: arg.clone(),
            reason,
        })?;
        obj.insert(key.to_string(), value.into());
    }
    Ok(())
}

/// Envoy fails at startup (not in validation) when two listeners share a port.
fn check_ports(args: &BootstrapArgs) -> Result<(), BootstrapError> {
    let ports = [
        ("admin-port", args.admin_port),
        ("stats-port", args.stats_port),
        ("readiness-port", args.readiness_port),
    ];
    for (i, &(flag, port)) in ports.iter().enumerate() {
        let reason = if port == 0 {
            "must be 1-65535".to_string()
        } else if let Some((other, _)) = ports[..i].iter().find(|(_, p)| *p == port) {
            format!("is already used by --{other}")
        } else {
            continue;
        };
        return Err(BootstrapError::Port { flag, port, reason });
    }
    Ok(())
}

/// Renders the bootstrap; pure, so tests and `--output` see the same document.
pub fn render(args: &BootstrapArgs) -> Result<Value, BootstrapError> {
    let node: NodeId = args.node_id.parse()?;
    let xds = parse_xds_addr(&args.xds_addr)?;
    check_ports(args)?;
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| format!("{}.{}", node.pod, node.namespace));
    if cluster.is_empty() {
        return Err(BootstrapError::Cluster { cluster });
    }
    let mut node_json = json!({
        "id": args.node_id,
        "cluster": cluster,
        "metadata": metadata(&node, args)?,
    });
    if let Some(text) = &args.locality {
        let bad = || BootstrapError::Locality {
            locality: text.clone(),
        };
        // Empty parts in the middle (`r//s`) would mean a subzone without a zone.
        let l = crate::model::Locality::parse(text)
            .filter(|l| (!l.zone.is_empty() || l.subzone.is_empty()) && !l.subzone.contains('/'))
            .ok_or_else(bad)?;
        node_json["locality"] = json!({"region": l.region, "zone": l.zone, "sub_zone": l.subzone});
    }
    Ok(json!({
        "node": node_json,
        "admin": admin(args.admin_port),
        "dynamic_resources": dynamic_resources(args, &xds),
        "static_resources": {
            "clusters": clusters(args, &xds),
            "listeners": [stats_listener(args.stats_port), readiness_listener(args.readiness_port)],
        },
    }))
}

/// Prints (or writes) the rendered bootstrap as pretty JSON, which Envoy reads as YAML too.
pub fn run(args: BootstrapArgs) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(&render(&args)?)?;
    text.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing bootstrap to {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing bootstrap to stdout")?,
    }
    Ok(())
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

fn admin(port: u16) -> Value {
    json!({
        "access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/null",
            },
        }],
        "address": socket_address("127.0.0.1", port),
    })
}

/// The plaintext port needs a static cluster for the ADS stream; the TLS
/// port is reached by the `google_grpc` client, which dials on its own.
fn clusters(args: &BootstrapArgs, xds: &XdsTarget) -> Vec<Value> {
    let mut clusters = Vec::new();
    if args.xds_root_cert.is_none() {
        clusters.push(xds_cluster(xds));
    }
    clusters.push(admin_cluster(args.admin_port));
    clusters
}

/// The ADS service: Envoy's own gRPC client to the plaintext cluster, or
/// Google's over TLS with the service-account token as call credentials.
/// Stock Envoy's file_based_metadata plugin re-reads the token file on every
/// call, so a rotated projected token is picked up without a restart.
fn grpc_service(args: &BootstrapArgs, xds: &XdsTarget) -> Value {
    let (Some(root), Some(token)) = (&args.xds_root_cert, &args.token_file) else {
        return json!({ "envoy_grpc": { "cluster_name": XDS_CLUSTER } });
    };
    let target = match xds {
        XdsTarget::Ip(sock) => sock.to_string(),
        XdsTarget::Dns { host, port } => format!("{host}:{port}"),
    };
    let mut google = json!({
        "target_uri": target,
        "stat_prefix": XDS_CLUSTER,
        "channel_credentials": {
            "ssl_credentials": { "root_certs": { "filename": root } },
        },
        "call_credentials": [{
            "from_plugin": {
                "name": "envoy.grpc_credentials.file_based_metadata",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
                    "secret_data": { "filename": token },
                    "header_key": "authorization",
                    "header_prefix": "Bearer ",
                },
            },
        }],
        "credentials_factory_name": "envoy.grpc_credentials.file_based_metadata",
    });
    if let Some(name) = &args.xds_server_name {
        google["channel_args"] = json!({
            "args": { "grpc.ssl_target_name_override": { "string_value": name } },
        });
    }
    json!({ "google_grpc": google })
}

fn dynamic_resources(args: &BootstrapArgs, xds: &XdsTarget) -> Value {
    let delta = args.delta;
    // initial_fetch_timeout 0s (as Istio): stay not-ready until Rudder has
    // answered, rather than going LIVE with no config after 15s.
    let ads_source = json!({
        "ads": {},
        "initial_fetch_timeout": "0s",
        "resource_api_version": "V3",
    });
    json!({
        "ads_config": {
            "api_type": if delta { "DELTA_GRPC" } else { "GRPC" },
            "transport_api_version": "V3",
            "grpc_services": [grpc_service(args, xds)],
            "set_node_on_first_message_only": true,
        },
        "cds_config": ads_source,
        "lds_config": ads_source,
    })
}

fn xds_cluster(target: &XdsTarget) -> Value {
    let (kind, address, port) = match target {
        XdsTarget::Ip(sock) => ("STATIC", sock.ip().to_string(), sock.port()),
        XdsTarget::Dns { host, port } => ("STRICT_DNS", host.clone(), *port),
    };
    json!({
        "name": XDS_CLUSTER,
        "type": kind,
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment(XDS_CLUSTER, &address, port),
        // gRPC needs HTTP/2; with Envoy's HTTP/1.1 default the ADS stream
        // never gets an answer and Envoy waits silently.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        // Notices a silently dropped control-plane connection (NAT, LB idle timeouts).
        "upstream_connection_options": { "tcp_keepalive": { "keepalive_time": 300 } },
    })
}

/// Envoy's own admin, reached through listeners that expose only chosen paths.
fn admin_cluster(admin_port: u16) -> Value {
    json!({
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment(ADMIN_CLUSTER, "127.0.0.1", admin_port),
    })
}

fn load_assignment(cluster: &str, address: &str, port: u16) -> Value {
    json!({
        "cluster_name": cluster,
        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(address, port) } }] }],
    })
}

fn stats_listener(port: u16) -> Value {
    let route = json!({
        "match": { "prefix": "/stats/prometheus" },
        "route": { "cluster": ADMIN_CLUSTER },
    });
    http_listener("prometheus_stats", "stats", port, route)
}

/// Admin `/ready` is 200 only once Envoy is LIVE (initial config received).
fn readiness_listener(port: u16) -> Value {
    let route = json!({
        "match": { "prefix": "/healthz/ready" },
        "route": { "cluster": ADMIN_CLUSTER, "prefix_rewrite": "/ready" },
    });
    http_listener("readiness", "readiness", port, route)
}

fn http_listener(name: &str, stat_prefix: &str, port: u16, route: Value) -> Value {
    json!({
        "name": name,
        "address": socket_address("0.0.0.0", port),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "codec_type": "AUTO",
                    "stat_prefix": stat_prefix,
                    "route_config": {
                        "virtual_hosts": [{ "name": "backend", "domains": ["*"], "routes": [route] }],
                    },
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                        },
                    }],
                },
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const NODE: &str = "sidecar~198.18.0.5~reviews-v1-7d9f.bookinfo~bookinfo.svc.cluster.local";

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BootstrapArgs,
    }

    fn args(extra: &[&str]) -> BootstrapArgs {
        let argv = ["bootstrap", "--node-id", NODE].iter().chain(extra);
        Cli::try_parse_from(argv).expect("test args parse").args
    }

    fn node_err(id: &str) -> String {
        match id.parse::<NodeId>() {
            Err(e @ BootstrapError::NodeId { .. }) => e.to_string(),
            other => panic!("{id}: expected a node-id error, got {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_sidecar_and_router_node_ids() {
        let node: NodeId = NODE.parse().unwrap();
        assert_eq!(node.kind, ProxyKind::Sidecar);
        assert_eq!(node.ip, "198.18.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(node.pod, "reviews-v1-7d9f");
        assert_eq!(node.namespace, "bookinfo");
        let gw: NodeId = "router~::1~gw.with.dots.istio-system~istio-system.svc.corp"
            .parse()
            .unwrap();
        assert_eq!(gw.kind, ProxyKind::Router);
        assert_eq!(gw.pod, "gw.with.dots");
    }

    #[test]
    fn node_id_errors_name_the_flag_and_reason() {
        // Short domain ("ns.svc.c") keeps the table readable; any DOMAIN works.
        let cases = [
            ("sidecar~1.2.3.4~p.ns", "want 4"),
            ("sidecar~1.2.3.4~p.ns~ns.svc.c~x", "got 5"),
            ("ingress~1.2.3.4~p.ns~ns.svc.c", "not sidecar or router"),
            ("sidecar~1.2.3~p.ns~ns.svc.c", "not an IP address"),
            ("sidecar~1.2.3.4~pod~ns.svc.c", "not POD.NAMESPACE"),
            ("sidecar~1.2.3.4~p.other~ns.svc.c", "differs from"),
            ("sidecar~1.2.3.4~.ns~ns.svc.c", "not a DNS-1123"),
            ("sidecar~1.2.3.4~P_x.ns~ns.svc.c", "not a DNS-1123"),
            ("sidecar~1.2.3.4~p.ns~ns.cluster.local", "not NS.svc.DOMAIN"),
            ("sidecar~1.2.3.4~p.ns~ns.svc.", "not NS.svc.DOMAIN"),
        ];
        for (id, want) in cases {
            let msg = node_err(id);
            assert!(msg.starts_with("--node-id "), "{msg}");
            assert!(msg.contains(want), "{id}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn metadata_defaults_come_from_the_node_id() {
        let boot = render(&args(&[])).unwrap();
        let meta = &boot["node"]["metadata"];
        assert_eq!(meta["NAMESPACE"], "bookinfo");
        assert_eq!(meta["NAME"], "reviews-v1-7d9f");
        assert_eq!(meta["INTERCEPTION_MODE"], "REDIRECT");
        assert_eq!(meta["ISTIO_VERSION"], "rudder-0.1");
        assert_eq!(meta["CLUSTER_ID"], "Kubernetes");
        assert!(meta.get("LABELS").is_none());
        assert_eq!(boot["node"]["id"], NODE);
        assert_eq!(boot["node"]["cluster"], "reviews-v1-7d9f.bookinfo");
    }

    #[test]
    fn meta_and_labels_override_and_merge() {
        let boot = render(&args(&[
            "--meta",
            "INTERCEPTION_MODE=TPROXY",
            "--meta",
            "PORT=8080",
            "--meta",
            r#"LABELS={"app":"reviews","version":"v0"}"#,
            "--meta",
            "EQ=a=b",
            "--label",
            "version=v1",
            "--label",
            "empty=",
            "--cluster",
            "reviews.bookinfo",
        ]))
        .unwrap();
        let meta = &boot["node"]["metadata"];
        assert_eq!(meta["INTERCEPTION_MODE"], "TPROXY");
        assert_eq!(meta["PORT"], "8080", "non-object JSON stays a string");
        assert_eq!(meta["EQ"], "a=b");
        let labels = json!({ "app": "reviews", "version": "v1", "empty": "" });
        assert_eq!(meta["LABELS"], labels);
        assert_eq!(boot["node"]["cluster"], "reviews.bookinfo");
    }

    #[test]
    fn bad_meta_and_labels_are_errors() {
        let cases: [&[&str]; 4] = [
            &["--meta", "NOVALUE"],
            &["--meta", "=x"],
            &["--label", "x"],
            &["--meta", "LABELS=app", "--label", "a=b"],
        ];
        for extra in cases {
            let err = render(&args(extra)).unwrap_err().to_string();
            let flag_named = err.starts_with("--meta ") || err.starts_with("--label ");
            assert!(flag_named, "{err}");
        }
    }

    #[test]
    fn delta_flag_selects_the_ads_api_type() {
        let sotw = render(&args(&[])).unwrap();
        let delta = render(&args(&["--delta"])).unwrap();
        assert_eq!(sotw["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        assert_eq!(
            delta["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
    }

    #[test]
    fn locality_becomes_node_locality_and_bad_ones_are_errors() {
        let boot = render(&args(&["--locality", "us-east1/us-east1-b/rack7"])).unwrap();
        assert_eq!(
            boot["node"]["locality"],
            json!({"region": "us-east1", "zone": "us-east1-b", "sub_zone": "rack7"})
        );
        let boot = render(&args(&["--locality", "eu"])).unwrap();
        assert_eq!(boot["node"]["locality"]["region"], "eu");
        assert_eq!(boot["node"]["locality"]["zone"], "");
        assert!(render(&args(&[])).unwrap()["node"]
            .get("locality")
            .is_none());
        for bad in ["", "r//s", "r/z/s/extra"] {
            let err = render(&args(&["--locality", bad])).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--locality {bad:?}: expected REGION/ZONE/SUBZONE")),
                "{err}"
            );
        }
    }

    fn xds(boot: &Value) -> &Value {
        let clusters = boot["static_resources"]["clusters"].as_array().unwrap();
        let found = clusters.iter().find(|c| c["name"] == XDS_CLUSTER);
        found.expect("xds-grpc cluster")
    }

    fn xds_socket(boot: &Value) -> &Value {
        &xds(boot)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]
    }

    #[test]
    fn xds_address_ip_is_static_and_name_is_strict_dns() {
        let ip = render(&args(&[])).unwrap();
        assert_eq!(xds(&ip)["type"], "STATIC");
        assert_eq!(xds_socket(&ip)["address"], "127.0.0.1");
        assert_eq!(xds_socket(&ip)["port_value"], 15010);
        let v6 = render(&args(&["--xds-addr", "[::1]:15012"])).unwrap();
        assert_eq!(xds(&v6)["type"], "STATIC");
        assert_eq!(xds_socket(&v6)["address"], "::1");
        let dns = render(&args(&["--xds-addr", "rudder.rudder-system.svc:15012"])).unwrap();
        assert_eq!(xds(&dns)["type"], "STRICT_DNS");
        assert_eq!(xds_socket(&dns)["address"], "rudder.rudder-system.svc");
        assert_eq!(xds_socket(&dns)["port_value"], 15012);
        let h2 = &xds(&ip)["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert_eq!(
            h2["explicit_http_config"]["http2_protocol_options"],
            json!({})
        );
    }

    #[test]
    fn tls_xds_uses_google_grpc_with_the_root_and_a_token_file() {
        let boot = render(&args(&[
            "--xds-addr",
            "rudder.rudder-system.svc:15012",
            "--xds-root-cert",
            "/etc/rudder/root-cert.pem",
            "--token-file",
            "/var/run/secrets/tokens/rudder-token",
        ]))
        .unwrap();
        let service = &boot["dynamic_resources"]["ads_config"]["grpc_services"][0];
        let google = &service["google_grpc"];
        assert_eq!(google["target_uri"], "rudder.rudder-system.svc:15012");
        assert_eq!(
            google["channel_credentials"]["ssl_credentials"]["root_certs"]["filename"],
            "/etc/rudder/root-cert.pem"
        );
        let plugin = &google["call_credentials"][0]["from_plugin"];
        assert_eq!(plugin["name"], "envoy.grpc_credentials.file_based_metadata");
        let config = &plugin["typed_config"];
        assert_eq!(
            config["secret_data"]["filename"],
            "/var/run/secrets/tokens/rudder-token"
        );
        assert_eq!(config["header_key"], "authorization");
        assert_eq!(config["header_prefix"], "Bearer ");
        assert!(google.get("channel_args").is_none());
        // No plaintext cluster to the control plane is left behind.
        let clusters = boot["static_resources"]["clusters"].as_array().unwrap();
        assert!(clusters.iter().all(|c| c["name"] != XDS_CLUSTER));

        let named = render(&args(&[
            "--xds-addr",
            "198.18.0.1:15012",
            "--xds-root-cert",
            "/r.pem",
            "--token-file",
            "/t",
            "--xds-server-name",
            "rudder.rudder-system.svc",
        ]))
        .unwrap();
        let google = &named["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
        assert_eq!(google["target_uri"], "198.18.0.1:15012");
        assert_eq!(
            google["channel_args"]["args"]["grpc.ssl_target_name_override"]["string_value"],
            "rudder.rudder-system.svc"
        );
    }

    #[test]
    fn tls_flags_come_together() {
        let cli = |extra: &[&str]| {
            let argv = ["bootstrap", "--node-id", NODE].iter().chain(extra);
            Cli::try_parse_from(argv).map(|_| ())
        };
        assert!(
            cli(&["--xds-root-cert", "/r.pem"]).is_err(),
            "root without a token"
        );
        assert!(
            cli(&["--token-file", "/t"]).is_err(),
            "token without a root"
        );
        assert!(cli(&["--xds-root-cert", "/r.pem", "--token-file", "/t"]).is_ok());
    }

    #[test]
    fn bad_xds_addresses_are_errors() {
        for bad in [
            "rudder",
            "rudder:0",
            "rudder:http",
            "bad_host:15010",
            ":15010",
            "1.2.3.4:0",
        ] {
            let err = render(&args(&["--xds-addr", bad])).unwrap_err().to_string();
            assert!(err.starts_with("--xds-addr "), "{bad}: {err}");
        }
    }

    #[test]
    fn ports_must_be_distinct() {
        let err = render(&args(&["--stats-port", "15000"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--stats-port 15000: is already used by --admin-port"
        );
    }

    #[test]
    fn static_listeners_route_stats_and_readiness_to_admin() {
        let boot = render(&args(&[
            "--admin-port",
            "19000",
            "--readiness-port",
            "19021",
        ]))
        .unwrap();
        let listeners = boot["static_resources"]["listeners"].as_array().unwrap();
        let hcm = |i: usize| &listeners[i]["filter_chains"][0]["filters"][0]["typed_config"];
        let route = |i: usize| &hcm(i)["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(
            listeners[0]["address"]["socket_address"]["port_value"],
            15090
        );
        assert_eq!(route(0)["match"]["prefix"], "/stats/prometheus");
        assert_eq!(
            listeners[1]["address"]["socket_address"]["port_value"],
            19021
        );
        assert_eq!(route(1)["route"]["prefix_rewrite"], "/ready");
        assert_eq!(
            boot["admin"]["address"]["socket_address"]["port_value"],
            19000
        );
    }
}
