//! Istio's `networking.istio.io` kinds, field for field, as Kubernetes custom
//! resources: the Rust types generate the CRDs (see [`all`]) and each kind has
//! one pure `validate` that mirrors istiod's validation webhook.

pub mod common;
pub mod destination_rule;
pub mod selector;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use destination_rule::{DestinationRule, DestinationRuleSpec};
pub use selector::{IstioStatus, MatchLabelsSelector, WorkloadSelector};
pub use service_entry::{ServiceEntry, ServiceEntrySpec};
pub use sidecar::{Sidecar, SidecarSpec};
pub use virtual_service::{VirtualService, VirtualServiceSpec};
pub use workload_entry::{WorkloadEntry, WorkloadEntrySpec};

/// The API group of every kind in this module.
pub const GROUP: &str = "networking.istio.io";

/// Versions Istio serves besides `v1`, with the same schema. Istio kept
/// `v1alpha3` and `v1beta1` when it promoted the API, so users' older YAML
/// (and tools that still write it) keeps applying unchanged.
pub const ALIAS_VERSIONS: [&str; 2] = ["v1alpha3", "v1beta1"];

/// The CRD of every Istio networking kind Rudder serves, as Istio installs
/// them: `v1` is the storage version and `v1alpha3`/`v1beta1` are served with
/// the same schema.
pub fn all() -> Vec<CustomResourceDefinition> {
    [
        DestinationRule::crd(),
        ServiceEntry::crd(),
        Sidecar::crd(),
        VirtualService::crd(),
        WorkloadEntry::crd(),
    ]
    .into_iter()
    .map(|crd| as_istio_installs_it(crd, &ALIAS_VERSIONS))
    .collect()
}

/// Post-processes a derived CRD into the shape Istio installs: without kube's
/// `nullable` marks, and with Istio's older `aliases` served alongside `v1`.
/// Shared with the other Istio API groups (`security.istio.io`).
pub(crate) fn as_istio_installs_it(
    mut crd: CustomResourceDefinition,
    aliases: &[&str],
) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            drop_nullable(schema);
        }
    }
    let Some(v1) = crd.spec.versions.first().cloned() else {
        return crd;
    };
    for name in aliases {
        let mut alias = v1.clone();
        alias.name = name.to_string();
        alias.served = true;
        alias.storage = false;
        crd.spec.versions.push(alias);
    }
    crd
}

/// kube marks every `Option` field `nullable`; Istio's CRDs mark only protobuf
/// wrapper fields. The API server prunes `null` from non-nullable fields, and
/// Rudder reads an absent field and a `null` one alike, so the marks only add
/// size: they are dropped.
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().filter_map(|i| match i {
            JSONSchemaPropsOrArray::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(_) => None,
        }))
        .chain(
            schema
                .additional_properties
                .iter_mut()
                .filter_map(|a| match a {
                    JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
                    JSONSchemaPropsOrBool::Bool(_) => None,
                }),
        );
    for child in children {
        drop_nullable(child);
    }
}

