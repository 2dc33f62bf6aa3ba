//! The Helm chart (helm/rudder) against a real kube-apiserver: `helm lint`,
//! `helm template`, every rendered object applied to the API server (CRDs
//! first), RBAC checked with SubjectAccessReviews, and `rudder serve` run
//! with the Deployment's own arguments as the chart's ServiceAccount until it
//! is ready.
//!
//! Helm comes from `$HELM_BIN` or `e2e/kube/ensure_helm.sh --no-build` (built
//! from Go modules; e2e/test.sh builds it). Without it the tests fail, never
//! skip.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::support::kube::{condition_true, KubeApi, CRDS};
use crate::support::{free_port, poll, try_http_get, workdir, Proc};

const NS: &str = "rudder-system";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("helm/rudder")
}

/// `$HELM_BIN`, else what `e2e/kube/ensure_helm.sh --no-build` finds; panics
/// when there is none.
fn helm_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HELM_BIN").map(PathBuf::from) {
        assert!(
            bin.is_file(),
            "HELM_BIN={} is not a file; run e2e/kube/ensure_helm.sh",
            bin.display()
        );
        return bin;
    }
    let script = repo().join("e2e/kube/ensure_helm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--no-build")
        .output()
        .unwrap_or_else(|e| panic!("running {} --no-build: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helm missing ({}):\n{}\nbuild it with e2e/kube/ensure_helm.sh (e2e/test.sh does)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("HELM_BIN="))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no HELM_BIN= line in ensure_helm.sh output:\n{stdout}"))
}

