//! The injecting webhook, and `rudder inject` offline: whether a pod gets a
//! sidecar, and the JSONPatch that adds it (see [`super::template`] for what
//! is added).
//!
//! Which pods are sent here is the MutatingWebhookConfiguration's business
//! (Istio's selectors, in docs/operating.md): the API server calls only for
//! pods in `istio-injection=enabled` namespaces, or labelled
//! `sidecar.istio.io/inject: "true"` elsewhere. The webhook cannot see
//! namespace labels, so it injects what it is sent unless the pod opts out.

use std::collections::BTreeMap;

use clap::Parser;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use serde_json::{json, Value};

use super::template::{default_requests, PodSettings, Template, PROXY_CONTAINER, TLS_MODE_LABEL};
use crate::cli::iptables::{CaptureConfig, IptablesArgs};

/// Records what was injected (Istio's format); its presence means "done".
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// Label (or, deprecated, annotation) opting a pod in or out.
pub const INJECT_LABEL: &str = "sidecar.istio.io/inject";
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";
const PROXY_IMAGE_ANNOTATION: &str = "sidecar.istio.io/proxyImage";
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Istio never injects here.
const IGNORED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// Istio's capture annotations and the `rudder iptables` flag each becomes.
const CAPTURE_ANNOTATIONS: [(&str, &str); 5] = [
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "--include-outbound-cidrs",
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "--exclude-outbound-cidrs",
    ),
    (
        "traffic.sidecar.istio.io/includeInboundPorts",
        "--include-inbound-ports",
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "--exclude-inbound-ports",
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "--exclude-outbound-ports",
    ),
];

/// Istio's proxy resource annotations: (annotation, limits?, resource).
const RESOURCE_ANNOTATIONS: [(&str, bool, &str); 4] = [
    ("sidecar.istio.io/proxyCPU", false, "cpu"),
    ("sidecar.istio.io/proxyMemory", false, "memory"),
    ("sidecar.istio.io/proxyCPULimit", true, "cpu"),
    ("sidecar.istio.io/proxyMemoryLimit", true, "memory"),
];

/// Prefixes of Istio's injection annotations; the ones not handled above are
/// reported back as ignored rather than silently dropped.
const ISTIO_PREFIXES: [&str; 3] = [
    "sidecar.istio.io/",
    "traffic.sidecar.istio.io/",
    "proxy.istio.io/",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("annotation {key}: {reason}")]
    Annotation { key: String, reason: String },
    #[error("{what} {name:?} already exists; Rudder's injection needs that name")]
    Conflict { what: &'static str, name: String },
    #[error("not a pod: {0}")]
    Decode(String),
}

/// What injection makes of one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Apply this; `warnings` name annotations that were not honoured.
    Inject { patch: Patch, warnings: Vec<String> },
    /// Left alone, and why.
    Skip(String),
}

/// The webhook's answer to one review: a JSONPatch, nothing, or a denial
/// when the pod's injection annotations are wrong (its init container
/// would fail anyway).
pub fn review(
    review: AdmissionReview<DynamicObject>,
    template: &Template,
) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return AdmissionResponse::invalid("the review has no request").into_review(),
    };
    let response = AdmissionResponse::from(&request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    let (Operation::Create, true, Some(object)) = (&request.operation, is_pod, &request.object)
    else {
        return response.into_review();
    };
    let pod = format!(
        "{}/{}",
        request.namespace.as_deref().unwrap_or_default(),
        object
            .metadata
            .name
            .as_deref()
            .or(object.metadata.generate_name.as_deref())
            .unwrap_or_default()
    );
    let outcome = serde_json::to_value(object)
        .map_err(|e| InjectError::Decode(e.to_string()))
        .and_then(|doc| inject(&doc, "", template, request.namespace.as_deref()));
    match outcome {
        Ok(Outcome::Inject { patch, warnings }) => {
            tracing::info!(uid = %request.uid, %pod, "injection webhook: injecting");
            let mut response = match response.with_patch(patch) {
                Ok(response) => response,
                Err(e) => return AdmissionResponse::invalid(e).into_review(),
            };
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            response.into_review()
        }
        Ok(Outcome::Skip(reason)) => {
            tracing::debug!(uid = %request.uid, %pod, %reason, "injection webhook: not injecting");
            response.into_review()
        }
        Err(e) => response.deny(format!("pod {pod}: {e}")).into_review(),
    }
}

