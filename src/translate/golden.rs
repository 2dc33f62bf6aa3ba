//! Golden-file tests for translation (design.md, "Testing, at three levels", 1).
//!
//! A case is `testdata/<case>.yaml`: multi-document Kubernetes YAML, exactly
//! what a `--config-dir` file holds. It goes through the real pipeline
//! (`source::file::parse_text`, then an [`Index`] that validates and publishes a
//! synced snapshot) and is translated for one proxy. The outputs sit next to it:
//! `<case>.{clusters,listeners,routes,endpoints}.json`, each a pretty-printed
//! JSON array of the resources in proto3 JSON (as Envoy's `/config_dump` prints
//! them), sorted by resource name, with a trailing newline.
//!
//! The proxy comes from one header comment among the file's leading `#` lines:
//!
//! ```text
//! # proxy: NODE_ID interception=MODE [labels=K=V[,K=V...]] [mtls=true]
//! # proxy: sidecar~198.18.0.5~client-0.demo~demo.svc.cluster.local interception=NONE labels=app=client
//! ```
//!
//! MeshConfig, when a case needs one, is YAML on `# mesh:` header lines,
//! joined in order (each line's text after `# mesh: `), e.g.
//!
//! ```text
//! # mesh: extensionProviders:
//! # mesh: - name: ext-authz
//! # mesh:   envoyExtAuthzGrpc: {service: authz.shop.svc.cluster.local, port: 9000}
//! ```
//!
//! `NODE_ID` is Istio's node id, parsed by [`Proxy::from_node_id`]. `MODE` is
//! `NONE`, `REDIRECT` or `TPROXY` and is required, because it decides which
//! listeners exist (loopback ones, or the capture listeners). `labels` is the proxy's own label claim (a Pod
//! object in the case's YAML with the proxy's name wins over it). Other leading
//! comment lines are free text describing the case.
//!
//! Documents the index rejects fail the case, unless its name starts with
//! `invalid_`: then the rejections are a golden too, `<case>.rejected.txt`, one
//! `Rejection` per line, and there must be at least one.
//!
//! Every case is also checked for internal consistency (every EDS cluster has a
//! load assignment, every RDS name a route configuration, every referenced
//! cluster exists; no duplicate names, domains or filter chain matches), which
//! Envoy would otherwise report only as a NACK or a silent 503.
//!
//! To accept new output: `UPDATE_GOLDEN=1 cargo test --lib translate::golden`,
//! then review `git diff src/translate/testdata` as part of the change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use tokio::sync::mpsc;

use crate::index::Index;
use crate::model::{Interception, MeshConfig, Proxy, Snapshot};
use crate::source::{file::parse_text, SourceEvent};
use crate::xds::json::message_to_json;

/// Cases that must exist, so deleting testdata cannot make the test pass.
const EXPECTED_CASES: &[&str] = &[
    "basic_http",
    "cross_namespace",
    "inbound",
    "invalid_service_port",
    "named_target_port",
    "protocols",
    "redirect_mixed",
    "none_own_port",
    "vs_routing",
    "dr_policies",
    "sidecar_scope",
    "sidecar_ingress",
    "sidecar_ingress_none",
    "sidecar_egress",
    "sidecar_egress_none",
    "tcp_subnets",
    "service_entries",
    "redirect_mode",
    "shared_port",
    "authz_http",
    "authz_tcp",
    "authz_custom",
    "authz_custom_http",
    "mtls",
    "jwt",
    "locality_lb",
];

const REGENERATE: &str = "UPDATE_GOLDEN=1 cargo test --lib translate::golden";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/translate/testdata")
}

fn update_requested() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The proxy a case is translated for, from its `# proxy:` header.
#[derive(Debug)]
struct Header {
    node_id: String,
    interception: Interception,
    labels: BTreeMap<String, String>,
    /// `mtls=true`: the proxy holds a Rudder-issued certificate.
    mtls: bool,
    /// The `# mesh:` lines, parsed; the default MeshConfig without any.
    mesh: MeshConfig,
}