/// Runs helm with `args`; (success, stdout, stderr).
fn helm(args: &[&str]) -> (bool, String, String) {
    let bin = helm_bin();
    let home = workdir("helm-home");
    let out = Command::new(&bin)
        .args(args)
        // No user config or cache: only the chart on disk matters.
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart into `rudder-system` with `--include-crds`
/// and `sets` (`--set`/`--set-file` pairs); every document, parsed.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = chart().display().to_string();
    let mut args = vec![
        "template",
        "rudder",
        &chart,
        "--namespace",
        NS,
        "--include-crds",
    ];
    args.extend(sets);
    let (ok, stdout, stderr) = helm(&args);
    assert!(ok, "helm {args:?} failed:\n{stderr}");
    serde_yaml::Deserializer::from_str(&stdout)
        .map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{stdout}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered; have {:?}", kinds(objects)))
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// The collection an object is created in: its API group path, plural and
/// namespace. Panics on a kind the chart did not render before, so a new
/// template gets its row here (and is applied) rather than being skipped.
fn collection(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let kind = obj["kind"].as_str().expect("kind");
    let (plural, namespaced) = match kind {
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "MutatingWebhookConfiguration" => ("mutatingwebhookconfigurations", false),
        "ValidatingWebhookConfiguration" => ("validatingwebhookconfigurations", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "Deployment" => ("deployments", true),
        other => panic!("the chart renders a {other}: add it to collection() in e2e/helm_chart.rs"),
    };
    let group = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    if namespaced {
        let ns = obj["metadata"]["namespace"].as_str();
        assert_eq!(
            ns,
            Some(NS),
            "{kind} rendered without the release namespace"
        );
        format!("{group}/namespaces/{NS}/{plural}")
    } else {
        assert!(
            obj["metadata"]["namespace"].is_null(),
            "cluster-scoped {kind} has a namespace"
        );
        format!("{group}/{plural}")
    }
}

/// Applies every rendered object: the namespace, then the CRDs (waiting
/// until each is Established), then the rest; each must be accepted, and
/// reads back.
fn apply_all(kube: &KubeApi, objects: &[Value]) {
    kube.apply(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = objects
        .iter()
        .partition(|o| o["kind"] == "CustomResourceDefinition");
    assert_eq!(crds.len(), 8, "the chart's crds/ holds Rudder's 8 CRDs");
    for crd in &crds {
        kube.apply(CRDS, crd);
    }
    for crd in &crds {
        let path = format!("{CRDS}/{}", crd["metadata"]["name"].as_str().unwrap());
        poll(Duration::from_secs(30), || {
            condition_true(&kube.get(&path), "Established").then_some(())
        })
        .unwrap_or_else(|| panic!("{path} not Established within 30s"));
    }
    for obj in rest {
        let collection = collection(obj);
        kube.apply(&collection, obj);
        let name = obj["metadata"]["name"].as_str().unwrap();
        let stored = kube.get(&format!("{collection}/{name}"));
        assert_eq!(stored["kind"], obj["kind"]);
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The chart's crds/ is a byte-for-byte copy of the generated crds/*.yaml
/// (a copy, not a symlink: `helm package` and every checkout keep it).
#[test]
fn helm_chart_crds_are_the_generated_crds() {
    let yaml_files = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let generated = repo().join("crds");
    let copied = chart().join("crds");
    let fix = "fix: cp crds/*.yaml helm/rudder/crds/ (and remove stale files there)";
    assert_eq!(yaml_files(&generated), yaml_files(&copied), "{fix}");
    for name in yaml_files(&generated) {
        let a = std::fs::read(generated.join(&name)).unwrap();
        let b = std::fs::read(copied.join(&name)).unwrap();
        assert!(
            a == b,
            "helm/rudder/crds/{name} differs from crds/{name}; {fix}"
        );
    }
}

#[test]
fn helm_chart_lints_with_and_without_a_ca_bundle() {
    let chart = chart().display().to_string();
    let ca = format!("caBundle={}", b64("root"));
    let (ok, stdout, stderr) = helm(&["lint", "--strict", &chart, "--set", &ca]);
    assert!(ok, "helm lint failed:\n{stdout}{stderr}");
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");

    // Without a caBundle the webhooks render without one: Rudder sets it.
    let (ok, stdout, stderr) = helm(&["template", "rudder", &chart]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("WebhookConfiguration") && !stdout.contains("caBundle:"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = helm(&["lint", "--strict", &chart]);
    assert!(ok, "helm lint without a caBundle failed:\n{stdout}{stderr}");
    let off = "webhooks.inject.enabled=false,webhooks.validate.enabled=false";
    let (ok, stdout, stderr) = helm(&["template", "rudder", &chart, "--set", off]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("WebhookConfiguration"), "{stdout}");
    // Two replicas with the per-pod emptyDir CA would be two meshes.
    let (ok, _, stderr) = helm(&[
        "template",
        "rudder",
        &chart,
        "--set",
        &ca,
        "--set",
        "replicas=2,ca.secret=",
    ]);
    assert!(
        !ok && stderr.contains("replicas > 1 needs ca.secret or ca.secretName"),
        "{stderr}"
    );
}

/// Every `--flag` of the Deployment's container, without values.
fn container_args(deploy: &Value) -> Vec<String> {
    let args = &deploy["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

#[test]
fn helm_chart_applies_to_the_api_server_and_its_serve_args_run() {
    let kube = KubeApi::start();
    let ca_bundle = b64(&kube.ca_pem);
    let objects = render(&["--set", &format!("caBundle={ca_bundle}")]);

    // What is rendered.
    let expected = [
        "ClusterRole/rudder",
        "ClusterRoleBinding/rudder",
        "ConfigMap/istio",
        "Deployment/rudder",
        "MutatingWebhookConfiguration/rudder-sidecar-injector",
        "Role/rudder",
        "RoleBinding/rudder",
        "Service/rudder",
        "ServiceAccount/rudder",
        "ValidatingWebhookConfiguration/rudder-validator",
    ];
    let mut want: BTreeSet<String> = expected.map(String::from).into();
    for crd in crate::support::kube::our_crds().keys() {
        want.insert(format!("CustomResourceDefinition/{crd}"));
    }
    assert_eq!(kinds(&objects), want);

    let svc = find(&objects, "Service", "rudder");
    let ports: Vec<(u64, String, String)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (p["port"].as_u64().unwrap(), s("name"), s("targetPort"))
        })
        .collect();
    let port = |n: u64, name: &str, target: &str| (n, name.to_string(), target.to_string());
    assert_eq!(
        ports,
        [
            port(15012, "tls-xds", "tls-xds"),
            port(15014, "http-monitoring", "http-admin"),
            port(443, "https-webhook", "https-webhook"),
        ],
        "no plaintext 15010 by default"
    );

    let deploy = find(&objects, "Deployment", "rudder");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": "http-admin"})
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http-admin"})
    );
    let container_ports: Vec<(u64, &str)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_u64().unwrap(),
                p["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        container_ports,
        [
            (15012, "tls-xds"),
            (15014, "http-admin"),
            (15017, "https-webhook")
        ]
    );
    // The CA is the Secret rudder-ca, read through the API; its keys pass
    // through /tmp, in memory.
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "tmp", "emptyDir": {"medium": "Memory"}})
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let args = container_args(deploy);
    assert_eq!(args[..2], ["serve", "--kube"]);
    assert_eq!(arg(&args, "--mesh-config-map"), Some("rudder-system/istio"));
    assert_eq!(arg(&args, "--ca-secret"), Some("rudder-system/rudder-ca"));
    assert_eq!(arg(&args, "--ca-dir"), None);
    assert_eq!(
        arg(&args, "--xds-addr"),
        Some("127.0.0.1:15010"),
        "plaintext xDS stays local"
    );
    assert_eq!(
        arg(&args, "--injected-xds-addr"),
        Some("rudder.rudder-system.svc:15012")
    );
    assert_eq!(
        arg(&args, "--proxy-init-image"),
        Some("ghcr.io/rudder-mesh/rudder:v0.1.0")
    );
    assert_eq!(
        arg(&args, "--token-public-key"),
        None,
        "TokenReview by default"
    );

    let mesh = find(&objects, "ConfigMap", "istio");
    assert_eq!(mesh["metadata"]["namespace"], NS);
    assert!(mesh["data"]["mesh"].is_string(), "{mesh}");

    // The webhook configurations of docs/operating.md, at the chart's Service.
    let inject = find(
        &objects,
        "MutatingWebhookConfiguration",
        "rudder-sidecar-injector",
    );
    let validate = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "rudder-validator",
    );
    let hooks: Vec<&Value> = [inject, validate]
        .iter()
        .flat_map(|c| c["webhooks"].as_array().unwrap())
        .collect();
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "namespace.sidecar-injector.rudder.io",
            "object.sidecar-injector.rudder.io",
            "validation.rudder.io"
        ]
    );
    for (hook, path) in hooks.iter().zip(["/inject", "/inject", "/validate"]) {
        assert_eq!(
            hook["clientConfig"],
            json!({"caBundle": ca_bundle, "service": {"name": "rudder", "namespace": NS, "path": path, "port": 443}})
        );
        assert_eq!(hook["failurePolicy"], "Fail");
    }

    // Least privilege: in the ClusterRole no Secrets, nothing written but configmaps,
    // tokenreviews, Rudder's own two webhook configurations (patch) and the
    // status subresource of the Istio kinds (never their spec).
    let role = find(&objects, "ClusterRole", "rudder");
    for rule in role["rules"].as_array().unwrap() {
        let resources = rule["resources"].as_array().unwrap();
        assert!(
            !resources.contains(&json!("secrets")) && !resources.contains(&json!("*")),
            "{rule}"
        );
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let writes = verbs.iter().any(|v| !["get", "list", "watch"].contains(v));
        if writes {
            let webhook_configs = resources
                == &[
                    json!("mutatingwebhookconfigurations"),
                    json!("validatingwebhookconfigurations"),
                ]
                && rule["resourceNames"] == json!(["rudder-sidecar-injector", "rudder-validator"])
                && verbs == ["get", "list", "watch", "patch"];
            let istio_status = resources
                .iter()
                .all(|r| r.as_str().unwrap().ends_with("/status"))
                && rule["apiGroups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|g| g.as_str().unwrap().ends_with(".istio.io"))
                && verbs == ["get", "patch"];
            assert!(
                resources == &[json!("configmaps")]
                    || resources == &[json!("tokenreviews")]
                    || webhook_configs
                    || istio_status,
                "writes outside configmaps/tokenreviews/Rudder's webhook configurations/Istio status: {rule}"
            );
        }
    }

    // Namespace-scoped rights through the Role: the leader Lease by name (and
    // creating it); the mesh ConfigMap followed by name; the CA Secret by
    // name, and creating one.
    let role = find(&objects, "Role", "rudder");
    assert_eq!(role["metadata"]["namespace"], NS);
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["rudder-leader"], "verbs": ["get", "patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["istio"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rudder-ca"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        ])
    );

    // The API server accepts every object.
    apply_all(&kube, &objects);
    let stored = kube.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/rudder-sidecar-injector");
    assert_eq!(
        stored["webhooks"][0]["clientConfig"]["service"]["port"],
        443
    );

    // The RBAC, as the API server's authorizer sees it: one
    // SubjectAccessReview per question, `attributes` being its
    // resourceAttributes.
    let sa = format!("system:serviceaccount:{NS}:rudder");
    let allowed = |attributes: Value| {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": sa, "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NS}")],
                     "resourceAttributes": attributes},
        });
        let answer = kube.create(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            &review,
        );
        answer["status"]["allowed"] == true
    };
    let can = |verb: &str, group: &str, resource: &str| {
        allowed(json!({"verb": verb, "group": group, "resource": resource}))
    };
    for (verb, group, resource) in [
        ("watch", "", "pods"),
        ("list", "discovery.k8s.io", "endpointslices"),
        ("watch", "networking.istio.io", "sidecars"),
        ("list", "security.istio.io", "authorizationpolicies"),
        ("create", "authentication.k8s.io", "tokenreviews"),
        ("patch", "", "configmaps"),
    ] {
        assert!(
            can(verb, group, resource),
            "{sa} cannot {verb} {group}/{resource}"
        );
    }
    for (verb, group, resource) in [
        ("get", "", "secrets"),
        ("delete", "", "pods"),
        ("update", "networking.istio.io", "virtualservices"),
        ("patch", "networking.istio.io", "virtualservices"),
        ("patch", "coordination.k8s.io", "leases"),
    ] {
        assert!(
            !can(verb, group, resource),
            "{sa} can {verb} {group}/{resource}"
        );
    }

    // Status, and only status, of the Istio kinds.
    for (group, resource) in [
        ("networking.istio.io", "virtualservices"),
        ("security.istio.io", "authorizationpolicies"),
    ] {
        let status = |verb: &str| {
            allowed(
                json!({"verb": verb, "group": group, "resource": resource, "subresource": "status", "namespace": "default"}),
            )
        };
        assert!(
            status("patch") && status("get"),
            "{sa} cannot patch {resource}/status"
        );
        assert!(!status("update"), "{sa} can update {resource}/status");
    }

    // The leader Lease, by name, in the release namespace only.
    let can_lease = |verb: &str, namespace: &str, name: &str| {
        allowed(
            json!({"verb": verb, "group": "coordination.k8s.io", "resource": "leases", "namespace": namespace, "name": name}),
        )
    };
    assert!(can_lease("get", NS, "rudder-leader") && can_lease("patch", NS, "rudder-leader"));
    assert!(can_lease("create", NS, ""));
    for (verb, namespace, name) in [
        ("patch", NS, "kube-controller-manager"),
        ("delete", NS, "rudder-leader"),
        ("patch", "kube-system", "rudder-leader"),
    ] {
        assert!(
            !can_lease(verb, namespace, name),
            "{sa} can {verb} lease {namespace}/{name}"
        );
    }

    // The CA Secret, by name, in the release namespace only.
    let can_secret = |verb: &str, namespace: &str, name: &str| {
        allowed(json!({"verb": verb, "resource": "secrets", "namespace": namespace, "name": name}))
    };
    assert!(can_secret("get", NS, "rudder-ca"));
    assert!(can_secret("create", NS, ""));
    for (verb, namespace, name) in [
        ("get", NS, "cacerts"),
        ("list", NS, ""),
        ("update", NS, "rudder-ca"),
        ("delete", NS, "rudder-ca"),
        ("get", "default", "rudder-ca"),
        ("create", "default", ""),
    ] {
        assert!(
            !can_secret(verb, namespace, name),
            "{sa} can {verb} secrets/{name} in {namespace}"
        );
    }

    // Rudder's own webhook configurations, by name, and no others.
    let can_on = |verb: &str, resource: &str, name: &str| {
        allowed(
            json!({"verb": verb, "group": "admissionregistration.k8s.io", "resource": resource, "name": name}),
        )
    };
    for (resource, name) in [
        ("mutatingwebhookconfigurations", "rudder-sidecar-injector"),
        ("validatingwebhookconfigurations", "rudder-validator"),
    ] {
        for verb in ["get", "watch", "patch"] {
            assert!(
                can_on(verb, resource, name),
                "{sa} cannot {verb} {resource}/{name}"
            );
        }
        assert!(
            !can_on("patch", resource, "istio-sidecar-injector"),
            "{sa} can patch {resource}/istio-sidecar-injector"
        );
    }

    // The Deployment's arguments run: `rudder serve` as the chart's
    // ServiceAccount (a TokenRequest), with only the addresses and paths
    // rewritten for this machine, becomes ready (every kind listed, the mesh
    // ConfigMap read).
    let token_request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}});
    let answer = kube.create(
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/rudder/token"),
        &token_request,
    );
    let token = answer["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let dir = workdir("helm-serve");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: rudder\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: rudder}}\n\
             current-context: c\n",
            kube.url,
            kube.ca_cert.display()
        ),
    )
    .unwrap();
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut run_args = Vec::new();
    for a in &args {
        let (flag, value) = a.split_once('=').unwrap_or((a, ""));
        let value = match flag {
            "--ca-dir" => dir.path().join("ca").display().to_string(),
            "--admin-addr" => admin.to_string(),
            "--xds-addr" | "--xds-tls-addr" | "--webhook-addr" => {
                format!("127.0.0.1:{}", free_port())
            }
            _ => value.to_string(),
        };
        run_args.push(if a.contains('=') {
            format!("{flag}={value}")
        } else {
            a.clone()
        });
    }
    run_args.push(format!("--kubeconfig={}", kubeconfig.display()));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", env!("CARGO_BIN_EXE_rudder")])
        .args(&run_args);
    let rudder = Proc::spawn("rudder-helm", cmd);
    let ready = format!("http://{admin}/ready");
    let ok = poll(Duration::from_secs(60), || {
        rudder.assert_running("starting with the chart's arguments");
        matches!(try_http_get(&ready, None), Ok((200, _))).then_some(())
    });
    assert!(
        ok.is_some(),
        "GET {ready} not 200 within 60s; args {run_args:?}{}",
        rudder.log_tail(40)
    );
    // ... with the chart's RBAC, keeps its CA in the Secret rudder-ca ...
    let secret = kube.get(&format!("/api/v1/namespaces/{NS}/secrets/rudder-ca"));
    let root = base64::engine::general_purpose::STANDARD
        .decode(
            secret["data"]["root-cert.pem"]
                .as_str()
                .expect("root-cert.pem"),
        )
        .unwrap();
    let root = String::from_utf8(root).unwrap();
    // ... and publishes its root into namespaces.
    let path = format!("/api/v1/namespaces/{NS}/configmaps/rudder-ca-root-cert");
    let published = poll(Duration::from_secs(30), || {
        match kube.request("GET", &path, None) {
            (200, cm) => Some(cm),
            _ => None,
        }
    });
    let published =
        published.unwrap_or_else(|| panic!("no {path} within 30s{}", rudder.log_tail(40)));
    assert_eq!(published["data"]["root-cert.pem"], root.as_str());
    // It wrote as the leader: the chart's Role let it take the Lease.
    let lease = kube.get(&format!(
        "/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/rudder-leader"
    ));
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(
        !holder.is_empty(),
        "the leader Lease has no holder: {lease}"
    );
    // ... and follows the mesh ConfigMap with the chart's RBAC: an invalid
    // edit shows up refused on /debug/configz.
    let mesh_cm = format!("/api/v1/namespaces/{NS}/configmaps/istio");
    let mut cm = kube.get(&mesh_cm);
    cm["data"]["mesh"] = json!("outboundTrafficPolicy: {mode: SOMETIMES}\n");
    kube.expect("PUT", &mesh_cm, Some(&cm), &[200]);
    let configz = format!("http://{admin}/debug/configz");
    let refused = poll(Duration::from_secs(30), || {
        let (_, body) = try_http_get(&configz, None).ok()?;
        body.contains(&format!("ConfigMap {NS}/istio"))
            .then_some(())
    });
    assert!(
        refused.is_some(),
        "the mesh ConfigMap edit never reached Rudder (RBAC for list/watch?){}",
        rudder.log_tail(30)
    );
}