/// Decides and builds the patch for the pod (or pod template) at JSON
/// pointer `at` in `doc`: `""` for a Pod, `/spec/template` for a Deployment.
pub fn inject(
    doc: &Value,
    at: &str,
    template: &Template,
    namespace: Option<&str>,
) -> Result<Outcome, InjectError> {
    let raw = doc
        .pointer(at)
        .ok_or_else(|| InjectError::Decode(format!("nothing at {at:?}")))?;
    let pod: PodTemplateSpec =
        serde_json::from_value(raw.clone()).map_err(|e| InjectError::Decode(e.to_string()))?;
    let meta = pod.metadata.unwrap_or_default();
    let spec = pod.spec.unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    let annotations = meta.annotations.unwrap_or_default();

    let opt_in = labels
        .get(INJECT_LABEL)
        .or_else(|| annotations.get(INJECT_LABEL));
    let skip = |why: &str| Ok(Outcome::Skip(why.to_string()));
    if let Some(value) = opt_in.filter(|v| !is_yes(v)) {
        return skip(&format!("{INJECT_LABEL} is {value:?}"));
    }
    if let Some(ns) = namespace.filter(|ns| IGNORED_NAMESPACES.contains(ns)) {
        return skip(&format!("namespace {ns} is never injected"));
    }
    if spec.host_network == Some(true) {
        return skip("the pod uses the host's network");
    }
    let init_names = || spec.init_containers.iter().flatten().map(|c| &c.name);
    let names = || spec.containers.iter().map(|c| &c.name).chain(init_names());
    if annotations.contains_key(STATUS_ANNOTATION) || names().any(|n| n == PROXY_CONTAINER) {
        return skip("already injected");
    }

    let mut warnings = Vec::new();
    let settings = settings(&annotations, &mut warnings)?;
    let init = {
        let mut labels = labels.clone();
        labels.insert(TLS_MODE_LABEL.into(), "istio".into());
        template.init_containers(&settings, &labels)
    };
    let containers = template.containers(&settings);
    let volumes = template.volumes();
    for ours in &init {
        if init_names().any(|n| *n == ours.name) {
            return Err(conflict("init container", &ours.name));
        }
    }
    for ours in &volumes {
        if spec.volumes.iter().flatten().any(|v| v.name == ours.name) {
            return Err(conflict("volume", &ours.name));
        }
    }

    let names_of = |items: &[String]| json!(items);
    let init_list: Vec<String> = init.iter().map(|c| c.name.clone()).collect();
    let container_list: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
    let volume_list: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    let status = json!({
        "initContainers": names_of(&init_list),
        "containers": names_of(&container_list),
        "volumes": names_of(&volume_list),
        "imagePullSecrets": null,
        "revision": "default",
    });
    let mut new_annotations = vec![(STATUS_ANNOTATION, status.to_string())];
    if let (false, Some(first)) = (
        annotations.contains_key(DEFAULT_CONTAINER_ANNOTATION),
        spec.containers.first(),
    ) {
        // `kubectl logs/exec` keep meaning the application.
        new_annotations.push((DEFAULT_CONTAINER_ANNOTATION, first.name.clone()));
    }

    let mut ops = Ops::new(at, raw);
    ops.prepend(&["spec", "initContainers"], to_values(&init));
    ops.append(&["spec", "containers"], to_values(&containers));
    ops.append(&["spec", "volumes"], to_values(&volumes));
    ops.insert(
        &["metadata", "labels"],
        [(TLS_MODE_LABEL, "istio".to_string())],
    );
    ops.insert(&["metadata", "annotations"], new_annotations);
    Ok(Outcome::Inject {
        patch: Patch(ops.ops),
        warnings,
    })
}

/// Istio's reading of the opt-in value: anything but these means no.
fn is_yes(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "on"
    )
}

fn conflict(what: &'static str, name: &str) -> InjectError {
    InjectError::Conflict {
        what,
        name: name.to_string(),
    }
}

fn to_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).expect("k8s-openapi types serialize"))
        .collect()
}