fn parse_header(yaml: &str) -> Result<Header, String> {
    let mut found = None;
    let mut mesh_lines = Vec::new();
    for line in yaml.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# mesh:") {
            mesh_lines.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
        if let Some(rest) = line.strip_prefix("# proxy:") {
            if found.replace(rest).is_some() {
                return Err("more than one `# proxy:` header line".into());
            }
        }
    }
    let rest =
        found.ok_or("no `# proxy: NODE_ID interception=MODE [labels=K=V,...]` header line")?;
    let mut words = rest.split_whitespace();
    let node_id = words
        .next()
        .ok_or("`# proxy:` header has no node id")?
        .to_string();
    let (mut interception, mut labels, mut mtls) = (None, BTreeMap::new(), false);
    for word in words {
        match word.split_once('=') {
            Some(("interception", mode)) => {
                interception = Some(
                    Interception::parse(mode).ok_or(format!("unknown interception {mode:?}"))?,
                );
            }
            Some(("labels", list)) => {
                for pair in list.split(',') {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or(format!("label {pair:?} is not K=V"))?;
                    labels.insert(k.to_string(), v.to_string());
                }
            }
            Some(("mtls", value)) => {
                mtls = value
                    .parse()
                    .map_err(|_| format!("mtls={value:?} is not true or false"))?;
            }
            _ => return Err(format!("unknown header word {word:?}")),
        }
    }
    let interception = interception.ok_or("header needs interception=NONE|REDIRECT|TPROXY")?;
    let mesh = crate::api::parse_mesh_config(&mesh_lines.join("\n"))
        .map_err(|e| format!("`# mesh:` lines: {e}"))?;
    Ok(Header {
        node_id,
        interception,
        labels,
        mtls,
        mesh,
    })
}

/// Feeds one file through a real index and waits for its synced snapshot.
fn snapshot(unit: &str, yaml: &str, mesh: MeshConfig) -> Result<Arc<Snapshot>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let (index, mut rx) = Index::with_mesh(1, Duration::from_millis(1), mesh);
        let (tx, events) = mpsc::channel(4);
        tokio::spawn(index.run(events));
        let items = parse_text(yaml);
        let replace = SourceEvent::Replace {
            unit: unit.to_string(),
            items,
        };
        for event in [replace, SourceEvent::Synced] {
            tx.send(event)
                .await
                .map_err(|_| "index stopped early".to_string())?;
        }
        let synced = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.synced)).await;
        match synced {
            Ok(Ok(snap)) => Ok(snap.clone()),
            Ok(Err(_)) => Err("index stopped before publishing a synced snapshot".into()),
            Err(_) => Err("no synced snapshot within 10s".into()),
        }
    })
}

/// The four resource types, in translator order (not yet sorted).
pub(super) struct Resources {
    pub clusters: Vec<Cluster>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub endpoints: Vec<ClusterLoadAssignment>,
}

/// Translates a case's YAML; returns the snapshot too, for its rejections.
/// Unit tests use it to run the real pipeline on YAML of their own.
pub(super) fn translate_case(case: &str, yaml: &str) -> Result<(Arc<Snapshot>, Resources), String> {
    let header = parse_header(yaml)?;
    let mut proxy = Proxy::from_node_id(&header.node_id).map_err(|e| e.to_string())?;
    proxy.interception = header.interception;
    proxy.labels = header.labels;
    proxy.mtls = header.mtls;
    let snap = snapshot(&format!("{case}.yaml"), yaml, header.mesh)?;
    let shape = super::ProxyShape::of(&snap, &proxy);
    let resources = Resources {
        clusters: super::clusters(&snap, &shape),
        listeners: super::listeners(&snap, &shape),
        routes: super::routes(&snap, &shape),
        endpoints: super::endpoints(&snap),
    };
    Ok((snap, resources))
}

/// A JSON array of one resource type, sorted by resource name.
fn render_list<M: Message + Name>(
    items: &[M],
    name: impl Fn(&M) -> &str,
) -> Result<String, String> {
    let mut rendered = Vec::with_capacity(items.len());
    for item in items {
        let json =
            message_to_json(item).map_err(|e| format!("{} {:?}: {e}", M::NAME, name(item)))?;
        rendered.push((name(item).to_string(), json));
    }
    rendered.sort_by(|a, b| a.0.cmp(&b.0));
    let array = serde_json::Value::Array(rendered.into_iter().map(|(_, v)| v).collect());
    let text = serde_json::to_string_pretty(&array).map_err(|e| e.to_string())?;
    Ok(text + "\n")
}

