//! Status on Istio objects the index refused, so `kubectl get -o yaml` says
//! why an object is not in effect. Such objects normally never get stored:
//! the validating webhook refuses them. They reach the store when the
//! webhook is down or bypassed (`failurePolicy: Ignore`, objects created
//! before Rudder); the index then keeps serving the object's last valid
//! version, or nothing, and this writer explains it on the object.
//!
//! What is written, merged into whatever status other controllers keep:
//! - a condition `type: Accepted, status: "False", reason: Invalid` whose
//!   message names the field and the reason;
//! - Istio's analysis message IST0106 (SchemaValidationError) in
//!   `validationMessages`, for tools that read Istio's status;
//! - `observedGeneration`.
//!
//! When the object becomes valid, or Rudder stops rejecting it, both entries
//! are removed again. Objects that were always valid are never written, so a
//! large mesh costs no status traffic. Leader-only: on winning the lease the
//! writer lists every Istio kind to find the entries a previous leader left,
//! then follows the index's snapshots. Writes carry the object's
//! resourceVersion, so a concurrent writer's change is never overwritten; a
//! conflict is retried on the next snapshot. RBAC: get, list and patch on
//! the kinds' `status` subresource (list on the kinds themselves).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::kinds::{self, WatchedKind};
use crate::model::{ConfigStatus, ObjectRef, Snapshot};

const CONDITION: &str = "Accepted";
const REASON: &str = "Invalid";
const IST0106: &str = "IST0106";

/// Objects refused by the index, and why, as their status should say.
type Verdicts = BTreeMap<ObjectRef, String>;

/// Keeps the status of refused Istio objects in step with the index;
/// runs until aborted (it is started each time this replica wins the lease).
pub async fn report_invalid_objects(
    client: kube::Client,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let kinds: Vec<WatchedKind> = kinds::all()
        .into_iter()
        .filter(|k| k.resource.group.ends_with("istio.io"))
        .collect();
    let mut written = left_by_earlier_leaders(&client, &kinds).await;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if snapshot.synced {
            let wanted = refused(&snapshot.status);
            reconcile(&client, &kinds, &wanted, &mut written).await;
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Refused Istio objects from the cluster (not files), with their message.
fn refused(status: &ConfigStatus) -> Verdicts {
    status
        .rejected
        .iter()
        .filter(|r| r.origin.source.starts_with("kube:"))
        .filter_map(|r| {
            let object = r.object.clone()?;
            let message = if r.field.is_empty() {
                r.reason.clone()
            } else {
                format!("{}: {}", r.field, r.reason)
            };
            Some((object, format!("{message} (Rudder keeps serving this object's last valid version, if it had one)")))
        })
        .collect()
}

/// Objects whose status carries this writer's condition now: written by an
/// earlier leader, perhaps for an object fixed since. Kinds that cannot be
/// listed are logged and skipped; their entries are still replaced when
/// the objects are refused again.
async fn left_by_earlier_leaders(client: &kube::Client, kinds: &[WatchedKind]) -> Verdicts {
    let mut found = Verdicts::new();
    for kind in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(kind = kind.kind.name(), "listing for stale status: {e}");
                continue;
            }
        };
        for object in list.items {
            if let Some(message) = our_message(&object.data["status"]) {
                found.insert(object_ref(kind, &object), message);
            }
        }
    }
    found
}

fn object_ref(kind: &WatchedKind, object: &DynamicObject) -> ObjectRef {
    ObjectRef {
        kind: kind.kind.name().to_string(),
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}

/// The message of this writer's condition in `status`, if it is there.
fn our_message(status: &Value) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == CONDITION && c["reason"] == REASON)
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
}

async fn reconcile(
    client: &kube::Client,
    kinds: &[WatchedKind],
    wanted: &Verdicts,
    written: &mut Verdicts,
) {
    let stale: Vec<ObjectRef> = written
        .keys()
        .filter(|o| !wanted.contains_key(*o))
        .cloned()
        .collect();
    let changes: Vec<(ObjectRef, Option<&str>)> = wanted
        .iter()
        .filter(|(o, m)| written.get(*o) != Some(*m))
        .map(|(o, m)| (o.clone(), Some(m.as_str())))
        .chain(stale.into_iter().map(|o| (o, None)))
        .collect();
    for (object, verdict) in changes {
        let Some(kind) = kinds.iter().find(|k| k.kind.name() == object.kind) else {
            continue;
        };
        match write(client, kind, &object, verdict).await {
            Ok(()) => match verdict {
                Some(message) => {
                    tracing::info!(object = %object, "status: refused: {message}");
                    written.insert(object, message.to_string());
                }
                None => {
                    tracing::info!(object = %object, "status: no longer refused");
                    written.remove(&object);
                }
            },
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Deleted: nothing left to explain.
                written.remove(&object);
            }
            Err(e) => {
                tracing::warn!(object = %object, "writing status: {e} (Rudder needs get and patch on {}/status); retried on the next change", kind.resource.plural)
            }
        }
    }
}