/// The pod's own settings, from Istio's annotations.
fn settings(
    annotations: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<PodSettings, InjectError> {
    let mut settings = PodSettings {
        requests: default_requests(),
        ..Default::default()
    };
    let mut honoured = vec![INJECT_LABEL, STATUS_ANNOTATION, PROXY_IMAGE_ANNOTATION];
    for (key, flag) in CAPTURE_ANNOTATIONS {
        honoured.push(key);
        if let Some(value) = annotations.get(key) {
            let value = drop_ipv6(key, flag, value, warnings);
            check_capture(key, flag, &value)?;
            settings.capture_args.push(format!("{flag}={value}"));
        }
    }
    for (key, limit, resource) in RESOURCE_ANNOTATIONS {
        honoured.push(key);
        if let Some(value) = annotations.get(key) {
            let map = match limit {
                true => &mut settings.limits,
                false => &mut settings.requests,
            };
            map.insert(resource.to_string(), value.trim().to_string());
        }
    }
    settings.proxy_image = annotations.get(PROXY_IMAGE_ANNOTATION).cloned();
    honoured.push(PROXY_CONFIG_ANNOTATION);
    if let Some(config) = annotations.get(PROXY_CONFIG_ANNOTATION) {
        settings.hold_application = proxy_config(config, warnings)?;
    }
    for key in annotations.keys() {
        let istio = ISTIO_PREFIXES.iter().any(|p| key.starts_with(p));
        if istio && !honoured.contains(&key.as_str()) {
            warnings.push(format!(
                "annotation {key} is not supported by Rudder's injector and was ignored"
            ));
        }
    }
    Ok(settings)
}

/// IPv6 capture is not done yet, so IPv6 ranges mean nothing; Istio drops
/// them silently when IPv6 is off, Rudder says so.
fn drop_ipv6(key: &str, flag: &str, value: &str, warnings: &mut Vec<String>) -> String {
    if !flag.ends_with("-cidrs") || !value.contains(':') {
        return value.to_string();
    }
    let (v6, v4): (Vec<&str>, Vec<&str>) = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .partition(|s| s.contains(':'));
    warnings.push(format!(
        "annotation {key}: IPv6 ranges {} ignored (IPv6 traffic is not captured)",
        v6.join(",")
    ));
    v4.join(",")
}

/// The init container's own parser and validator judge the value now, so
/// a typo fails the pod's creation with a message, not its init container.
fn check_capture(key: &str, flag: &str, value: &str) -> Result<(), InjectError> {
    #[derive(clap::Parser)]
    struct Iptables {
        #[command(flatten)]
        args: IptablesArgs,
    }
    let bad = |reason: String| InjectError::Annotation {
        key: key.to_string(),
        reason,
    };
    let arg = format!("{flag}={value}");
    let parsed = Iptables::try_parse_from(["rudder-iptables", "--dry-run", &arg])
        .map_err(|e| bad(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    CaptureConfig::from_args(&parsed.args).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix(&format!("{flag}: ")).unwrap_or(&msg);
        bad(msg.to_string())
    })?;
    Ok(())
}

/// `proxy.istio.io/config` (a ProxyConfig in YAML or JSON): only
/// `holdApplicationUntilProxyStarts` is honoured; the rest is reported.
fn proxy_config(text: &str, warnings: &mut Vec<String>) -> Result<bool, InjectError> {
    let bad = |reason: String| InjectError::Annotation {
        key: PROXY_CONFIG_ANNOTATION.into(),
        reason,
    };
    let config: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let map = match config {
        serde_yaml::Value::Null => return Ok(false),
        serde_yaml::Value::Mapping(map) => map,
        _ => return Err(bad("must be a ProxyConfig mapping".into())),
    };
    let mut hold = false;
    let mut ignored = Vec::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            (Some("holdApplicationUntilProxyStarts"), serde_yaml::Value::Bool(b)) => hold = b,
            (Some("holdApplicationUntilProxyStarts"), other) => {
                return Err(bad(format!(
                    "holdApplicationUntilProxyStarts must be true or false, got {other:?}"
                )))
            }
            (Some(key), _) => ignored.push(key.to_string()),
            (None, _) => ignored.push(format!("{key:?}")),
        }
    }
    if !ignored.is_empty() {
        warnings.push(format!(
            "annotation {PROXY_CONFIG_ANNOTATION}: fields {} are not supported by Rudder and were ignored",
            ignored.join(", ")
        ));
    }
    Ok(hold)
}

/// JSONPatch `add` operations against the pod at a pointer, shaped by what
/// the pod already has: a missing (or null, or empty) list or map is added
/// whole, an existing one gets items.
struct Ops<'a> {
    at: &'a str,
    raw: &'a Value,
    ops: Vec<PatchOperation>,
    /// A template without `metadata` gets one, once.
    added_metadata: bool,
}

impl<'a> Ops<'a> {
    fn new(at: &'a str, raw: &'a Value) -> Self {
        Ops {
            at,
            raw,
            ops: Vec::new(),
            added_metadata: false,
        }
    }

    fn pointer(&self, tokens: &[&str]) -> PointerBuf {
        let mut ptr = PointerBuf::parse(self.at).expect("callers pass valid pointers");
        for token in tokens {
            ptr.push_back(*token);
        }
        ptr
    }

    fn add(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// The existing non-empty value at `tokens` (relative to the pod).
    fn existing(&self, tokens: &[&str]) -> Option<&'a Value> {
        let mut v = self.raw;
        for t in tokens {
            v = v.get(t)?;
        }
        let empty = match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        (!empty).then_some(v)
    }

    fn prepend(&mut self, list: &[&str], items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if self.existing(list).is_none() {
            return self.add(self.pointer(list), Value::Array(items));
        }
        for (i, item) in items.into_iter().enumerate() {
            let mut path = self.pointer(list);
            path.push_back(i);
            self.add(path, item);
        }
    }

    fn append(&mut self, list: &[&str], items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if self.existing(list).is_none() {
            return self.add(self.pointer(list), Value::Array(items));
        }
        for item in items {
            let mut path = self.pointer(list);
            path.push_back("-");
            self.add(path, item);
        }
    }

    /// `map` is `["metadata", NAME]`; a pod template may lack `metadata`.
    fn insert<K: AsRef<str>>(
        &mut self,
        map: &[&str],
        entries: impl IntoIterator<Item = (K, String)>,
    ) {
        let entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v))
            .collect();
        if !self.added_metadata && self.raw.get(map[0]).is_none_or(Value::is_null) {
            self.added_metadata = true;
            self.add(self.pointer(&map[..1]), json!({}));
        }
        if self.existing(map).is_none() {
            let object = entries.into_iter().map(|(k, v)| (k, Value::String(v)));
            return self.add(self.pointer(map), Value::Object(object.collect()));
        }
        for (key, value) in entries {
            let mut path = self.pointer(map);
            path.push_back(key);
            self.add(path, Value::String(value));
        }
    }
}
