//! Istio's MeshConfig from its ConfigMap (`istio-system/istio`, key `mesh`):
//! read at start-up ([`read`]: the CA needs the trust domain before anything
//! runs, and a bad one stops start-up), then followed ([`follow`]): each
//! valid edit reaches the index as [`SourceEvent::Mesh`] and every proxy is
//! recomputed, as istiod's mesh watcher does. An invalid edit is refused
//! like any document, listed on `/debug/configz` under
//! `kube:ConfigMap/NAMESPACE/NAME`, and the last good config stays. A deleted
//! ConfigMap means Istio's defaults, as in Istio.

use std::fmt;
use std::str::FromStr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use tokio::sync::mpsc;

use super::KubeSourceError;
use crate::api::{DocumentError, FieldError};
use crate::model::{MeshConfig, ObjectRef};
use crate::source::{Item, SourceEvent};

/// Where the mesh config lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfigMap {
    pub namespace: String,
    pub name: String,
    /// The data key holding MeshConfig YAML.
    pub key: String,
}

impl Default for MeshConfigMap {
    fn default() -> Self {
        MeshConfigMap {
            namespace: "istio-system".into(),
            name: "istio".into(),
            key: "mesh".into(),
        }
    }
}

impl fmt::Display for MeshConfigMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} key {}", self.namespace, self.name, self.key)
    }
}

/// `NAMESPACE/NAME`, for the command line; the key is Istio's `mesh`.
impl FromStr for MeshConfigMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(MeshConfigMap {
                    namespace: ns.into(),
                    name: name.into(),
                    ..MeshConfigMap::default()
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// The mesh config the ConfigMap holds; Istio's defaults when the ConfigMap
/// or its key does not exist.
pub async fn read(client: kube::Client, at: &MeshConfigMap) -> Result<MeshConfig, KubeSourceError> {
    let api: Api<ConfigMap> = Api::namespaced(client, &at.namespace);
    let map = api
        .get_opt(&at.name)
        .await
        .map_err(|e| KubeSourceError::ReadMeshConfig(at.clone(), Box::new(e)))?;
    match map.and_then(|m| m.data).and_then(|mut d| d.remove(&at.key)) {
        Some(text) => parse(at, &text),
        None => {
            tracing::info!(configmap = %at, "no mesh config in the cluster; using the defaults");
            Ok(MeshConfig::default())
        }
    }
}

fn parse(at: &MeshConfigMap, text: &str) -> Result<MeshConfig, KubeSourceError> {
    crate::api::parse_mesh_config(text).map_err(|e| KubeSourceError::MeshConfig(at.clone(), e))
}

/// Follows the ConfigMap until the index goes away, sending each valid
/// change. Watch failures are logged and retried with backoff.
pub async fn follow(client: kube::Client, at: MeshConfigMap, events: mpsc::Sender<SourceEvent>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &at.namespace);
    let selector = watcher::Config::default().fields(&format!("metadata.name={}", at.name));
    let mut stream = super::watch::watch(api, selector).boxed();
    // Whether the current (re)list found the ConfigMap.
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let text = match event {
            Ok(Event::Init) => {
                listed = false;
                continue;
            }
            Ok(Event::InitApply(map)) | Ok(Event::Apply(map)) => {
                listed = true;
                map.data.and_then(|mut d| d.remove(&at.key))
            }
            Ok(Event::InitDone) if listed => continue,
            Ok(Event::InitDone) | Ok(Event::Delete(_)) => None,
            Err(e) => {
                tracing::warn!(configmap = %at, "watching the mesh config: {e}; retrying");
                continue;
            }
        };
        for event in judge(&at, text.as_deref()) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// What the index is told about the ConfigMap's current text (`None`: gone,
/// or no such key): the config, and the unit that carries its refusal, if
/// any (an empty unit clears an earlier one).
fn judge(at: &MeshConfigMap, text: Option<&str>) -> Vec<SourceEvent> {
    let unit = format!("kube:ConfigMap/{}/{}", at.namespace, at.name);
    let parsed = match text {
        Some(text) => crate::api::parse_mesh_config(text),
        None => {
            tracing::warn!(configmap = %at, "no mesh config in the cluster; using Istio's defaults");
            Ok(MeshConfig::default())
        }
    };
    match parsed {
        Ok(mesh) => vec![
            SourceEvent::Replace {
                unit,
                items: Vec::new(),
            },
            SourceEvent::Mesh(mesh),
        ],
        Err(e) => {
            // The ConfigMap's field, then the MeshConfig field within its YAML.
            let field = format!("data.{}", at.key);
            let reason = match e.field.as_str() {
                "" => e.reason,
                inner => format!("{inner}: {}", e.reason),
            };
            tracing::error!(configmap = %at, "mesh config refused, the last good one stays: {field}: {reason}");
            let error = DocumentError {
                object: Some(ObjectRef {
                    kind: "ConfigMap".into(),
                    namespace: at.namespace.clone(),
                    name: at.name.clone(),
                }),
                error: FieldError::new(field, reason),
            };
            vec![SourceEvent::Replace {
                unit,
                items: vec![Item::Invalid { document: 0, error }],
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_from_the_command_line() {
        let at: MeshConfigMap = "mesh/cfg".parse().unwrap();
        assert_eq!(at.to_string(), "mesh/cfg key mesh");
        for bad in ["istio", "/istio", "ns/", "a/b/c"] {
            assert!(bad.parse::<MeshConfigMap>().is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_configmap_and_field() {
        let at = MeshConfigMap::default();
        let err = parse(&at, "outboundTrafficPolicy: {mode: SOMETIMES}").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "mesh config in ConfigMap istio-system/istio key mesh: outboundTrafficPolicy.mode"
            ),
            "{err}"
        );
        assert_eq!(parse(&at, "").unwrap(), MeshConfig::default());
    }

    #[test]
    fn a_valid_edit_clears_the_refusal_and_an_invalid_one_keeps_the_config() {
        let at = MeshConfigMap::default();
        let events = judge(&at, Some("outboundTrafficPolicy: {mode: REGISTRY_ONLY}"));
        match events.as_slice() {
            [SourceEvent::Replace { unit, items }, SourceEvent::Mesh(mesh)] => {
                assert_eq!(unit, "kube:ConfigMap/istio-system/istio");
                assert!(items.is_empty());
                assert_ne!(*mesh, MeshConfig::default());
            }
            other => panic!("{other:?}"),
        }
        let events = judge(&at, Some("outboundTrafficPolicy: {mode: SOMETIMES}"));
        match events.as_slice() {
            [SourceEvent::Replace { items, .. }] => match items.as_slice() {
                [Item::Invalid { error, .. }] => {
                    assert_eq!(error.error.field, "data.mesh");
                    assert!(
                        error
                            .error
                            .reason
                            .starts_with("outboundTrafficPolicy.mode: "),
                        "{}",
                        error.error.reason
                    );
                    assert_eq!(error.object.as_ref().unwrap().kind, "ConfigMap");
                }
                other => panic!("{other:?}"),
            },
            other => panic!("no Mesh event for an invalid config: {other:?}"),
        }
        // Gone: Istio's defaults.
        match judge(&at, None).as_slice() {
            [_, SourceEvent::Mesh(mesh)] => assert_eq!(*mesh, MeshConfig::default()),
            other => panic!("{other:?}"),
        }
    }
}
