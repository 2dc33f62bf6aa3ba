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
