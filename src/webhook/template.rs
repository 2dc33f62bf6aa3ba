//! What injection adds to a pod, in one place: the names, paths and images,
//! and the containers and volumes built from them. [`Template`] comes from
//! flags (`rudder serve`, `rudder inject`); [`PodSettings`] from the pod's
//! own annotations. Nothing else in the injector spells a container.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Runs `rudder iptables --apply`: the only step that needs privileges.
pub const INIT_CONTAINER: &str = "rudder-init";
/// Runs `rudder bootstrap`, unprivileged, into the bootstrap volume.
pub const BOOTSTRAP_CONTAINER: &str = "rudder-bootstrap";
/// Stock Envoy.
pub const PROXY_CONTAINER: &str = "rudder-proxy";

pub const TOKEN_VOLUME: &str = "rudder-token";
pub const ROOT_VOLUME: &str = "rudder-ca-root";
pub const BOOTSTRAP_VOLUME: &str = "rudder-bootstrap";

/// Marks a pod whose sidecar terminates mesh mTLS; auto mTLS reads it from
/// the endpoints' pods (`translate::mtls::TLS_MODE_LABEL`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The ConfigMap holding Rudder's root certificate, in every namespace
/// (Istio's `istio-ca-root-cert`).
pub const ROOT_CONFIGMAP: &str = "rudder-ca-root-cert";
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
pub const ROOT_DIR: &str = "/etc/rudder/root";
pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
pub const TOKEN_FILE: &str = "rudder-token";
/// Projected tokens live an hour; the kubelet refreshes them at 80 %, and
/// Envoy re-reads the file on every call.
pub const TOKEN_TTL_SECONDS: i64 = 3600;
pub const BOOTSTRAP_DIR: &str = "/etc/rudder/bootstrap";
pub const BOOTSTRAP_FILE: &str = "envoy.json";

/// The proxy's UID and GID; `rudder iptables` never captures its traffic.
pub const PROXY_UID: i64 = 1337;
/// Readiness, as `rudder bootstrap` configures it (Envoy's `/ready`).
pub const READINESS_PORT: i32 = 15021;
pub const READINESS_PATH: &str = "/healthz/ready";
pub const STATS_PORT: i32 = 15090;

/// Defaults for the flags that build a [`Template`].
pub const DEFAULT_PROXY_IMAGE: &str = "envoyproxy/envoy:v1.40.0";
pub const DEFAULT_INIT_IMAGE: &str =
    concat!("ghcr.io/rudder-mesh/rudder:v", env!("CARGO_PKG_VERSION"));
pub const DEFAULT_XDS_ADDR: &str = "rudder.rudder-system.svc:15012";

/// The mesh-wide part of injection, built from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Stock Envoy.
    pub proxy_image: String,
    /// An image whose entrypoint is `rudder` (for `iptables` and `bootstrap`).
    pub init_image: String,
    /// Rudder's TLS xDS address as proxies dial it.
    pub xds_addr: String,
    /// The `aud` of the projected token; one Rudder accepts.
    pub token_audience: String,
}

/// The per-pod part, from the pod's annotations (see `inject`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSettings {
    /// `rudder iptables` flags beyond `--apply`, in `--flag=value` form.
    pub capture_args: Vec<String>,
    /// `holdApplicationUntilProxyStarts`: the proxy runs as a native sidecar
    /// whose startup probe the kubelet waits for before starting the app.
    pub hold_application: bool,
    /// `sidecar.istio.io/proxyImage`.
    pub proxy_image: Option<String>,
    /// `sidecar.istio.io/proxy{CPU,Memory}{,Limit}`: resource name to quantity.
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

impl Template {
    /// Everything prepended to `spec.initContainers`, in order.
    pub fn init_containers(
        &self,
        pod: &PodSettings,
        labels: &BTreeMap<String, String>,
    ) -> Vec<Container> {
        let mut out = vec![
            self.iptables_container(pod),
            self.bootstrap_container(labels),
        ];
        if pod.hold_application {
            out.push(self.proxy_container(pod));
        }
        out
    }

    /// What is appended to `spec.containers` (nothing for a native sidecar).
    pub fn containers(&self, pod: &PodSettings) -> Vec<Container> {
        if pod.hold_application {
            Vec::new()
        } else {
            vec![self.proxy_container(pod)]
        }
    }

