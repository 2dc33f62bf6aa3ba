//! The `caBundle` of the webhook configurations Rudder serves: with `--kube`
//! and a CA, every webhook entry of the mutating configuration
//! (`--mutating-webhook-config`, default `rudder-sidecar-injector`) and the
//! validating one (`--validating-webhook-config`, default `rudder-validator`)
//! gets base64 of the CA trust bundle, so the API server trusts the webhooks'
//! serving certificate without anyone copying the root by hand.
//!
//! One watch per configuration, on its name (a `metadata.name` field
//! selector): a configuration created or edited after Rudder starts (a Helm
//! upgrade resetting `caBundle`, say) is patched as soon as the event
//! arrives. Each write is a server-side apply with field manager `rudder`
//! that owns only `webhooks[*].clientConfig.caBundle`, and only when some
//! entry differs. A configuration that does not exist is not an error
//! (logged at debug): nothing happens until it appears. Watch failures
//! (RBAC, say) are logged and retried with backoff. RBAC: get/list/watch/
//! patch on mutatingwebhookconfigurations and validatingwebhookconfigurations.
//!
//! Leader-only ([`super::Leadership`]). Replicas must share one root (a CA
//! Secret, or the same --ca-dir files): the API server calls any replica
//! behind the Service, and trusts only the root the leader wrote.

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;

/// The two configurations whose `caBundle` Rudder keeps.
#[derive(Debug, Clone)]
pub struct WebhookConfigNames {
    pub mutating: String,
    pub validating: String,
}

/// Keeps both configurations' `caBundle` equal to base64 of `bundle` (PEM);
/// runs until aborted.
pub async fn patch_webhook_ca_bundles(
    client: kube::Client,
    names: WebhookConfigNames,
    bundle: String,
) {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(bundle.as_bytes());
    let mutating = keep::<MutatingWebhookConfiguration>(
        Api::all(client.clone()),
        names.mutating,
        ca_bundle.clone(),
    );
    let validating =
        keep::<ValidatingWebhookConfiguration>(Api::all(client), names.validating, ca_bundle);
    futures::future::join(mutating, validating).await;
}

async fn keep<K>(api: Api<K>, name: String, ca_bundle: String)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&());
    tracing::debug!(%kind, %name, "watching for the webhook configuration to keep its caBundle");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = super::watch::watch(api.clone(), config)
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!(%kind, %name, "watching the webhook configuration: {e}; retrying (Rudder needs get, list, watch and patch on it)");
                continue;
            }
        };
        let value = match serde_json::to_value(&object) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(%kind, %name, "reading the webhook configuration: {e}");
                continue;
            }
        };
        let Some(body) = ca_bundle_patch(&value, &ca_bundle) else {
            tracing::debug!(%kind, %name, "webhook caBundle up to date");
            continue;
        };
        let params = PatchParams::apply(super::FIELD_MANAGER).force();
        match api.patch(&name, &params, &Patch::Apply(&body)).await {
            Ok(_) => tracing::info!(%kind, %name, "set the webhooks' caBundle to the mesh root"),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::debug!(%kind, %name, "webhook configuration gone before its caBundle was set")
            }
            Err(e) => {
                tracing::error!(%kind, %name, "patching the webhooks' caBundle: {e} (Rudder needs patch on it); retried on its next change")
            }
        }
    }
}

/// The applied configuration setting every entry's `caBundle`, or `None`
/// when all already carry it (or there are no entries).
fn ca_bundle_patch(object: &serde_json::Value, ca_bundle: &str) -> Option<serde_json::Value> {
    let hooks = object["webhooks"].as_array()?;
    if hooks
        .iter()
        .all(|h| h["clientConfig"]["caBundle"].as_str() == Some(ca_bundle))
    {
        return None;
    }
    let entries: Vec<serde_json::Value> = hooks
        .iter()
        .filter_map(|h| h["name"].as_str())
        .map(|name| serde_json::json!({"name": name, "clientConfig": {"caBundle": ca_bundle}}))
        .collect();
    Some(serde_json::json!({
        "apiVersion": object["apiVersion"].as_str().unwrap_or("admissionregistration.k8s.io/v1"),
        "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"]},
        "webhooks": entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_stale_bundles_are_patched_and_only_the_bundle() {
        let object = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "rudder-validator", "resourceVersion": "7"},
            "webhooks": [
                {"name": "a.rudder.io", "clientConfig": {"url": "https://x/validate"}, "sideEffects": "None"},
                {"name": "b.rudder.io", "clientConfig": {"url": "https://x/validate", "caBundle": "QUJD"}},
            ],
        });
        let patch = ca_bundle_patch(&object, "QUJD").expect("a is stale");
        assert_eq!(
            patch,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "rudder-validator"},
                "webhooks": [
                    {"name": "a.rudder.io", "clientConfig": {"caBundle": "QUJD"}},
                    {"name": "b.rudder.io", "clientConfig": {"caBundle": "QUJD"}},
                ],
            })
        );
        let mut fresh = object.clone();
        fresh["webhooks"][0]["clientConfig"]["caBundle"] = json!("QUJD");
        assert_eq!(ca_bundle_patch(&fresh, "QUJD"), None);
        assert_eq!(ca_bundle_patch(&json!({"webhooks": null}), "QUJD"), None);
    }
}
