//! `rudder inject`: the injection webhook's mutation, offline (Istio's
//! `istioctl kube-inject`). The same decision and the same JSONPatch, applied
//! locally to each Pod or workload pod template in the input.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use crate::webhook::inject::{inject, Outcome};
use crate::webhook::template::{DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE, DEFAULT_XDS_ADDR};
use crate::webhook::Template;

/// The flags that shape injection, shared by `rudder serve` and `rudder inject`.
#[derive(clap::Args, Debug, Clone)]
pub struct InjectorArgs {
    /// Envoy image of the injected sidecar (`rudder-proxy`); stock Envoy.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
    /// Image of the injected init containers (`rudder-init`,
    /// `rudder-bootstrap`); its entrypoint must be `rudder`.
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_INIT_IMAGE)]
    pub proxy_init_image: String,
    /// Rudder's TLS xDS address as injected proxies dial it.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS_ADDR)]
    pub injected_xds_addr: String,
}

impl InjectorArgs {
    /// The template, checked now: a bad address would otherwise fail in
    /// every injected pod's `rudder bootstrap`.
    pub fn template(&self, token_audience: &str) -> anyhow::Result<Template> {
        #[derive(clap::Parser)]
        struct Bootstrap {
            #[command(flatten)]
            args: super::bootstrap::BootstrapArgs,
        }
        let node = "sidecar~198.18.0.1~check.default~default.svc.cluster.local";
        let argv = ["bootstrap", "--node-id", node, "--xds-addr"];
        let check = Bootstrap::try_parse_from(argv.into_iter().chain([&*self.injected_xds_addr]))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        super::bootstrap::render(&check.args).map_err(|e| {
            let e = e.to_string();
            anyhow::anyhow!("--injected-{}", e.trim_start_matches('-'))
        })?;
        anyhow::ensure!(
            !token_audience.is_empty(),
            "the injected token needs an audience"
        );
        Ok(Template {
            proxy_image: self.proxy_image.clone(),
            init_image: self.proxy_init_image.clone(),
            xds_addr: self.injected_xds_addr.clone(),
            token_audience: token_audience.to_string(),
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct InjectArgs {
    /// Kubernetes YAML, `-` for stdin: Pods and workloads with a pod
    /// template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
    /// CronJob); other documents pass through unchanged.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub filename: PathBuf,
    /// Write the result here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// `aud` of the injected service-account token; one `rudder serve`
    /// accepts (its --token-audience).
    #[arg(long, default_value = "rudder")]
    pub token_audience: String,
    #[command(flatten)]
    pub injector: InjectorArgs,
}

pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let template = args.injector.template(&args.token_audience)?;
    let text = if args.filename.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename.display()))?
    };
    let mut notes = Vec::new();
    let out = inject_documents(&text, &template, &mut notes)?;
    for note in notes {
        eprintln!("{note}");
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
        }
        None => std::io::stdout()
            .lock()
            .write_all(out.as_bytes())
            .context("writing stdout"),
    }
}

