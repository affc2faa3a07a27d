//! The scheduler's and controller-manager's HTTPS endpoints as upstream
//! secures them: `/healthz`, `/livez`, `/readyz` open to anyone, `/metrics`
//! only for a caller the apiserver authenticates (TokenReview, or a client
//! certificate from `--client-ca-file`) and authorizes (SubjectAccessReview
//! of the non-resource path), each component delegating with its own
//! credentials.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration::{eventually, free_port, ok, ControlPlane};
use kube_pki::cert::{Authority, CertSpec, Key};

/// (status code, body) of a GET with extra curl arguments.
fn get(port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A client certificate for `user` in `groups` from a CA of its own, written to `dir`: (CA file, cert, key).
fn client_certificate(dir: &Path, user: &str, groups: &[&str]) -> (String, String, String) {
    let ca_key = Key::generate().unwrap();
    let ca_pem = Authority::self_signed("component-auth-test-ca", &ca_key).unwrap();
    let ca = Authority::load(&ca_pem, Key::from_pem(ca_key.pem()).unwrap()).unwrap();
    let key = Key::generate().unwrap();
    let cert = ca.issue(&CertSpec::client(user, groups), &key).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(path(&format!("{user}-ca.crt")), &ca_pem).unwrap();
    std::fs::write(path(&format!("{user}.crt")), cert).unwrap();
    std::fs::write(path(&format!("{user}.key")), key.pem()).unwrap();
    (path(&format!("{user}-ca.crt")), path(&format!("{user}.crt")), path(&format!("{user}.key")))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Starts `binary` as its own identity (`user`, `token` from the harness's token file) with /metrics on a free
/// port and client certificates from a CA of the test's, then checks who may read what.
fn metrics_need_an_authorized_caller(binary: &str, user: &str, token: &str) {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let certs = tempfile::tempdir().unwrap();
    let (ca_file, cert, key) = client_certificate(certs.path(), "prom", &["system:monitoring"]);
    // carol's certificate is from another CA: not trusted by the component.
    let (_, carol_cert, carol_key) = client_certificate(certs.path(), "carol", &[]);

    // A service account bound to a ClusterRole that allows `get /metrics`, and one that is not.
    for args in [
        &["create", "serviceaccount", "metrics-reader"][..],
        &["create", "serviceaccount", "nobody"],
        &["create", "clusterrole", "metrics-reader", "--verb=get", "--non-resource-url=/metrics"],
        &[
            "create",
            "clusterrolebinding",
            "metrics-reader",
            "--clusterrole=metrics-reader",
            "--serviceaccount=default:metrics-reader",
        ],
    ] {
        ok(api.kubectl("1.33", args));
    }
    let reader = ok(api.kubectl("1.33", &["create", "token", "metrics-reader"])).trim().to_string();
    let nobody = ok(api.kubectl("1.33", &["create", "token", "nobody"])).trim().to_string();

    let port = free_port();
    let kubeconfig = api.token_kubeconfig(user, token).unwrap();
    let (secure_port, client_ca) = (format!("--secure-port={port}"), format!("--client-ca-file={ca_file}"));
    let mut args = vec!["--leader-elect=false", &secure_port, "--bind-address=127.0.0.1", &client_ca];
    if binary == "kube-controller-manager" {
        args.push("--controllers=replicaset");
    }
    let component = api.start_component(binary, &kubeconfig, &args).unwrap();
    let up = eventually(Duration::from_secs(30), || (get(port, "/healthz", &[]).0 == 200).then_some(()));
    assert!(up.is_some(), "{binary} never served /healthz: {}", component.log());

    // Health is open to anyone, with or without credentials.
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(get(port, path, &[]), (200, "ok".to_string()), "{path}");
        assert_eq!(get(port, path, &["-H", &bearer(&nobody)]).0, 200, "{path}");
    }
    // No credentials: system:anonymous, which RBAC does not let read /metrics (upstream's 403).
    let (code, body) = get(port, "/metrics", &[]);
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Forbidden", "{body}");
    assert_eq!(status["message"], "forbidden: User \"system:anonymous\" cannot get path \"/metrics\"", "{body}");
    // A token the apiserver does not know: 401, on health too (authentication comes before authorization).
    for path in ["/metrics", "/healthz"] {
        let (code, body) = get(port, path, &["-H", &bearer("not-a-token")]);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    }
    // Known users without the permission: 403 naming them.
    let (code, body) = get(port, "/metrics", &["-H", &bearer("alice-token")]);
    assert_eq!((code, body.contains("User \\\"alice\\\" cannot get path \\\"/metrics\\\"")), (403, true), "{body}");
    let (code, body) = get(port, "/metrics", &["-H", &bearer(&nobody)]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("system:serviceaccount:default:nobody"), "{body}");
    // Bound to a ClusterRole allowing get on /metrics: the metrics.
    let (code, body) = get(port, "/metrics", &["-H", &bearer(&reader)]);
    assert_eq!(code, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // system:masters is allowed without asking (upstream's always-allowed group).
    assert_eq!(get(port, "/metrics", &["-H", &bearer("admin")]).0, 200);
    // A client certificate from --client-ca-file in system:monitoring: upstream's bootstrap grants it /metrics.
    let (code, body) = get(port, "/metrics", &["--cert", &cert, "--key", &key]);
    assert_eq!(code, 200, "{body}");
    // A certificate from another CA is not accepted.
    let (code, _) = get(port, "/metrics", &["--cert", &carol_cert, "--key", &carol_key]);
    assert_ne!(code, 200);
    // The path is authorized as asked: the reader's role allows /metrics only.
    let (code, body) = get(port, "/debug/pprof/", &["-H", &bearer(&reader)]);
    assert_eq!(code, 403, "{body}");
    // The component asked the apiserver as itself.
    assert!(!component.log().contains("authorization error"), "{}", component.log());
}

#[test]
fn scheduler_metrics_need_an_authorized_caller() {
    metrics_need_an_authorized_caller("kube-scheduler", "system:kube-scheduler", "scheduler-token");
}

#[test]
fn controller_manager_metrics_need_an_authorized_caller() {
    metrics_need_an_authorized_caller(
        "kube-controller-manager",
        "system:kube-controller-manager",
        "controller-manager-token",
    );
}
