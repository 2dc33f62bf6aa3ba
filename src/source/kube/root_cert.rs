//! The mesh root in every namespace: ConfigMap `rudder-ca-root-cert`, key
//! `root-cert.pem`, like Istio's `istio-ca-root-cert`. Sidecars mount it to
//! trust the TLS xDS port (design.md, "Identity with stock Envoy").
//!
//! Namespaces are watched, so a new one gets the ConfigMap as soon as it
//! appears; terminating ones are skipped (the API server refuses writes
//! there). Each write is a server-side apply with field manager `rudder`: it
//! creates the ConfigMap when missing, corrects it when different, and is a
//! no-op otherwise. RBAC: get/list/watch on namespaces; get/create/patch on
//! configmaps.
//!
//! Leader-only ([`super::Leadership`]). The ConfigMaps themselves are not
//! watched, so one deleted by hand comes back on the namespace's next event,
//! the next change of leader, or Rudder's next start.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;

pub const ROOT_CERT_CONFIG_MAP: &str = "rudder-ca-root-cert";
pub const ROOT_CERT_KEY: &str = "root-cert.pem";

/// Keeps `bundle` published in every namespace; runs until aborted. Failures
/// are logged and retried on the next event (watch errors with backoff).
pub async fn publish_root_cert(client: kube::Client, bundle: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut events = super::watch::watch(namespaces, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let ns = match event {
            Ok(ns) => ns,
            Err(e) => {
                tracing::warn!("watching namespaces for {ROOT_CERT_CONFIG_MAP}: {e}; retrying");
                continue;
            }
        };
        let Some(name) = publish_target(&ns) else {
            continue;
        };
        if let Err(e) = apply(&client, name, &bundle).await {
            tracing::error!(namespace = name, "writing ConfigMap {ROOT_CERT_CONFIG_MAP}: {e} (Rudder needs get, create and patch on configmaps)");
        } else {
            tracing::debug!(namespace = name, "{ROOT_CERT_CONFIG_MAP} up to date");
        }
    }
}

/// The namespace's name, unless it is going away.
fn publish_target(ns: &Namespace) -> Option<&str> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return None;
    }
    ns.metadata.name.as_deref()
}

async fn apply(client: &kube::Client, namespace: &str, bundle: &str) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(super::FIELD_MANAGER).force();
    let body = root_cert_config_map(namespace, bundle);
    api.patch(ROOT_CERT_CONFIG_MAP, &params, &Patch::Apply(&body))
        .await
        .map(drop)
}

/// The applied configuration: only the fields Rudder owns.
fn root_cert_config_map(namespace: &str, bundle: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CERT_CONFIG_MAP,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "rudder"},
        },
        "data": {ROOT_CERT_KEY: bundle},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ns(name: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ns
    }

    #[test]
    fn terminating_namespaces_are_skipped() {
        assert_eq!(publish_target(&ns("demo")), Some("demo"));
        let mut going = ns("old");
        going.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert_eq!(publish_target(&going), None);
        let mut deleted = ns("old");
        deleted.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(publish_target(&deleted), None);
    }

    #[test]
    fn the_config_map_holds_the_bundle() {
        let cm: ConfigMap = serde_json::from_value(root_cert_config_map("demo", "PEM")).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some(ROOT_CERT_CONFIG_MAP));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("demo"));
        assert_eq!(cm.data.unwrap()[ROOT_CERT_KEY], "PEM");
    }
}