/// Where a kind keeps its pod, as a JSON pointer.
fn pod_at(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Injects every pod in a multi-document YAML text; `notes` collects what
/// was skipped and which annotations were ignored.
pub fn inject_documents(
    text: &str,
    template: &Template,
    notes: &mut Vec<String>,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for (i, doc) in crate::api::split_documents(text).into_iter().enumerate() {
        let doc = doc.map_err(|e| anyhow::anyhow!("document {i}: {e}"))?;
        if doc.is_null() {
            continue;
        }
        let mut doc: Value = serde_json::to_value(&doc)
            .with_context(|| format!("document {i} is not plain Kubernetes YAML"))?;
        let text = |ptr: &str| doc.pointer(ptr).and_then(Value::as_str).unwrap_or_default();
        let (kind, name) = (
            text("/kind").to_string(),
            text("/metadata/name").to_string(),
        );
        let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
        if let Some(at) = pod_at(&kind) {
            let what = format!("document {i} ({kind} {name})");
            match inject(&doc, at, template, namespace).with_context(|| what.clone())? {
                Outcome::Inject { patch, warnings } => {
                    json_patch::patch(&mut doc, &patch)
                        .with_context(|| format!("{what}: applying the injection patch"))?;
                    notes.extend(warnings.into_iter().map(|w| format!("{what}: {w}")));
                }
                Outcome::Skip(reason) => notes.push(format!("{what}: not injected: {reason}")),
            }
        }
        out.push(serde_yaml::to_string(&doc)?);
    }
    Ok(out.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: InjectArgs,
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  labels: {app: web}\nspec:\n  containers:\n  - {name: app, image: example/web}\n";
    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata:\n      labels: {app: api}\n      annotations: {sidecar.istio.io/foo: bar}\n    spec:\n      containers: [{name: app, image: example/api}]\n";
    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n";

    fn parse(argv: &[&str]) -> InjectArgs {
        Cli::try_parse_from(std::iter::once("inject").chain(argv.iter().copied()))
            .expect("test args parse")
            .args
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn injects_pods_and_templates_and_passes_the_rest_through() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.yaml");
        let output = dir.path().join("out.yaml");
        std::fs::write(&input, format!("{POD}---\n{SERVICE}---\n{DEPLOYMENT}")).unwrap();
        let args = parse(&[
            "-f",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--proxy-image",
            "example/envoy:test",
        ]);
        run(args).unwrap();
        let text = std::fs::read_to_string(&output).unwrap();
        let docs: Vec<serde_yaml::Value> = crate::api::split_documents(&text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(docs.len(), 3, "{text}");
        let names = |v: &serde_yaml::Value| -> Vec<String> {
            v.as_sequence()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let pod = &docs[0];
        assert_eq!(names(&pod["spec"]["containers"]), ["app", "rudder-proxy"]);
        assert_eq!(
            names(&pod["spec"]["initContainers"]),
            ["rudder-init", "rudder-bootstrap"]
        );
        assert_eq!(pod["spec"]["containers"][1]["image"], "example/envoy:test");
        assert_eq!(
            pod["metadata"]["labels"]["security.istio.io/tlsMode"],
            "istio"
        );
        let service: serde_yaml::Value = serde_yaml::from_str(SERVICE).unwrap();
        assert_eq!(docs[1], service, "other kinds pass through");
        let template = &docs[2]["spec"]["template"];
        assert_eq!(
            names(&template["spec"]["containers"]),
            ["app", "rudder-proxy"]
        );
        assert!(template["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());

        // Injecting the output again changes nothing.
        let mut notes = Vec::new();
        let template = parse(&["-f", "x"]).injector.template("rudder").unwrap();
        let again = inject_documents(&text, &template, &mut notes).unwrap();
        assert_eq!(again, text);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes
            .iter()
            .all(|n| n.ends_with("not injected: already injected")));
    }

    #[test]
    fn ignored_annotations_are_reported_and_bad_ones_fail() {
        let template = parse(&["-f", "x"]).injector.template("rudder").unwrap();
        let mut notes = Vec::new();
        inject_documents(DEPLOYMENT, &template, &mut notes).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("document 0 (Deployment api): annotation sidecar.istio.io/foo"),
            "{notes:?}"
        );
        let bad = POD.replace(
            "labels: {app: web}",
            "annotations: {traffic.sidecar.istio.io/excludeOutboundPorts: \"80,http\"}",
        );
        let err = inject_documents(&bad, &template, &mut notes).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "document 0 (Pod web): annotation traffic.sidecar.istio.io/excludeOutboundPorts: \"http\" is not a port (want a number in 1-65535)"
        );
    }

    #[test]
    fn a_bad_xds_address_is_refused_up_front() {
        let args = parse(&["-f", "x", "--injected-xds-addr", "rudder:0"]);
        let err = args.injector.template("rudder").unwrap_err().to_string();
        assert!(err.starts_with("--injected-xds-addr \"rudder:0\""), "{err}");
    }
}