async fn write(
    client: &kube::Client,
    kind: &WatchedKind,
    object: &ObjectRef,
    verdict: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &object.namespace, &kind.resource);
    let current = api.get_status(&object.name).await?;
    let generation = current.metadata.generation;
    let Some(status) = status_with(&current.data["status"], verdict, generation, &now()) else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": status,
    });
    api.patch_status(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// `current` status with this writer's entries set to `verdict` (`None`:
/// removed) and everything else kept; `None` when nothing would change.
/// Lists are written whole (a merge patch replaces arrays), which is why
/// they are rebuilt from the current ones rather than sent alone.
fn status_with(
    current: &Value,
    verdict: Option<&str>,
    generation: Option<i64>,
    now: &str,
) -> Option<Value> {
    let others = |list: &str, ours: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        current[list]
            .as_array()
            .map(|items| items.iter().filter(|i| !ours(i)).cloned().collect())
            .unwrap_or_default()
    };
    let ours_condition = |c: &Value| c["type"] == CONDITION && c["reason"] == REASON;
    let ours_message = |m: &Value| m["type"]["code"] == IST0106;
    let mut conditions = others("conditions", &ours_condition);
    let mut messages = others("validationMessages", &ours_message);
    if let Some(message) = verdict {
        if our_message(current).as_deref() == Some(message)
            && current["observedGeneration"].as_i64() == generation
        {
            return None;
        }
        let since = current["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| ours_condition(c)))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        conditions.push(json!({
            "type": CONDITION,
            "status": "False",
            "reason": REASON,
            "message": message,
            "lastTransitionTime": since,
        }));
        messages.push(json!({
            "level": "ERROR",
            "type": {"code": IST0106, "name": "SchemaValidationError"},
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
        }));
    } else if our_message(current).is_none()
        && !current["validationMessages"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(ours_message))
    {
        return None;
    }
    // An emptied list is deleted (null in a merge patch), not left as [].
    let list = |items: Vec<Value>| {
        if items.is_empty() {
            Value::Null
        } else {
            Value::Array(items)
        }
    };
    let mut status = json!({
        "conditions": list(conditions),
        "validationMessages": list(messages),
    });
    if let Some(generation) = generation.filter(|_| verdict.is_some()) {
        status["observedGeneration"] = json!(generation);
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, Rejection};

    const NOW: &str = "2026-11-21T10:00:00Z";

    #[test]
    fn only_cluster_objects_with_a_name_are_reported() {
        let rejection = |source: &str, object: Option<ObjectRef>, field: &str| Rejection {
            origin: Origin {
                source: source.to_string(),
                document: None,
            },
            object,
            field: field.to_string(),
            reason: "must be 0..100".to_string(),
        };
        let vs = ObjectRef {
            kind: "VirtualService".into(),
            namespace: "demo".into(),
            name: "reviews".into(),
        };
        let status = ConfigStatus {
            rejected: vec![
                rejection(
                    "kube:VirtualService/demo/reviews",
                    Some(vs.clone()),
                    "spec.http[0].route[0].weight",
                ),
                rejection("vs.yaml", Some(vs.clone()), "spec.hosts"),
                rejection("kube:VirtualService/demo/broken", None, ""),
            ],
            ..Default::default()
        };
        let verdicts = refused(&status);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert!(verdicts[&vs].starts_with("spec.http[0].route[0].weight: must be 0..100 ("));
    }

    #[test]
    fn a_refusal_is_added_beside_other_controllers_entries() {
        let current = json!({
            "conditions": [{"type": "Reconciled", "status": "True"}],
            "validationMessages": [{"level": "WARNING", "type": {"code": "IST0101"}}],
        });
        let status = status_with(&current, Some("spec.hosts: required"), Some(3), NOW).unwrap();
        assert_eq!(status["observedGeneration"], 3);
        let conditions = status["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "Reconciled");
        assert_eq!(
            conditions[1],
            json!({"type": "Accepted", "status": "False", "reason": "Invalid",
                   "message": "spec.hosts: required", "lastTransitionTime": NOW})
        );
        let messages = status["validationMessages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1]["type"]["code"], "IST0106");
        assert_eq!(messages[1]["level"], "ERROR");
    }

    #[test]
    fn an_unchanged_refusal_is_not_rewritten_and_a_new_reason_keeps_its_start() {
        let first = status_with(&json!({}), Some("a: bad"), Some(1), NOW).unwrap();
        assert_eq!(status_with(&first, Some("a: bad"), Some(1), "later"), None);
        // A new generation with the same reason still records what was seen.
        assert!(status_with(&first, Some("a: bad"), Some(2), "later").is_some());
        let second = status_with(&first, Some("b: bad"), Some(2), "later").unwrap();
        assert_eq!(second["conditions"][0]["message"], "b: bad");
        assert_eq!(second["conditions"][0]["lastTransitionTime"], NOW);
        assert_eq!(second["validationMessages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn accepting_again_removes_only_our_entries() {
        let refused = status_with(
            &json!({"conditions": [{"type": "Reconciled", "status": "True"}]}),
            Some("a: bad"),
            Some(1),
            NOW,
        )
        .unwrap();
        assert_eq!(our_message(&refused).as_deref(), Some("a: bad"));
        let cleared = status_with(&refused, None, Some(2), NOW).unwrap();
        assert_eq!(
            cleared["conditions"],
            json!([{"type": "Reconciled", "status": "True"}])
        );
        assert_eq!(
            cleared["validationMessages"],
            Value::Null,
            "emptied list deleted"
        );
        assert!(cleared.get("observedGeneration").is_none());
        // Nothing of ours: nothing to write.
        assert_eq!(status_with(&cleared, None, Some(2), NOW), None);
        assert_eq!(status_with(&json!(null), None, None, NOW), None);
    }
}
