//! `/inject`: the decision, the patch, and the pod it makes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use json_patch::{Patch, PatchOperation};
use serde_json::{json, Value};

use super::{response, review, yaml};
use crate::webhook::inject::{inject, review as inject_review, InjectError, Outcome};
use crate::webhook::template::{Template, DEFAULT_XDS_ADDR};

const POD: (&str, &str, &str) = ("", "v1", "Pod");
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/webhook/testdata");

fn template() -> Template {
    Template {
        proxy_image: "envoyproxy/envoy:v1.40.0".into(),
        init_image: "ghcr.io/rudder-mesh/rudder:test".into(),
        xds_addr: DEFAULT_XDS_ADDR.into(),
        token_audience: "rudder".into(),
    }
}

fn sample() -> Value {
    yaml(&std::fs::read_to_string(format!("{TESTDATA}/pod.yaml")).unwrap())
}

fn outcome(pod: &Value) -> Result<Outcome, InjectError> {
    inject(pod, "", &template(), Some("shop"))
}

fn patch_of(pod: &Value) -> (Patch, Vec<String>) {
    match outcome(pod).unwrap() {
        Outcome::Inject { patch, warnings } => (patch, warnings),
        Outcome::Skip(why) => panic!("not injected: {why}"),
    }
}

/// Injects and applies the patch, as the API server would.
fn injected(pod: &Value) -> (Value, Vec<String>) {
    let (patch, warnings) = patch_of(pod);
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies cleanly");
    (out, warnings)
}

fn skipped(pod: &Value) -> String {
    match outcome(pod).unwrap() {
        Outcome::Skip(why) => why,
        Outcome::Inject { .. } => panic!("injected: {pod}"),
    }
}

fn paths(patch: &Patch) -> Vec<String> {
    patch
        .iter()
        .map(|op| match op {
            PatchOperation::Add(add) => add.path.to_string(),
            other => panic!("only adds expected, got {other:?}"),
        })
        .collect()
}

fn names(list: &Value) -> Vec<&str> {
    let list = list.as_array().expect("a list");
    list.iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[test]
fn the_sample_pod_becomes_exactly_the_golden_pod() {
    let (pod, warnings) = injected(&sample());
    assert!(warnings.is_empty(), "{warnings:?}");
    let golden = format!("{TESTDATA}/pod.injected.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = format!(
            "# pod.yaml after `/inject`; regenerate with UPDATE_GOLDEN=1.\n{}",
            serde_yaml::to_string(&pod).unwrap()
        );
        std::fs::write(&golden, text).unwrap();
    }
    let want = yaml(&std::fs::read_to_string(&golden).unwrap());
    pretty_assertions::assert_eq!(pod, want);
}

#[test]
fn a_bare_pod_gets_whole_lists_and_maps() {
    let (patch, _) = patch_of(&sample());
    let want = [
        "/spec/initContainers",
        "/spec/containers/-",
        "/spec/volumes",
        "/metadata/labels/security.istio.io~1tlsMode",
        "/metadata/annotations",
    ];
    assert_eq!(paths(&patch), want);
}

