//! `rudder translate` and `rudder validate`: the pipeline without a server,
//! for reviewing what a proxy would receive and for checking config in CI.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use crate::model::{Interception, MeshConfig, Proxy, Snapshot};
use crate::translate::{self, ProxyShape};
use crate::xds::json::message_to_json;

#[derive(clap::Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Directory of Kubernetes YAML, as given to `rudder serve --config-dir`.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TranslateArgs {
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Istio MeshConfig YAML, as given to `rudder serve --mesh-config`.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// The proxy to translate for, e.g. `sidecar~198.18.0.5~web-0.demo~demo.svc.cluster.local`.
    #[arg(long)]
    pub node_id: String,
    /// Pod label of the proxy's workload (repeatable), used when no Pod object matches.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// REDIRECT (default), TPROXY or NONE.
    #[arg(long, default_value = "REDIRECT")]
    pub interception: String,
    /// Only this type: cds, eds, lds or rds.
    #[arg(long = "type")]
    pub only: Option<String>,
}

fn load(dir: &Path, mesh: MeshConfig) -> anyhow::Result<Snapshot> {
    let units = crate::source::file::read_dir_once(dir)?;
    Ok(crate::index::snapshot_of(units, mesh))
}

/// Prints every rejected document; fails when there is any.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let snapshot = load(&args.config_dir, MeshConfig::default())?;
    let status = &snapshot.status;
    for rejection in &status.rejected {
        println!("error: {rejection}");
    }
    for warning in &status.warnings {
        println!("warning: {warning}");
    }
    for (object, origin) in &status.ignored {
        println!("ignored: {origin} ({object}): kind not served by Rudder");
    }
    println!(
        "{} objects accepted, {} documents rejected",
        status.accepted.len(),
        status.rejected.len()
    );
    anyhow::ensure!(
        status.rejected.is_empty(),
        "{} invalid documents",
        status.rejected.len()
    );
    Ok(())
}

/// Prints the resources the proxy would receive, as proto3 JSON.
pub fn translate(args: TranslateArgs) -> anyhow::Result<()> {
    let mesh = match &args.mesh_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            crate::api::parse_mesh_config(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => MeshConfig::default(),
    };
    let snapshot = load(&args.config_dir, mesh)?;
    for rejection in &snapshot.status.rejected {
        eprintln!("warning: rejected {rejection}");
    }
    let mut proxy = Proxy::from_node_id(&args.node_id).context("--node-id")?;
    proxy.interception = Interception::parse(&args.interception).with_context(|| {
        format!(
            "--interception {:?} must be REDIRECT, TPROXY or NONE",
            args.interception
        )
    })?;
    for label in &args.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label {label:?} must be KEY=VALUE"))?;
        proxy.labels.insert(k.to_string(), v.to_string());
    }
    let shape = ProxyShape::of(&snapshot, &proxy);
    let render = |items: Vec<Value>| Value::Array(items);
    let mut out = serde_json::Map::new();
    let want = |t: &str| args.only.as_deref().is_none_or(|o| o == t);
    if want("cds") {
        out.insert(
            "clusters".into(),
            render(to_json(translate::clusters(&snapshot, &shape))?),
        );
    }
    if want("eds") {
        out.insert(
            "endpoints".into(),
            render(to_json(translate::endpoints(&snapshot))?),
        );
    }
    if want("lds") {
        out.insert(
            "listeners".into(),
            render(to_json(translate::listeners(&snapshot, &shape))?),
        );
    }
    if want("rds") {
        out.insert(
            "routes".into(),
            render(to_json(translate::routes(&snapshot, &shape))?),
        );
    }
    anyhow::ensure!(!out.is_empty(), "--type must be cds, eds, lds or rds");
    out.insert("shape".into(), json!(shape));
    print_stdout(&serde_json::to_string_pretty(&Value::Object(out))?)
}

/// Like println!, but a reader that closed the pipe early (`| head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn to_json<M: prost::Message + prost::Name>(items: Vec<M>) -> anyhow::Result<Vec<Value>> {
    items
        .iter()
        .map(|m| message_to_json(m).map_err(Into::into))
        .collect()
}
