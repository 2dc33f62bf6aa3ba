//! `rudder validate` and `rudder translate`: the pipeline without a server.

use std::process::Command;

use serde_json::Value;

use crate::support::workdir;

fn rudder(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .output()
        .expect("running rudder");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn offline_validate_names_every_bad_document_and_fails() {
    let dir = workdir("validate");
    let good = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec:\n  ports: [{name: http, port: 80}]\n";
    std::fs::write(dir.path().join("good.yaml"), good).unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let (ok, stdout, _) = rudder(&["validate", "--config-dir", dir_arg]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("1 objects accepted, 0 documents rejected"),
        "{stdout}"
    );

    let bad = format!("{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: demo}}\nspec:\n  ports: [{{name: http, port: 80, protocol: QUIC}}]\n");
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let (ok, stdout, stderr) = rudder(&["validate", "--config-dir", dir_arg]);
    assert!(!ok, "validate must fail on a bad document");
    assert!(
        stdout.contains("bad.yaml document 1 (Service demo/api): spec.ports[0].protocol: must be TCP, UDP or SCTP, got \"QUIC\""),
        "{stdout}"
    );
    assert!(stderr.contains("1 invalid documents"), "{stderr}");
}

#[test]
fn offline_translate_shows_what_a_proxy_receives() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo");
    let node = "sidecar~198.18.0.5~client-0.demo~demo.svc.cluster.local";
    let (ok, stdout, stderr) = rudder(&["translate", "--config-dir", config, "--node-id", node]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("JSON output");
    let names = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("clusters").contains(&"outbound|8080||web.demo.svc.cluster.local".to_string()));
    assert_eq!(
        names("listeners"),
        [
            "0.0.0.0_7070",
            "0.0.0.0_8080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let (ok, stdout, _) = rudder(&[
        "translate",
        "--config-dir",
        config,
        "--node-id",
        node,
        "--interception",
        "NONE",
        "--type",
        "lds",
    ]);
    assert!(ok);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let listeners: Vec<&str> = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(listeners, ["127.0.0.1_7070", "127.0.0.1_8080"]);
    assert!(
        v.get("clusters").is_none(),
        "--type lds prints listeners only"
    );
}

/// Every golden translation (src/translate/testdata) is config real Envoy
/// accepts: each case's listeners and clusters, added to a bootstrap from
/// `rudder bootstrap`, pass `envoy --mode validate`, which builds every
/// filter (RBAC, ext_authz, jwt_authn, ...) as a NACK check would. Files a
/// case names that this machine lacks (a DestinationRule's CA bundle) are
/// swapped for a generated certificate, since Envoy reads them.
#[test]
fn offline_golden_translations_pass_envoy_validation() {
    let testdata = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/translate/testdata"
    ));
    let dir = workdir("golden-validate");
    let node = "sidecar~198.18.0.1~golden-0.e2e~e2e.svc.cluster.local";
    let base =
        crate::support::render_bootstrap(&dir.path().join("base.json"), &["--node-id", node]);
    let base: Value = serde_json::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    let mut cases: Vec<String> = std::fs::read_dir(testdata)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".listeners.json").map(str::to_string)
        })
        .collect();
    cases.sort();
    assert!(cases.iter().any(|c| c == "authz_custom"), "{cases:?}");
    let read = |case: &str, kind: &str| -> Vec<Value> {
        let path = testdata.join(format!("{case}.{kind}.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let cert = rcgen::generate_simple_self_signed(vec!["golden.test".to_string()]).unwrap();
    let stand_in = dir.path().join("stand-in.pem");
    std::fs::write(&stand_in, cert.cert.pem()).unwrap();
    // A private key's stand-in is the key of that certificate: Envoy checks
    // that a server's key matches its certificate.
    let stand_in_key = dir.path().join("stand-in-key.pem");
    std::fs::write(&stand_in_key, cert.signing_key.serialize_pem()).unwrap();
    let stand_ins = StandIns {
        cert: stand_in.to_str().unwrap(),
        key: stand_in_key.to_str().unwrap(),
    };
    let mut failures = Vec::new();
    for case in &cases {
        let mut boot = base.clone();
        let statics = &mut boot["static_resources"];
        let listeners = statics["listeners"].as_array_mut().unwrap();
        listeners.extend(read(case, "listeners"));
        let clusters = statics["clusters"].as_array_mut().unwrap();
        clusters.extend(read(case, "clusters"));
        replace_missing_files(&mut boot, &stand_ins, stand_ins.cert);
        let file = dir.path().join(format!("{case}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
        if let Err(e) = crate::support::envoy_validate(&file) {
            failures.push(format!("case {case}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Files that stand in for those a golden case names but this machine lacks.
struct StandIns<'a> {
    cert: &'a str,
    key: &'a str,
}

/// Replaces every missing `filename` by `stand_in`: the certificate, or
/// under a `private_key` the key.
fn replace_missing_files(v: &mut Value, stand_ins: &StandIns, stand_in: &str) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(path)
                        if key == "filename" && !std::path::Path::new(path.as_str()).exists() =>
                    {
                        *path = stand_in.to_string();
                    }
                    _ if key == "private_key" => {
                        replace_missing_files(value, stand_ins, stand_ins.key)
                    }
                    _ => replace_missing_files(value, stand_ins, stand_ins.cert),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| replace_missing_files(i, stand_ins, stand_in)),
        _ => {}
    }
}
