//! Bodies captured from stock kubectl v1.33 (`kubectl create ...`, `auth can-i`,
//! `auth whoami`, `create token`, `autoscale`) posting to a local listener,
//! with the JSON they must decode to. The expected JSON matches what the same
//! kubectl prints for `--dry-run=client -o json`, less Go's `null`s and the
//! zero values of non-pointer fields.
//!
//! `BLESS=1 cargo test -p kube-protobuf --test kubectl_fixtures` rewrites the
//! expected files from the current decoder.

use std::path::PathBuf;

use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    // Cargo's value for this run first: a binary built by another checkout that shares
    // the target dir would otherwise read that checkout's (maybe gone) fixtures.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    manifest.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))).join("tests/fixtures/kubectl-1.33")
}

fn check(name: &str) -> Value {
    let dir = fixtures();
    let body = std::fs::read(dir.join(format!("{name}.pb"))).unwrap();
    assert!(kube_protobuf::is_protobuf_envelope(&body), "{name}");
    let decoded = kube_protobuf::decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected_path = dir.join(format!("{name}.json"));
    if std::env::var_os("BLESS").is_some() {
        let text = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
        std::fs::write(&expected_path, text).unwrap();
    }
    let expected: Value = serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
    assert_eq!(decoded, expected, "{name}");

    // What we encode decodes to the same object.
    let encoded = kube_protobuf::encode(&decoded).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = kube_protobuf::decode(&encoded).unwrap();
    assert_eq!(again, decoded, "{name} after re-encoding");
    decoded
}

#[test]
fn every_fixture_decodes_to_its_expected_json() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            (path.extension()? == "pb").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        check(&name);
    }
}

#[test]
fn create_configmap_keeps_binary_data() {
    let cm = check("configmap");
    assert_eq!(cm["data"], json!({"a": "b"}));
    // "\x00\x01\x02\xff\xfebinary"
    assert_eq!(cm["binaryData"], json!({"bin": "AAEC//5iaW5hcnk="}));
}

#[test]
fn create_deployment_keeps_explicit_zero_replicas() {
    assert_eq!(check("deployment")["spec"]["replicas"], 3);
    let zero = check("deployment-zero-replicas");
    assert_eq!(zero["spec"]["replicas"], 0);
    assert_eq!(zero["status"], json!({}));
    assert!(zero["metadata"].get("creationTimestamp").is_none());
}

#[test]
fn auth_can_i_sends_a_self_subject_access_review() {
    assert_eq!(
        check("selfsubjectaccessreview"),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {}
        })
    );
}

#[test]
fn create_pdb_keeps_percent_int_or_string() {
    assert_eq!(check("poddisruptionbudget")["spec"]["minAvailable"], json!("50%"));
}
