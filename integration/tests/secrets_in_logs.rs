//! Secrets never reach the components' logs: a Secret's value (plain and
//! base64), a token from TokenRequest and the static bearer tokens stay out of
//! the apiserver's, kubelet's and controller-manager's logs at their most
//! verbose level (`--v=10` and `RUST_LOG=trace`), while the secret goes all
//! the way into a running container as an environment variable and a volume.

use std::time::Duration;

use integration::containerd::TEST_IMAGE;
use integration::node::{eventually_async, SingleNode};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The lines of `log` that hold `needle`, for the failure message.
fn leaks<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).take(5).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_component_logs() {
    // Every component at its most verbose: the apiserver inherits RUST_LOG, the harness hands COMPONENT_LOG
    // to the kubelet and controller-manager as theirs; each also gets --v=10.
    std::env::set_var("RUST_LOG", "trace");
    std::env::set_var("COMPONENT_LOG", "trace");
    let n = SingleNode::start(&["--v=10"]).await;
    let api = &n.cp.apiserver;
    let kcm = api
        .start_component(
            "kube-controller-manager",
            &api.token_kubeconfig("system:kube-controller-manager", "controller-manager-token").unwrap(),
            &["--leader-elect=false", "--secure-port=0", "--v=10"],
        )
        .unwrap();

    let value = format!("s3cret-{}", std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim());
    let secrets: Api<Secret> = Api::namespaced(n.client.clone(), "default");
    let secret = json!({"metadata": {"name": "creds"}, "stringData": {"password": value}});
    secrets.create(&PostParams::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "if [ \"$PASSWORD\" = \"$(cat /creds/password)\" ] && [ -n \"$PASSWORD\" ]; then echo same; else echo differ; fi; sleep 3600"],
                "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
                "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]}],
            "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}]},
    });
    n.create_pod(pod).await;
    n.until("user", "running", |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).await;
    // The container got the value both ways (it says so without printing it).
    let said = eventually_async(|| async {
        let out = api.kubectl("1.33", &["logs", "user"]);
        let text = integration::stdout(&out);
        (!text.trim().is_empty()).then_some(text)
    })
    .await;
    assert_eq!(said.as_deref().map(str::trim), Some("same"), "{}", n.logs_for_failure());
    // The secret read through the API as well, by the admin and in a watch.
    let got = integration::ok(api.kubectl("1.33", &["get", "secret", "creds", "-o", "jsonpath={.data.password}"]));
    assert_eq!(got, base64(value.as_bytes()));
    // A token from TokenRequest, used once.
    let token = integration::ok(api.kubectl("1.33", &["create", "token", "default"])).trim().to_string();
    let who = integration::ok(api.kubectl_as("1.33", &token, &["auth", "whoami"]));
    assert!(who.contains("system:serviceaccount:default:default"), "{who}");
    // A static token refused, one accepted.
    assert!(!api.kubectl_as("1.33", "alice-token", &["get", "secrets"]).status.success());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let logs = [("kube-apiserver", api.log()), ("kubelet", n.kubelet_log()), ("kube-controller-manager", kcm.log())];
    for (who, log) in &logs {
        // The logs are real and verbose (trace lines), so the checks below look at something.
        assert!(log.lines().count() > 50 && log.contains("TRACE"), "{who} logged little:\n{log}");
    }
    // The secret's requests are in them: the kubelet fetched it, the apiserver served it.
    for (who, log) in &logs[..2] {
        assert!(log.contains("/api/v1/namespaces/default/secrets/creds"), "{who} never logged the secret's requests");
    }
    let needles = [
        ("the secret's value", value.clone()),
        ("the secret's value in base64", base64(value.as_bytes())),
        ("the TokenRequest token", token.clone()),
        ("the TokenRequest token's signature", token.rsplit('.').next().unwrap_or_default().to_string()),
        ("the kubelet's static token", "node1-token".to_string()),
        ("the controller-manager's static token", "controller-manager-token".to_string()),
        ("alice's static token", "alice-token".to_string()),
        ("an Authorization header", "Bearer ".to_string()),
    ];
    for (who, log) in &logs {
        for (what, needle) in &needles {
            assert!(leaks(log, needle).is_empty(), "{who} logged {what}: {:?}", leaks(log, needle));
        }
    }
}