/// Golden file name suffix -> content, for one case.
fn render(
    case: &str,
    snap: &Snapshot,
    res: &Resources,
) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    files.insert(
        "clusters.json".into(),
        render_list(&res.clusters, |c| &c.name)?,
    );
    files.insert(
        "listeners.json".into(),
        render_list(&res.listeners, |l| &l.name)?,
    );
    files.insert("routes.json".into(), render_list(&res.routes, |r| &r.name)?);
    files.insert(
        "endpoints.json".into(),
        render_list(&res.endpoints, |e| &e.cluster_name)?,
    );
    let rejected = &snap.status.rejected;
    if case.starts_with("invalid_") {
        if rejected.is_empty() {
            return Err("an `invalid_` case must have at least one rejected document".into());
        }
        let lines: String = rejected.iter().map(|r| format!("{r}\n")).collect();
        files.insert("rejected.txt".to_string(), lines);
    } else if !rejected.is_empty() {
        let lines: Vec<String> = rejected.iter().map(|r| format!("  {r}")).collect();
        return Err(format!(
            "documents were rejected (name the case `invalid_*` if that is intended):\n{}",
            lines.join("\n")
        ));
    }
    Ok(files)
}

fn unpack<M: Message + Name + Default>(any: &Any) -> Option<M> {
    if any.type_url != M::type_url() {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

/// Cross-references Envoy would NACK or turn into 503s: every EDS cluster has a
/// load assignment, every RDS name a route configuration, every cluster a route
/// or TCP proxy names exists; no duplicate names, listener addresses or domains.
fn consistency(res: &Resources) -> Vec<String> {
    let mut problems = Vec::new();
    let p = &mut problems;
    let quoted = |name: &String| format!("{name:?}");
    duplicates("cluster", res.clusters.iter().map(|c| quoted(&c.name)), p);
    duplicates("listener", res.listeners.iter().map(|l| quoted(&l.name)), p);
    let addresses = res.listeners.iter().map(|l| format!("{:?}", l.address));
    duplicates("listener address", addresses, p);
    let route_names = res.routes.iter().map(|r| quoted(&r.name));
    duplicates("route configuration", route_names, p);
    let assignment_names = res.endpoints.iter().map(|e| quoted(&e.cluster_name));
    duplicates("load assignment", assignment_names, p);

    let assignments: BTreeSet<&str> = res
        .endpoints
        .iter()
        .map(|e| e.cluster_name.as_str())
        .collect();
    for c in &res.clusters {
        let eds = DiscoveryType::Eds as i32;
        if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(eds)) {
            continue;
        }
        // Envoy asks EDS for the service_name, or the cluster name when empty.
        let service = c
            .eds_cluster_config
            .as_ref()
            .map_or("", |e| e.service_name.as_str());
        let wanted = if service.is_empty() {
            c.name.as_str()
        } else {
            service
        };
        if !assignments.contains(wanted) {
            p.push(format!(
                "EDS cluster {:?}: no load assignment {wanted:?}",
                c.name
            ));
        }
    }
    let clusters: BTreeSet<&str> = res.clusters.iter().map(|c| c.name.as_str()).collect();
    let route_configs: BTreeSet<&str> = res.routes.iter().map(|r| r.name.as_str()).collect();
    for l in &res.listeners {
        listener_problems(l, &clusters, &route_configs, p);
    }
    for rc in &res.routes {
        route_problems(rc, &clusters, p);
    }
    problems
}

/// Envoy rejects a listener whose chains cannot be told apart, or that has
/// none; its HTTP and TCP filters must name existing routes and clusters.
fn listener_problems(
    l: &Listener,
    clusters: &BTreeSet<&str>,
    route_configs: &BTreeSet<&str>,
    p: &mut Vec<String>,
) {
    let at = format!("listener {:?}", l.name);
    let matches = l.filter_chains.iter().map(|fc| {
        let m = fc.filter_chain_match.clone().unwrap_or_default();
        format!("filter_chain_match {m:?}")
    });
    duplicates(&format!("{at}:"), matches, p);
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        p.push(format!(
            "{at}: no filter chains and no default filter chain"
        ));
    }
    let chains = l.filter_chains.iter().chain(&l.default_filter_chain);
    for f in chains.flat_map(|fc| &fc.filters) {
        let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if let Some(hcm) = unpack::<HttpConnectionManager>(any) {
            match &hcm.route_specifier {
                Some(RouteSpecifier::Rds(rds)) => {
                    let name = rds.route_config_name.as_str();
                    missing(&at, "route configuration", [name], route_configs, p);
                }
                Some(RouteSpecifier::RouteConfig(rc)) => route_problems(rc, clusters, p),
                _ => {}
            }
        } else if let Some(tcp) = unpack::<TcpProxy>(any) {
            let names: Vec<&str> = match &tcp.cluster_specifier {
                Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => vec![c.as_str()],
                Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
                    w.clusters.iter().map(|c| c.name.as_str()).collect()
                }
                None => vec![],
            };
            missing(&at, "cluster", names, clusters, p);
        }
    }
}