    fn iptables_container(&self, pod: &PodSettings) -> Container {
        let mut args = vec!["iptables".to_string(), "--apply".to_string()];
        args.extend(pod.capture_args.iter().cloned());
        Container {
            name: INIT_CONTAINER.into(),
            image: Some(self.init_image.clone()),
            args: Some(args),
            // iptables-restore needs NET_ADMIN and NET_RAW in the pod's
            // network namespace, and root to use them; nothing more. The
            // root filesystem stays writable for its /run/xtables.lock
            // (as Istio's istio-init).
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                run_as_group: Some(0),
                run_as_non_root: Some(false),
                privileged: Some(false),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(false),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `$(VAR)` in args is expanded by the kubelet from the container's env,
    /// so the node id carries the pod's real IP and name (unknown at
    /// admission time for generated names).
    fn bootstrap_container(&self, labels: &BTreeMap<String, String>) -> Container {
        let mut args: Vec<String> = [
            "bootstrap",
            "--node-id",
            "sidecar~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local",
            "--meta",
            "SERVICE_ACCOUNT=$(SERVICE_ACCOUNT)",
            "--xds-addr",
            &self.xds_addr,
            "--xds-root-cert",
            &format!("{ROOT_DIR}/{ROOT_CERT_KEY}"),
            "--token-file",
            &format!("{TOKEN_DIR}/{TOKEN_FILE}"),
            "--output",
            &format!("{BOOTSTRAP_DIR}/{BOOTSTRAP_FILE}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Label keys and values cannot hold '$', so none is expanded.
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        Container {
            name: BOOTSTRAP_CONTAINER.into(),
            image: Some(self.init_image.clone()),
            args: Some(args),
            env: Some(vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
                field_env("POD_IP", "status.podIP"),
                field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            ]),
            security_context: Some(unprivileged()),
            volume_mounts: Some(vec![mount(BOOTSTRAP_VOLUME, BOOTSTRAP_DIR, false)]),
            ..Default::default()
        }
    }

    fn proxy_container(&self, pod: &PodSettings) -> Container {
        let ready = Probe {
            http_get: Some(HTTPGetAction {
                path: Some(READINESS_PATH.into()),
                port: IntOrString::Int(READINESS_PORT),
                ..Default::default()
            }),
            initial_delay_seconds: Some(1),
            period_seconds: Some(2),
            timeout_seconds: Some(3),
            failure_threshold: Some(30),
            ..Default::default()
        };
        // A native sidecar: the kubelet starts the app only once this passes.
        let startup = pod.hold_application.then(|| Probe {
            initial_delay_seconds: None,
            period_seconds: Some(1),
            failure_threshold: Some(600),
            ..ready.clone()
        });
        let quantities = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect::<BTreeMap<_, _>>()
        };
        let some = |m: BTreeMap<String, Quantity>| (!m.is_empty()).then_some(m);
        Container {
            name: PROXY_CONTAINER.into(),
            image: Some(pod.proxy_image.clone().unwrap_or(self.proxy_image.clone())),
            // Hot restart is for a supervisor Envoy does not have here; off,
            // it also cannot clash with another Envoy in the pod (base id 0).
            args: Some(
                [
                    "-c",
                    &format!("{BOOTSTRAP_DIR}/{BOOTSTRAP_FILE}"),
                    "--disable-hot-restart",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ),
            ports: Some(vec![ContainerPort {
                name: Some("http-envoy-prom".into()),
                container_port: STATS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            readiness_probe: Some(ready),
            startup_probe: startup,
            restart_policy: pod.hold_application.then(|| "Always".to_string()),
            resources: Some(ResourceRequirements {
                requests: some(quantities(&pod.requests)),
                limits: some(quantities(&pod.limits)),
                ..Default::default()
            }),
            security_context: Some(unprivileged()),
            volume_mounts: Some(vec![
                mount(BOOTSTRAP_VOLUME, BOOTSTRAP_DIR, true),
                mount(TOKEN_VOLUME, TOKEN_DIR, true),
                mount(ROOT_VOLUME, ROOT_DIR, true),
            ]),
            ..Default::default()
        }
    }

    /// The token Envoy authenticates with, Rudder's root, and the bootstrap.
    pub fn volumes(&self) -> Vec<Volume> {
        vec![
            Volume {
                name: TOKEN_VOLUME.into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(self.token_audience.clone()),
                            expiration_seconds: Some(TOKEN_TTL_SECONDS),
                            path: TOKEN_FILE.into(),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: ROOT_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: ROOT_CONFIGMAP.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: BOOTSTRAP_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]
    }
}

/// Istio's default sidecar requests, so quotas and the scheduler see the proxy.
pub fn default_requests() -> BTreeMap<String, String> {
    [("cpu", "100m"), ("memory", "128Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unprivileged() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(PROXY_UID),
        run_as_group: Some(PROXY_UID),
        run_as_non_root: Some(true),
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}
