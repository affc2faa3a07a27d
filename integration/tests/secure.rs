//! A secured control plane from kube-pki: TLS everywhere, x509 client
//! certificates for users and components, etcd over TLS with client certificates.

use integration::{fails, free_port, ok, stdout, ApiServer, Etcd, KUBECTL_VERSIONS};

fn kubectl_with(api: &ApiServer, kubeconfig: &std::path::Path, v: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(integration::kubectl_path(v))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .env("HOME", api.dir.path())
        .output()
        .unwrap()
}

#[test]
fn client_certificates_authenticate_and_foreign_ones_are_refused() {
    let pki = tempfile::tempdir().unwrap();
    let port = free_port();
    ApiServer::generate_pki(pki.path(), port).unwrap();
    let etcd = Etcd::start_tls(pki.path()).unwrap();
    // etcd itself refuses clients without a certificate.
    let plain = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={}", etcd.client_url),
            "--insecure-skip-tls-verify",
            "--command-timeout=3s",
            "get",
            "/x",
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "etcd accepted a client without a certificate");
    let api = ApiServer::start_secure(&etcd, pki.path(), port).unwrap();
    for v in KUBECTL_VERSIONS {
        // admin.conf: a client certificate in system:masters, verified server certificate.
        let who = ok(api.kubectl(v, &["auth", "whoami"]));
        assert!(who.contains("kubernetes-admin") && who.contains("system:masters"), "{who}");
        ok(api.kubectl(v, &["create", "configmap", &format!("c{}", v.replace('.', ""))]));
    }
    // A user's certificate: authenticated as its CN and O, then authorized by RBAC.
    let carol = kube_pki::user_kubeconfig(pki.path(), &kube_pki::UserOptions::new("carol", ["dev"])).unwrap();
    let carol_conf = api.dir.path().join("carol.conf");
    std::fs::write(&carol_conf, carol).unwrap();
    for v in KUBECTL_VERSIONS {
        let who = ok(kubectl_with(&api, &carol_conf, v, &["auth", "whoami"]));
        assert!(who.contains("carol") && who.contains("dev"), "{who}");
        let out = fails(kubectl_with(&api, &carol_conf, v, &["get", "secrets"]));
        assert!(out.contains("User \"carol\" cannot list resource \"secrets\""), "{out}");
    }
    // A certificate from another CA is refused in the TLS handshake; ours is accepted.
    let foreign = tempfile::tempdir().unwrap();
    ApiServer::generate_pki(foreign.path(), port).unwrap();
    let code_with = |client: &std::path::Path| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(pki.path().join("pki/ca.crt"))
            .arg("--cert")
            .arg(client.join("pki/apiserver-kubelet-client.crt"))
            .arg("--key")
            .arg(client.join("pki/apiserver-kubelet-client.key"))
            .arg(format!("https://127.0.0.1:{}/api", api.port))
            .output()
            .unwrap();
        stdout(&out)
    };
    assert_eq!(code_with(foreign.path()), "000", "a foreign client certificate got an HTTP answer");
    assert_eq!(code_with(pki.path()), "200");
}

#[test]
fn service_account_tokens_are_issued_bound_and_revoked_with_their_objects() {
    let pki = tempfile::tempdir().unwrap();
    let port = free_port();
    ApiServer::generate_pki(pki.path(), port).unwrap();
    let etcd = Etcd::start().unwrap();
    let api = ApiServer::start_secure(&etcd, pki.path(), port).unwrap();
    for v in KUBECTL_VERSIONS {
        let sa = format!("builder{}", v.replace('.', ""));
        ok(api.kubectl(v, &["create", "serviceaccount", &sa]));
        let token = ok(api.kubectl(v, &["create", "token", &sa, "--duration=1h"])).trim().to_string();
        assert_eq!(token.split('.').count(), 3, "{token}");
        let who = ok(api.kubectl_as(v, &token, &["auth", "whoami"]));
        assert!(
            who.contains(&format!("system:serviceaccount:default:{sa}"))
                && who.contains("system:serviceaccounts:default"),
            "{who}"
        );
        let out = fails(api.kubectl_as(v, &token, &["get", "secrets"]));
        assert!(
            out.contains(&format!("User \"system:serviceaccount:default:{sa}\" cannot list resource \"secrets\"")),
            "{out}"
        );
        // TokenReview sees it as valid.
        let review = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        let (code, body) = api.json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&review));
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["status"]["authenticated"], true, "{body}");
        // A token bound to a pod dies with the pod.
        let pod = format!("p{}", v.replace('.', ""));
        ok(api.kubectl(v, &["run", &pod, "--image=busybox:1"]));
        let bound = ok(
            api.kubectl(v, &["create", "token", &sa, "--bound-object-kind=Pod", &format!("--bound-object-name={pod}")])
        )
        .trim()
        .to_string();
        ok(api.kubectl_as(v, &bound, &["auth", "whoami"]));
        ok(api.kubectl(v, &["delete", "pod", &pod, "--wait"]));
        let out = fails(api.kubectl_as(v, &bound, &["auth", "whoami"]));
        assert!(out.contains("Unauthorized") || out.contains("provide credentials"), "{out}");
        // Every token of a deleted service account stops working.
        ok(api.kubectl(v, &["delete", "serviceaccount", &sa]));
        let out = fails(api.kubectl_as(v, &token, &["auth", "whoami"]));
        assert!(out.contains("Unauthorized") || out.contains("provide credentials"), "{out}");
        let out = fails(api.kubectl(v, &["create", "token", "nobody"]));
        assert!(out.contains("not found"), "{out}");
    }
}