fn duplicates(kind: &str, names: impl Iterator<Item = String>, problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for name in names.filter(|n| !seen.insert(n.clone())) {
        problems.push(format!("duplicate {kind} {name}"));
    }
}

fn missing<'a>(
    at: &str,
    kind: &str,
    names: impl IntoIterator<Item = &'a str>,
    known: &BTreeSet<&str>,
    problems: &mut Vec<String>,
) {
    for name in names.into_iter().filter(|n| !known.contains(n)) {
        problems.push(format!("{at}: refers to missing {kind} {name:?}"));
    }
}

/// Envoy rejects a route configuration with a repeated domain or virtual host
/// name; a route to an unknown cluster is a 503 (validate_clusters is off).
fn route_problems(rc: &RouteConfiguration, clusters: &BTreeSet<&str>, p: &mut Vec<String>) {
    let (mut domains, mut vhosts) = (BTreeSet::new(), BTreeSet::new());
    for vh in &rc.virtual_hosts {
        let at = format!(
            "route configuration {:?}, virtual host {:?}",
            rc.name, vh.name
        );
        if !vhosts.insert(vh.name.as_str()) {
            p.push(format!("{at}: duplicate virtual host name"));
        }
        for d in vh.domains.iter().filter(|d| !domains.insert(d.as_str())) {
            p.push(format!("{at}: duplicate domain {d:?}"));
        }
        for r in &vh.routes {
            let Some(route::Action::Route(action)) = &r.action else {
                continue;
            };
            let names: Vec<&str> = match &action.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => vec![c.as_str()],
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                    w.clusters.iter().map(|c| c.name.as_str()).collect()
                }
                _ => vec![],
            };
            missing(&at, "cluster", names, clusters, p);
        }
    }
}