/// Helpers shared by the per-kind tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::GROUP;
    use serde_json::Value;
    use std::path::PathBuf;

    /// Every document of every `src/api/<module>/testdata/<kind>/*.yaml`
    /// fixture, with its file name (`module` is e.g. `security`).
    pub fn fixtures_in(module: &str, kind: &str) -> Vec<(String, serde_yaml::Value)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/api")
            .join(module)
            .join("testdata")
            .join(kind);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures in {}", dir.display());
        let mut docs = Vec::new();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            for doc in crate::api::split_documents(&text) {
                let doc = doc.unwrap_or_else(|e| panic!("{name}: {e}"));
                if !doc.is_null() {
                    docs.push((name.clone(), doc));
                }
            }
        }
        docs
    }

    /// Every fixture of `kind` parses as `K`, passes `validate`, and survives a
    /// round trip with its spec unchanged (which also proves every field name
    /// in it is one we know: an unknown one would be dropped on the way).
    pub fn assert_fixtures_round_trip<K>(
        kind: &str,
        at_least: usize,
        validate: impl Fn(&K) -> Result<(), crate::api::FieldError>,
    ) where
        K: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        assert_module_fixtures_round_trip("networking", GROUP, kind, at_least, validate);
    }

    /// [`assert_fixtures_round_trip`] for the fixtures of another API module
    /// (`src/api/<module>/testdata/<kind>`), whose kinds are stored as `<group>/v1`.
    pub fn assert_module_fixtures_round_trip<K>(
        module: &str,
        group: &str,
        kind: &str,
        at_least: usize,
        validate: impl Fn(&K) -> Result<(), crate::api::FieldError>,
    ) where
        K: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let docs = fixtures_in(module, kind);
        assert!(docs.len() >= at_least, "only {} fixtures", docs.len());
        for (file, doc) in docs {
            let name = format!("{file}/{}", doc["metadata"]["name"].as_str().unwrap_or("?"));
            let object: K =
                serde_yaml::from_value(doc.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            validate(&object).unwrap_or_else(|e| panic!("{name}: {e}"));
            let back = serde_yaml::to_value(&object).unwrap();
            pretty_assertions::assert_eq!(
                serde_yaml::from_value::<K>(back.clone()).unwrap(),
                object,
                "{name}"
            );
            pretty_assertions::assert_eq!(
                back["spec"],
                doc["spec"],
                "{name}: spec changed in a round trip"
            );
            assert_eq!(back["apiVersion"], format!("{group}/v1").as_str(), "{name}");
        }
    }

    /// Each (document, field, reason) is refused naming exactly that field,
    /// with a reason containing that text.
    pub fn assert_rejected<D: AsRef<str>>(
        cases: &[(D, &str, &str)],
        validate: impl Fn(&str) -> Result<(), crate::api::FieldError>,
    ) {
        for (yaml, field, reason) in cases {
            let yaml = yaml.as_ref();
            let err = validate(yaml).expect_err(yaml);
            pretty_assertions::assert_eq!((err.field.as_str(), yaml), (*field, yaml), "{err}");
            assert!(
                err.reason.contains(reason),
                "{yaml}: {err} (want {reason:?})"
            );
        }
    }

    /// Asserts the Kubernetes structural-schema rules we rely on: no `$ref`,
    /// every node typed (or explicitly open), and a description on every
    /// property below `spec` (they are `kubectl explain` text).
    pub fn assert_structural(
        crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let root = &schema["openAPIV3Schema"];
        assert_eq!(root["type"], "object");
        walk(root, "", false);
        assert!(root["properties"]["spec"].is_object(), "no spec schema");
        walk(&root["properties"]["spec"], "spec", true);
    }

    fn walk(node: &Value, path: &str, described: bool) {
        let obj = node
            .as_object()
            .unwrap_or_else(|| panic!("{path}: schema is not an object"));
        assert!(!obj.contains_key("$ref"), "{path}: $ref is not structural");
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = obj.get(key) {
                // Structural schemas only allow value validations inside these.
                for b in branches.as_array().unwrap() {
                    assert!(
                        b.get("type").is_none() && b.get("properties").is_none(),
                        "{path}: typed {key} branch"
                    );
                }
            }
        }
        let open = obj.contains_key("x-kubernetes-preserve-unknown-fields")
            || obj.contains_key("x-kubernetes-int-or-string");
        assert!(
            obj.contains_key("type") || open,
            "{path}: untyped schema node {node}"
        );
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                if described {
                    assert!(
                        prop.get("description")
                            .is_some_and(|d| !d.as_str().unwrap().is_empty()),
                        "{p}: no description"
                    );
                }
                walk(prop, &p, described);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), described);
        }
        if let Some(values) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            walk(values, &format!("{path}{{}}"), described);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_serves_istio_versions_with_one_storage_version() {
        for crd in all() {
            let names: Vec<&str> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(
                names,
                ["v1", "v1alpha3", "v1beta1"],
                "{:?}",
                crd.metadata.name
            );
            assert!(crd.spec.versions.iter().all(|v| v.served));
            let stored: Vec<&str> = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.storage)
                .map(|v| v.name.as_str())
                .collect();
            assert_eq!(stored, ["v1"]);
            let schemas: Vec<_> = crd.spec.versions.iter().map(|v| v.schema.clone()).collect();
            assert!(
                schemas.windows(2).all(|w| w[0] == w[1]),
                "versions must share one schema"
            );
            assert_eq!(crd.spec.group, GROUP);
        }
    }
}
