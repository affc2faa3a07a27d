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
        // It runs as the account: a token is bound only to a pod of its own service account.
        let overrides = format!(r#"--overrides={{"apiVersion":"v1","spec":{{"serviceAccountName":"{sa}"}}}}"#);
        ok(api.kubectl(v, &["run", &pod, "--image=busybox:1", &overrides]));
        let other = format!("q{}", v.replace('.', ""));
        ok(api.kubectl(v, &["run", &other, "--image=busybox:1"]));
        let out =
            fails(api.kubectl(
                v,
                &["create", "token", &sa, "--bound-object-kind=Pod", &format!("--bound-object-name={other}")],
            ));
        assert!(out.contains("different serviceaccount name"), "{out}");
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

/// Decodes a JWT's part (base64url without padding).
fn b64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {s}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn b64url_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An ES256 JWT of `header` and `claims` signed with the PKCS#8 P-256 key in `key_file` (a PKI's sa.key).
fn sign_jwt(header: &serde_json::Value, claims: &serde_json::Value, key_file: &std::path::Path) -> String {
    let pem = std::fs::read(key_file).unwrap();
    let key = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).unwrap()
    };
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key).unwrap();
    let signer = signing.choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256]).unwrap();
    let input =
        format!("{}.{}", b64url_encode(header.to_string().as_bytes()), b64url_encode(claims.to_string().as_bytes()));
    let der = signer.sign(input.as_bytes()).unwrap();
    // ASN.1 SEQUENCE { INTEGER r, INTEGER s } to JOSE's fixed 32-byte r || s.
    let mut fixed = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "not an ECDSA signature");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        fixed.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        fixed.extend_from_slice(int);
        i += 2 + len;
    }
    format!("{input}.{}", b64url_encode(&fixed))
}

#[test]
fn expired_foreign_signed_and_wrong_audience_tokens_are_refused() {
    let pki = tempfile::tempdir().unwrap();
    let port = free_port();
    ApiServer::generate_pki(pki.path(), port).unwrap();
    let foreign = tempfile::tempdir().unwrap();
    ApiServer::generate_pki(foreign.path(), free_port()).unwrap();
    let etcd = Etcd::start().unwrap();
    let api = ApiServer::start_secure(&etcd, pki.path(), port).unwrap();
    ok(api.kubectl("1.33", &["create", "serviceaccount", "reviewer"]));
    let good = ok(api.kubectl("1.33", &["create", "token", "reviewer"])).trim().to_string();
    let parts: Vec<&str> = good.split('.').collect();
    assert_eq!(parts.len(), 3, "{good}");
    let header: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    let now = claims["iat"].as_i64().unwrap();
    // Re-signing the same claims with the real key gives a token that works: the signing here is right.
    let resigned = sign_jwt(&header, &claims, &pki.path().join(kube_pki::paths::SA_KEY));
    // The same claims expired a minute ago, signed with the real key.
    let mut old = claims.clone();
    old["iat"] = (now - 3660).into();
    old["nbf"] = (now - 3660).into();
    old["exp"] = (now - 60).into();
    let expired = sign_jwt(&header, &old, &pki.path().join(kube_pki::paths::SA_KEY));
    // The same claims signed with another PKI's service-account key.
    let forged = sign_jwt(&header, &claims, &foreign.path().join(kube_pki::paths::SA_KEY));
    // A real token for another audience.
    let elsewhere =
        ok(api.kubectl("1.33", &["create", "token", "reviewer", "--audience=elsewhere"])).trim().to_string();

    let review = |token: &str, audiences: Option<&[&str]>| {
        let mut spec = serde_json::json!({"token": token});
        if let Some(a) = audiences {
            spec["audiences"] = serde_json::json!(a);
        }
        let body = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec});
        let (code, body) = api.json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&body));
        assert_eq!(code, 201, "{body}");
        body["status"].clone()
    };
    let request = |token: &str| {
        let auth = format!("Authorization: Bearer {token}");
        api.raw_request("GET", "/api/v1/namespaces/default/serviceaccounts/reviewer", &[&auth]).unwrap().0
    };
    let me = "system:serviceaccount:default:reviewer";
    for token in [&good, &resigned] {
        assert_eq!(request(token), 403, "a valid token of a user without rights is authenticated, then forbidden");
        let status = review(token, None);
        assert_eq!((status["authenticated"].as_bool(), status["user"]["username"].as_str()), (Some(true), Some(me)));
        for v in KUBECTL_VERSIONS {
            let who = ok(api.kubectl_as(v, token, &["auth", "whoami"]));
            assert!(who.contains(me), "{who}");
        }
    }
    for (what, token) in [("expired", &expired), ("foreign-signed", &forged), ("other audience", &elsewhere)] {
        assert_eq!(request(token), 401, "{what} token");
        let status = review(token, None);
        assert_eq!(status["authenticated"], false, "{what}: {status}");
        assert!(status.get("user").is_none(), "{what}: {status}");
        for v in KUBECTL_VERSIONS {
            let out = fails(api.kubectl_as(v, token, &["auth", "whoami"]));
            assert!(out.contains("Unauthorized") || out.contains("provide credentials"), "{what} with {v}: {out}");
        }
    }
    // TokenReview authenticates for the audiences it is asked about (upstream): the other-audience
    // token is valid for "elsewhere" and only for it, the apiserver's own token is not.
    let status = review(&elsewhere, Some(&["elsewhere", "unrelated"]));
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], serde_json::json!(["elsewhere"]), "{status}");
    assert_eq!(status["user"]["username"], me, "{status}");
    assert_eq!(review(&good, Some(&["elsewhere"]))["authenticated"], false);
    // Neither expired nor foreign-signed tokens pass whatever audience is asked.
    assert_eq!(review(&expired, Some(&["elsewhere"]))["authenticated"], false);
    let own = claims["aud"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>();
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    assert_eq!(review(&forged, Some(&own))["authenticated"], false);
    let status = review(&good, Some(&own));
    assert_eq!((status["authenticated"].as_bool(), &status["audiences"]), (Some(true), &serde_json::json!(own)));
    // A static token stands for the apiserver's own audiences only.
    assert_eq!(review("admin", None)["authenticated"], true);
    assert_eq!(review("admin", Some(&["elsewhere"]))["authenticated"], false);
}