/// A unified line diff (3 lines of context) of the golden and the new output.
fn unified_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    if am.len().saturating_mul(bm.len()) > 16_000_000 {
        return format!(
            "(too large to diff; first difference at line {})\n",
            pre + 1
        );
    }
    // Longest common subsequence of the differing middle, from the end.
    let mut lcs = vec![vec![0u32; bm.len() + 1]; am.len() + 1];
    for i in (0..am.len()).rev() {
        for j in (0..bm.len()).rev() {
            lcs[i][j] = if am[i] == bm[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = a[..pre].iter().map(|l| (' ', *l)).collect();
    let (mut i, mut j) = (0, 0);
    while i < am.len() || j < bm.len() {
        if i < am.len() && j < bm.len() && am[i] == bm[j] {
            ops.push((' ', am[i]));
            (i, j) = (i + 1, j + 1);
        } else if j == bm.len() || (i < am.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', am[i]));
            i += 1;
        } else {
            ops.push(('+', bm[j]));
            j += 1;
        }
    }
    ops.extend(a[a.len() - suf..].iter().map(|l| (' ', *l)));
    hunks(&ops)
}

/// Groups diff lines into `@@ -l,n +l,n @@` hunks with 3 lines of context.
fn hunks(ops: &[(char, &str)]) -> String {
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    if changed.is_empty() {
        return "(no line differs: only the trailing newline or line endings)\n".into();
    }
    // Line numbers (1-based) in old and new before each op.
    let (mut old_at, mut new_at) = (vec![1usize], vec![1usize]);
    for (k, (op, _)) in ops.iter().enumerate() {
        old_at.push(old_at[k] + usize::from(*op != '+'));
        new_at.push(new_at[k] + usize::from(*op != '-'));
    }
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let span = &ops[start..end];
        let olds = span.iter().filter(|(op, _)| *op != '+').count();
        let news = span.iter().filter(|(op, _)| *op != '-').count();
        out += &format!(
            "@@ -{},{olds} +{},{news} @@\n",
            old_at[start], new_at[start]
        );
        for (op, line) in span {
            out += &format!("{op}{line}\n");
        }
    }
    out
}

/// Compares (or, when updating, writes) one golden file; a failure message on mismatch.
fn check_file(case: &str, path: &Path, actual: &str, update: bool) -> Option<String> {
    let shown = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display();
    let golden = match std::fs::read_to_string(path) {
        Ok(golden) if golden == actual => return None,
        _ if update => {
            let written = std::fs::write(path, actual);
            return written
                .err()
                .map(|e| format!("case {case}: cannot write {shown}: {e}"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("case {case}: golden file {shown} is missing"));
        }
        Err(e) => return Some(format!("case {case}: cannot read {shown}: {e}")),
        Ok(golden) => golden,
    };
    let diff = unified_diff(&golden, actual);
    let diff = diff.trim_end();
    Some(format!(
        "case {case}: {shown} differs from the translation (- golden, + actual):\n\
         --- {shown}\n+++ actual\n{diff}"
    ))
}

/// Runs one case; returns its failures and the golden file names it owns.
fn run_case(case: &str, dir: &Path, update: bool) -> (Vec<String>, BTreeSet<String>) {
    let mut owned = BTreeSet::from([format!("{case}.yaml")]);
    let yaml = match std::fs::read_to_string(dir.join(format!("{case}.yaml"))) {
        Ok(y) => y,
        Err(e) => return (vec![format!("case {case}: cannot read: {e}")], owned),
    };
    let files = translate_case(case, &yaml).and_then(|(snap, res)| {
        let problems = consistency(&res);
        if !problems.is_empty() {
            return Err(format!(
                "inconsistent resources:\n  {}",
                problems.join("\n  ")
            ));
        }
        render(case, &snap, &res)
    });
    let files = match files {
        Ok(f) => f,
        // Keep the existing goldens: they are still the reviewed expectation.
        Err(e) => {
            owned.extend(existing_outputs(dir, case));
            return (vec![format!("case {case}: {e}")], owned);
        }
    };
    let mut failures = Vec::new();
    for (suffix, content) in &files {
        let name = format!("{case}.{suffix}");
        failures.extend(check_file(case, &dir.join(&name), content, update));
        owned.insert(name);
    }
    (failures, owned)
}

fn existing_outputs(dir: &Path, case: &str) -> Vec<String> {
    let prefix = format!("{case}.");
    list_dir(dir)
        .into_iter()
        .filter(|f| f.starts_with(&prefix))
        .collect()
}

fn list_dir(dir: &Path) -> BTreeSet<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .map(|e| {
            e.expect("readable testdata entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn cases(dir: &Path) -> Vec<String> {
    list_dir(dir)
        .iter()
        .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
        .collect()
}

#[test]
fn golden_translation() {
    let dir = testdata();
    let update = update_requested();
    let cases = cases(&dir);
    let missing: Vec<&&str> = EXPECTED_CASES
        .iter()
        .filter(|c| !cases.iter().any(|k| k == **c))
        .collect();
    assert!(
        missing.is_empty(),
        "golden cases missing from {}: {missing:?}",
        dir.display()
    );

    let mut failures = Vec::new();
    let mut owned = BTreeSet::new();
    for case in &cases {
        let (f, o) = run_case(case, &dir, update);
        failures.extend(f);
        owned.extend(o);
    }
    // Outputs of renamed or deleted cases would otherwise linger unreviewed.
    for stale in list_dir(&dir).difference(&owned) {
        let path = dir.join(stale);
        if update {
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            failures.push(format!("{stale}: belongs to no case (stale golden file?)"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s):\n\n{}\n\nIf the new output is intended, run `{REGENERATE}` \
         and review `git diff src/translate/testdata`.",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Same inputs, same bytes: two independent index runs of every case encode
/// identically, in the translator's own order (before the goldens sort it).
#[test]
fn translation_is_deterministic() {
    fn encode(res: &Resources) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = res.clusters.iter().map(Message::encode_to_vec).collect();
        out.extend(res.listeners.iter().map(Message::encode_to_vec));
        out.extend(res.routes.iter().map(Message::encode_to_vec));
        out.extend(res.endpoints.iter().map(Message::encode_to_vec));
        out
    }
    let dir = testdata();
    for case in cases(&dir) {
        let yaml = std::fs::read_to_string(dir.join(format!("{case}.yaml"))).unwrap();
        let (snap1, first) = translate_case(&case, &yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        let (snap2, second) =
            translate_case(&case, &yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            encode(&first) == encode(&second),
            "case {case}: two runs encode differently"
        );
        assert_eq!(
            render(&case, &snap1, &first),
            render(&case, &snap2, &second),
            "case {case}"
        );
    }
}

#[test]
fn header_format() {
    let text = "# a case\n\
        # proxy: sidecar~198.18.0.1~a-0.ns~ns.svc interception=NONE labels=app=a,v=1\n\
        kind: x\n";
    let h = parse_header(text).unwrap();
    assert_eq!(h.node_id, "sidecar~198.18.0.1~a-0.ns~ns.svc");
    assert_eq!(h.interception, Interception::None);
    assert_eq!(h.labels.len(), 2);
    assert!(
        parse_header("# proxy: sidecar~1.2.3.4~a.b~b.svc labels=x=y\n").is_err(),
        "interception required"
    );
    assert!(
        parse_header("kind: x\n# proxy: sidecar~1.2.3.4~a.b~b.svc interception=NONE\n").is_err(),
        "header must lead"
    );
    assert!(
        parse_header("# proxy: s~1~a.b~b interception=NONE zone=x\n").is_err(),
        "unknown word"
    );
    let meshed = "# mesh: trustDomain: example.org\n# mesh: rootNamespace: mesh\n\
        # proxy: sidecar~198.18.0.1~a-0.ns~ns.svc interception=NONE\n";
    let h = parse_header(meshed).unwrap();
    assert_eq!(
        (h.mesh.trust_domain.as_str(), h.mesh.root_namespace.as_str()),
        ("example.org", "mesh")
    );
    assert!(
        parse_header("# mesh: trustDomain: [x]\n# proxy: s~1.2.3.4~a.b~b interception=NONE\n")
            .is_err(),
        "bad mesh config"
    );
}

#[test]
fn diff_shows_changes_with_context() {
    let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
    let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
    let diff = unified_diff(old, new);
    assert_eq!(
        diff,
        "@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n"
    );
    assert!(unified_diff("a\n", "a").contains("trailing newline"));
}

#[test]
fn consistency_catches_dangling_references() {
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain};
    use envoy_types::pb::envoy::config::route::v3::{Route, RouteAction, VirtualHost};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
    use envoy_types::util::pack_any;

    let filter = |any| Filter {
        config_type: Some(filter::ConfigType::TypedConfig(any)),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: "no-such-rds".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let tcp = TcpProxy {
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("no-such-tcp".into())),
        ..Default::default()
    };
    let chain = |f| FilterChain {
        filters: vec![f],
        ..Default::default()
    };
    let vhost = |name: &str| VirtualHost {
        name: name.into(),
        domains: vec!["shared".into()],
        routes: vec![Route {
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("gone".into())),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    let res = Resources {
        clusters: vec![Cluster {
            name: "eds".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            ..Default::default()
        }],
        listeners: vec![
            Listener {
                name: "l".into(),
                filter_chains: vec![chain(filter(pack_any(hcm))), chain(filter(pack_any(tcp)))],
                ..Default::default()
            },
            Listener {
                name: "empty".into(),
                ..Default::default()
            },
        ],
        routes: vec![RouteConfiguration {
            name: "r".into(),
            virtual_hosts: vec![vhost("a"), vhost("b")],
            ..Default::default()
        }],
        endpoints: vec![],
    };
    let problems = consistency(&res);
    let expected = [
        "no load assignment \"eds\"",
        "missing route configuration \"no-such-rds\"",
        "missing cluster \"no-such-tcp\"",
        "duplicate domain \"shared\"",
        "virtual host \"b\": refers to missing cluster \"gone\"",
        "listener \"l\": filter_chain_match",
        "listener \"empty\": no filter chains",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.contains(e)),
            "{e:?} not in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 9, "{problems:#?}"); // "gone" is missing from both vhosts
}
