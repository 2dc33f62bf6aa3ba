//! A watched object becomes a source unit and its item.
//!
//! Watches deliver `DynamicObject`s (untyped JSON), which go through the same
//! `api::parse` as a document read from a file. One code path means a
//! VirtualService applied with kubectl is judged exactly like the same YAML in
//! `--config-dir`, errors and all. It also keeps one malformed object from
//! breaking its whole kind: a typed watch fails the entire list when a single
//! item does not deserialize, and would retry that list forever, while here
//! the object becomes an `Item::Invalid` the index reports, next to its
//! still-served last good version.

use kube::core::DynamicObject;

use super::kinds::WatchedKind;
use crate::api::{self, DocumentError, FieldError, Kind};
use crate::source::Item;

/// The unit an object is reported under: one per object, so an `Apply` is a
/// `Replace` with one item and a `Delete` is a `Replace` with none.
pub fn unit(kind: Kind, object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    match object.metadata.namespace.as_deref() {
        Some(ns) if kind.namespaced() => format!("kube:{}/{ns}/{name}", kind.name()),
        _ => format!("kube:{}/{name}", kind.name()),
    }
}

/// The object as the index's item.
pub fn items(kind: &WatchedKind, object: DynamicObject) -> Vec<Item> {
    Item::from_parsed(0, document(kind, object).and_then(api::parse))
        .into_iter()
        .collect()
}

/// The object as the YAML document a file would hold.
fn document(kind: &WatchedKind, object: DynamicObject) -> Result<serde_yaml::Value, DocumentError> {
    let unreadable = |e: &dyn std::fmt::Display| DocumentError {
        object: None,
        error: FieldError::new("", format!("cannot read the object: {e}")),
    };
    let mut value = serde_json::to_value(object).map_err(|e| unreadable(&e))?;
    if let Some(map) = value.as_object_mut() {
        // Items of a list carry no apiVersion or kind; the watch says what they are.
        map.insert(
            "apiVersion".into(),
            kind.resource.api_version.clone().into(),
        );
        map.insert("kind".into(), kind.resource.kind.clone().into());
        // Server-side-apply bookkeeping: large, and never read by Rudder.
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
        }
        // Of a Node Rudder reads only its labels; its status (images,
        // conditions, heartbeats) is large and changes every few seconds.
        if kind.kind == Kind::Node {
            map.remove("status");
            map.remove("spec");
        }
    }
    serde_yaml::to_value(value).map_err(|e| unreadable(&e))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::Object;
    use crate::source::kube::kinds;
    use serde_json::json;

    pub(crate) fn watched(kind: Kind) -> WatchedKind {
        kinds::all().into_iter().find(|w| w.kind == kind).unwrap()
    }

    /// An object as a list returns it: no apiVersion or kind.
    pub(crate) fn listed(
        kind: Kind,
        ns: &str,
        name: &str,
        data: serde_json::Value,
    ) -> DynamicObject {
        let mut obj = DynamicObject::new(name, &watched(kind).resource).data(data);
        obj.types = None;
        if kind.namespaced() {
            obj = obj.within(ns);
        }
        obj
    }

    #[test]
    fn units_name_kind_namespace_and_name() {
        let svc = listed(Kind::Service, "shop", "web", json!({}));
        assert_eq!(unit(Kind::Service, &svc), "kube:Service/shop/web");
        let ns = listed(Kind::Namespace, "", "shop", json!({}));
        assert_eq!(unit(Kind::Namespace, &ns), "kube:Namespace/shop");
    }

    #[test]
    fn a_listed_service_becomes_the_same_object_as_its_yaml() {
        let mut obj = listed(
            Kind::Service,
            "shop",
            "web",
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        );
        obj.metadata.resource_version = Some("42".into());
        obj.metadata.managed_fields = Some(vec![Default::default()]);
        let items = items(&watched(Kind::Service), obj);
        let [Item::Object { key, object, .. }] = items.as_slice() else {
            panic!("expected one object, got {items:?}")
        };
        assert_eq!(key.to_ref().to_string(), "Service shop/web");
        let Object::Service(svc) = object.as_ref() else {
            panic!("expected a Service")
        };
        assert_eq!(svc.metadata.managed_fields, None, "dropped");
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, resourceVersion: '42'}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";
        let from_file = crate::source::file::parse_text(yaml);
        let [Item::Object {
            object: file_object,
            ..
        }] = from_file.as_slice()
        else {
            panic!("expected one object")
        };
        assert_eq!(object, file_object);
    }

    #[test]
    fn an_istio_object_parses_with_its_status_ignored() {
        let obj = listed(
            Kind::VirtualService,
            "shop",
            "web",
            json!({
                "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]},
                "status": {"observedGeneration": 1}
            }),
        );
        let items = items(&watched(Kind::VirtualService), obj);
        assert!(
            matches!(items.as_slice(), [Item::Object { object, .. }] if matches!(object.as_ref(), Object::VirtualService(_))),
            "{items:?}"
        );
    }

    #[test]
    fn a_malformed_object_is_invalid_with_the_same_error_as_from_a_file() {
        let obj = listed(
            Kind::Service,
            "shop",
            "web",
            json!({"spec": {"ports": [{"port": "eighty"}]}}),
        );
        let items = items(&watched(Kind::Service), obj);
        let [Item::Invalid { error, .. }] = items.as_slice() else {
            panic!("expected an invalid item, got {items:?}")
        };
        assert_eq!(
            error.object.as_ref().unwrap().to_string(),
            "Service shop/web"
        );
        assert_eq!(error.error.field, "spec.ports[0].port");
    }
}