#[test]
fn existing_lists_and_maps_get_items_with_ours_first_among_init_containers() {
    let mut pod = sample();
    pod["metadata"]["annotations"] = json!({ "kubectl.kubernetes.io/default-container": "app" });
    pod["spec"]["initContainers"] = json!([{ "name": "migrate", "image": "example/migrate" }]);
    pod["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    let (patch, _) = patch_of(&pod);
    let want = [
        "/spec/initContainers/0",
        "/spec/initContainers/1",
        "/spec/containers/-",
        "/spec/volumes/-",
        "/spec/volumes/-",
        "/spec/volumes/-",
        "/metadata/labels/security.istio.io~1tlsMode",
        "/metadata/annotations/sidecar.istio.io~1status",
    ];
    assert_eq!(paths(&patch), want);
    let (pod, _) = injected(&pod);
    let init = names(&pod["spec"]["initContainers"]);
    assert_eq!(init, ["rudder-init", "rudder-bootstrap", "migrate"]);
    let volumes = names(&pod["spec"]["volumes"]);
    assert_eq!(
        volumes,
        ["data", "rudder-token", "rudder-ca-root", "rudder-bootstrap"]
    );
}

#[test]
fn a_pod_template_without_metadata_is_patched_in_place() {
    let deployment = yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: shop}\nspec:\n  template:\n    spec:\n      containers: [{name: app, image: example/api}]\n",
    );
    let Outcome::Inject { patch, .. } =
        inject(&deployment, "/spec/template", &template(), None).unwrap()
    else {
        panic!("not injected");
    };
    let mut out = deployment.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    let pod = &out["spec"]["template"];
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "rudder-proxy"]);
    assert_eq!(
        pod["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
    assert!(pod["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    assert!(
        out["metadata"].get("labels").is_none(),
        "only the template changes"
    );
}

fn annotated(annotations: Value) -> Value {
    let mut pod = sample();
    pod["metadata"]["annotations"] = annotations;
    pod
}

#[test]
fn capture_resource_and_image_annotations_are_honoured() {
    let (pod, warnings) = injected(&annotated(json!({
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8, 2001:db8::/32",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.1/32",
        "traffic.sidecar.istio.io/includeInboundPorts": "9080",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9443",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379",
        "sidecar.istio.io/proxyImage": "example/envoy:custom",
        "sidecar.istio.io/proxyCPU": "50m",
        "sidecar.istio.io/proxyMemoryLimit": "256Mi",
        "sidecar.istio.io/rewriteAppHTTPProbers": "true",
    })));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "rudder-init");
    let args = json!([
        "iptables",
        "--apply",
        "--include-outbound-cidrs=10.0.0.0/8",
        "--exclude-outbound-cidrs=10.96.0.1/32",
        "--include-inbound-ports=9080",
        "--exclude-inbound-ports=9443",
        "--exclude-outbound-ports=5432,6379",
    ]);
    assert_eq!(init["args"], args);
    let proxy = &pod["spec"]["containers"][1];
    assert_eq!(proxy["image"], "example/envoy:custom");
    let resources =
        json!({ "requests": { "cpu": "50m", "memory": "128Mi" }, "limits": { "memory": "256Mi" } });
    assert_eq!(proxy["resources"], resources);
    assert_eq!(
        warnings,
        [
            "annotation traffic.sidecar.istio.io/includeOutboundIPRanges: IPv6 ranges 2001:db8::/32 ignored (IPv6 traffic is not captured)",
            "annotation sidecar.istio.io/rewriteAppHTTPProbers is not supported by Rudder's injector and was ignored",
        ]
    );
}

#[test]
fn hold_application_until_proxy_starts_makes_the_proxy_a_native_sidecar() {
    let config = "holdApplicationUntilProxyStarts: true\nconcurrency: 2\n";
    let (pod, warnings) = injected(&annotated(json!({ "proxy.istio.io/config": config })));
    let init = names(&pod["spec"]["initContainers"]);
    assert_eq!(init, ["rudder-init", "rudder-bootstrap", "rudder-proxy"]);
    assert_eq!(names(&pod["spec"]["containers"]), ["app"]);
    let proxy = &pod["spec"]["initContainers"][2];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["startupProbe"]["httpGet"]["path"], "/healthz/ready");
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15021);
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        status["initContainers"],
        json!(["rudder-init", "rudder-bootstrap", "rudder-proxy"])
    );
    assert_eq!(status["containers"], json!([]));
    assert_eq!(
        warnings,
        ["annotation proxy.istio.io/config: fields concurrency are not supported by Rudder and were ignored"]
    );
    // Off (or absent) is the ordinary sidecar.
    let off = json!({ "proxy.istio.io/config": "{holdApplicationUntilProxyStarts: false}" });
    let (pod, warnings) = injected(&annotated(off));
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "rudder-proxy"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn bad_annotations_are_errors_naming_the_annotation() {
    let cases = [
        (
            json!({ "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.1" }),
            "annotation traffic.sidecar.istio.io/excludeOutboundIPRanges: \"10.0.0.1\" is not a CIDR (want ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 10.1.2.3/32)",
        ),
        (
            json!({ "traffic.sidecar.istio.io/includeInboundPorts": "80,*" }),
            "annotation traffic.sidecar.istio.io/includeInboundPorts: '*' is only meaningful alone, in --include-outbound-cidrs or --include-inbound-ports",
        ),
        (
            json!({ "proxy.istio.io/config": "holdApplicationUntilProxyStarts: yes please" }),
            "annotation proxy.istio.io/config: holdApplicationUntilProxyStarts must be true or false, got String(\"yes please\")",
        ),
        (
            json!({ "proxy.istio.io/config": "[1, 2]" }),
            "annotation proxy.istio.io/config: must be a ProxyConfig mapping",
        ),
    ];
    for (annotations, want) in cases {
        let err = outcome(&annotated(annotations)).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn opt_outs_are_honoured_and_the_label_wins() {
    let mut pod = sample();
    pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false".into();
    assert_eq!(skipped(&pod), "sidecar.istio.io/inject is \"false\"");
    // The deprecated annotation counts when there is no label...
    let mut pod = annotated(json!({ "sidecar.istio.io/inject": "off" }));
    assert_eq!(skipped(&pod), "sidecar.istio.io/inject is \"off\"");
    // ...and the label overrides it.
    pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "true".into();
    injected(&pod);

    let mut pod = sample();
    pod["spec"]["hostNetwork"] = true.into();
    assert_eq!(skipped(&pod), "the pod uses the host's network");
    let system = inject(&sample(), "", &template(), Some("kube-system")).unwrap();
    assert_eq!(
        system,
        Outcome::Skip("namespace kube-system is never injected".into())
    );
}

#[test]
fn injection_is_idempotent() {
    let (pod, _) = injected(&sample());
    assert_eq!(skipped(&pod), "already injected");
    let mut by_hand = sample();
    by_hand["spec"]["containers"][0]["name"] = "rudder-proxy".into();
    assert_eq!(skipped(&by_hand), "already injected");
    let status_only = annotated(json!({ "sidecar.istio.io/status": "{}" }));
    assert_eq!(skipped(&status_only), "already injected");
}

#[test]
fn a_name_injection_needs_is_a_conflict() {
    let mut pod = sample();
    pod["spec"]["volumes"] = json!([{ "name": "rudder-token", "emptyDir": {} }]);
    let err = outcome(&pod).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume \"rudder-token\" already exists; Rudder's injection needs that name"
    );
}

#[test]
fn the_review_carries_a_base64_json_patch_and_warnings() {
    let pod = annotated(json!({ "sidecar.istio.io/interceptionMode": "TPROXY" }));
    let answer = response(inject_review(
        review(POD, "CREATE", "shop", pod.clone()),
        &template(),
    ));
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(answer["patchType"], "JSONPatch", "{answer}");
    let bytes = STANDARD.decode(answer["patch"].as_str().unwrap()).unwrap();
    let patch: Patch = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(patch, patch_of(&pod).0);
    let warnings = answer["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]
        .as_str()
        .unwrap()
        .contains("sidecar.istio.io/interceptionMode"));
}

#[test]
fn reviews_it_does_not_mutate_are_allowed_unchanged_and_bad_pods_denied() {
    let unchanged = [
        review(POD, "UPDATE", "shop", sample()),
        review(POD, "DELETE", "shop", sample()),
        review(("apps", "v1", "Deployment"), "CREATE", "shop", sample()),
    ];
    for r in unchanged {
        let answer = response(inject_review(r, &template()));
        assert_eq!(answer["allowed"], true, "{answer}");
        assert!(answer.get("patch").is_none(), "{answer}");
    }
    let mut generated = annotated(json!({ "traffic.sidecar.istio.io/excludeOutboundPorts": "0" }));
    generated["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    generated["metadata"]["generateName"] = "reviews-v1-7d9f-".into();
    let answer = response(inject_review(
        review(POD, "CREATE", "shop", generated),
        &template(),
    ));
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(
        answer["status"]["message"],
        "pod shop/reviews-v1-7d9f-: annotation traffic.sidecar.istio.io/excludeOutboundPorts: \"0\" is not a port (want a number in 1-65535)"
    );
}

#[test]
fn the_injected_commands_parse_as_rudder_would_run_them() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Rudder {
        #[command(subcommand)]
        command: crate::cli::Command,
    }
    let (pod, _) = injected(&annotated(json!({
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.0/12",
    })));
    let init = pod["spec"]["initContainers"].as_array().unwrap();
    // What the kubelet's `$(VAR)` expansion makes of the bootstrap's args.
    let expand = |arg: &str| {
        arg.replace("$(POD_IP)", "198.18.0.9")
            .replace("$(POD_NAME)", "reviews-v1-7d9f")
            .replace("$(POD_NAMESPACE)", "shop")
            .replace("$(SERVICE_ACCOUNT)", "reviews")
    };
    for container in init {
        let args = container["args"].as_array().unwrap();
        let argv = args.iter().map(|a| expand(a.as_str().unwrap()));
        let parsed = Rudder::try_parse_from(std::iter::once("rudder".to_string()).chain(argv))
            .unwrap_or_else(|e| panic!("{}: {e}", container["name"]));
        match parsed.command {
            crate::cli::Command::Iptables(args) => {
                assert!(args.apply);
                crate::cli::iptables::CaptureConfig::from_args(&args).unwrap();
            }
            crate::cli::Command::Bootstrap(args) => {
                let boot = crate::cli::bootstrap::render(&args).unwrap();
                let meta = &boot["node"]["metadata"];
                assert_eq!(meta["SERVICE_ACCOUNT"], "reviews");
                assert_eq!(meta["NAMESPACE"], "shop");
                assert_eq!(meta["LABELS"]["security.istio.io/tlsMode"], "istio");
                assert_eq!(meta["LABELS"]["app"], "reviews");
                let google =
                    &boot["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
                assert_eq!(google["target_uri"], DEFAULT_XDS_ADDR);
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
}
