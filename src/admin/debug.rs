//! JSON debug views. Each answers one question a platform team asks when
//! something is off: what did you accept, what do you know, what did you send.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::Digest;

use super::AdminState;
use crate::translate;
use crate::xds::json::any_to_json;
use crate::xds::TypeUrl;

/// Per proxy stream and type: sent and ACKed version and nonce, NACK detail.
pub async fn syncz(State(s): State<AdminState>) -> Json<Value> {
    Json(json!(s.xds.registry.all()))
}

/// Services the mesh knows, with ports and protocols.
pub async fn registryz(State(s): State<AdminState>) -> Json<Value> {
    let snap = s.snapshots.borrow().clone();
    let services: Vec<_> = snap
        .services
        .values()
        .map(|svc| json!({"hostname": svc.hostname(), "service": svc}))
        .collect();
    Json(json!({"version": snap.version, "services": services}))
}

/// Endpoints per cluster, as EDS serves them.
pub async fn endpointz(State(s): State<AdminState>) -> Json<Value> {
    let snap = s.snapshots.borrow().clone();
    let mut clusters = BTreeMap::new();
    for (key, svc) in &snap.services {
        let Some(eps) = snap.endpoints.get(key) else {
            continue;
        };
        for port in &svc.ports {
            let name = translate::outbound_cluster(port.port, "", &svc.host);
            let list: Vec<Value> = eps
                .endpoints
                .iter()
                .map(|e| {
                    json!({
                        "address": e.address,
                        "port": crate::model::ServiceEndpoints::port_for(e, port),
                        "ready": e.ready,
                        "pod": e.pod,
                        "zone": e.zone,
                        // `region/zone/subzone`, as EDS groups it.
                        "locality": translate::endpoint_locality(&snap, svc, e).to_string(),
                    })
                })
                .collect();
            clusters.insert(name, list);
        }
    }
    Json(json!({"version": snap.version, "clusters": clusters}))
}

/// Accepted objects with their origin, and rejected documents with the reason.
pub async fn configz(State(s): State<AdminState>) -> Json<Value> {
    let snap = s.snapshots.borrow().clone();
    let status = &snap.status;
    let accepted: Vec<Value> = status
        .accepted
        .iter()
        .map(|(o, origin)| json!({"object": o.to_string(), "origin": origin.to_string()}))
        .collect();
    let rejected: Vec<Value> = status
        .rejected
        .iter()
        .map(|r| {
            json!({
                "origin": r.origin.to_string(),
                "object": r.object.as_ref().map(|o| o.to_string()),
                "field": r.field,
                "reason": r.reason,
                "message": r.to_string(),
            })
        })
        .collect();
    let ignored: Vec<Value> = status
        .ignored
        .iter()
        .map(|(o, origin)| json!({"object": o.to_string(), "origin": origin.to_string()}))
        .collect();
    Json(json!({
        "version": snap.version,
        "synced": snap.synced,
        "accepted": accepted,
        "rejected": rejected,
        "ignored": ignored,
        "warnings": status.warnings,
    }))
}

#[derive(serde::Deserialize)]
pub struct DumpQuery {
    proxy: Option<String>,
}

/// Exactly the resources a connected proxy holds from us, as proto3 JSON.
pub async fn config_dump(State(s): State<AdminState>, Query(q): Query<DumpQuery>) -> Response {
    let Some(proxy) = q.proxy else {
        return (
            StatusCode::BAD_REQUEST,
            "missing ?proxy=NODE_ID; see /debug/syncz for connected proxies\n",
        )
            .into_response();
    };
    let Some(status) = s
        .xds
        .registry
        .find(&proxy)
        .into_iter()
        .max_by_key(|s| s.connection)
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no connected proxy with node id {proxy:?}\n"),
        )
            .into_response();
    };
    let mut types = BTreeMap::new();
    for (t, ts) in &status.types {
        let held = ts.resources.upgrade().unwrap_or_default();
        let resources: Vec<Value> = held
            .values()
            .map(|r| {
                if *t == TypeUrl::Secret {
                    // Never over HTTP: /debug/certz has the certificate's dates.
                    return json!({"name": &*r.name, "version": r.version, "resource": "[redacted]"});
                }
                let body = any_to_json(&r.body()).unwrap_or_else(|e| json!({"error": e.to_string()}));
                json!({"name": &*r.name, "version": r.version, "resource": body})
            })
            .collect();
        types.insert(t.short(), resources);
    }
    Json(json!({"proxy": proxy, "connection": status.connection, "snapshot_version": status.snapshot_version, "resources": types})).into_response()
}

/// The CA, the xDS serving certificate and every issued workload certificate:
/// dates and holders, never a key.
pub async fn certz(State(s): State<AdminState>) -> Json<Value> {
    let now = std::time::SystemTime::now();
    let time = |t| humantime::format_rfc3339_seconds(t).to_string();
    let Some(store) = &s.xds.secrets else {
        return Json(
            json!({"ca": null, "note": "Rudder runs without a CA (no --ca-dir or --ca-secret)"}),
        );
    };
    let ca = store.ca();
    Json(json!({
        "ca": {
            "trust_domain": ca.trust_domain(),
            "source": format!("{:?}", ca.source()),
            "not_after": time(ca.signer_not_after()),
            // Equal on replicas that share a CA: compare them without the PEM.
            "trust_bundle_sha256": hex::encode(sha2::Sha256::digest(ca.trust_bundle().as_bytes())),
        },
        "workload_ttl": humantime::format_duration(store.ttl()).to_string(),
        "serving_cert": s.serving_cert.as_ref().map(|c| json!({"not_after": time(c.not_after())})),
        "workloads": store.status(now),
    }))
}