/// The non-default shapes: plaintext xDS on, a `cacerts` Secret, two
/// replicas, a mesh config; they render as documented and the API server
/// accepts them.
#[test]
fn helm_chart_options_render_and_apply() {
    let kube = KubeApi::start();
    let key_set = format!("token.publicKey={}", kube.sa_public_key.display());
    let values = workdir("helm-values");
    let file = values.path().join("values.yaml");
    std::fs::write(
        &file,
        format!(
            "caBundle: {}\nreplicas: 2\nca: {{secretName: cacerts}}\nxds: {{plaintext: {{enabled: true}}}}\n\
             meshConfig: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}\nwebhooks: {{failurePolicy: Ignore}}\n\
             tlsSANs: [rudder.example.com]\n",
            b64(&kube.ca_pem)
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let objects = render(&["-f", &file, "--set-file", &key_set]);
    let key = find(&objects, "ConfigMap", "rudder-token-public-key");
    assert!(
        key["data"]["public-key.pem"]
            .as_str()
            .unwrap()
            .contains("PUBLIC KEY"),
        "{key}"
    );
    let svc = find(&objects, "Service", "rudder");
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"name": "grpc-xds", "port": 15010, "targetPort": "grpc-xds", "protocol": "TCP"})
    );
    let deploy = find(&objects, "Deployment", "rudder");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "cacerts");
    let args = container_args(deploy);
    assert_eq!(arg(&args, "--xds-addr"), Some("0.0.0.0:15010"));
    assert!(
        args.contains(&"--tls-san=rudder.example.com".to_string()),
        "{args:?}"
    );
    assert_eq!(
        arg(&args, "--token-public-key"),
        Some("/etc/rudder/token/public-key.pem")
    );
    assert_eq!(
        arg(&args, "--token-issuer"),
        Some(crate::support::kube::SA_ISSUER)
    );
    let mesh = find(&objects, "ConfigMap", "istio");
    let mesh: Value = serde_yaml::from_str(mesh["data"]["mesh"].as_str().unwrap()).unwrap();
    assert_eq!(
        mesh,
        json!({"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    );
    let inject = find(
        &objects,
        "MutatingWebhookConfiguration",
        "rudder-sidecar-injector",
    );
    assert_eq!(inject["webhooks"][1]["failurePolicy"], "Ignore");
    apply_all(&kube, &objects);
}
