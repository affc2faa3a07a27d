//! The kubelet's HTTPS API authenticates and authorizes every caller as
//! upstream's kubelet does: client certificates from the cluster CA (CN, O),
//! bearer tokens through TokenReview, no anonymous access once it has a
//! client CA, and a SubjectAccessReview on `nodes/<subresource>` for each
//! request. Real etcd, the real apiserver with a kube-pki PKI and its
//! kubelet-client certificate, a real kubelet on a private containerd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration::containerd::{Containerd, ContainerdOptions, TEST_IMAGE};
use integration::{eventually, free_port, ok, ApiServer, Component, Etcd, KUBECTL_VERSIONS};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A caller's credentials for curl.
enum Cred<'a> {
    None,
    Token(&'a str),
    /// Certificate and key files.
    Cert(&'a Path, &'a Path),
}

struct Cluster {
    api: ApiServer,
    _etcd: Etcd,
    pki: tempfile::TempDir,
    _containerd: Containerd,
    kubelet: Component,
    port: u16,
    healthz_port: u16,
    client: Client,
    _root: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let pki = tempfile::tempdir().unwrap();
        ApiServer::generate_pki(pki.path(), free_port()).unwrap();
        let p = |rel: &str| pki.path().join(rel).display().to_string();
        let etcd = Etcd::start().unwrap();
        // The apiserver presents kube-pki's kubelet-client certificate (kube-apiserver-kubelet-client in
        // system:masters) to kubelets, as upstream's --kubelet-client-certificate/--kubelet-client-key.
        let api = ApiServer::start_with(
            &etcd,
            &[
                &format!("--client-ca-file={}", p(kube_pki::paths::CA.cert)),
                &format!("--kubelet-client-certificate={}", p(kube_pki::paths::APISERVER_KUBELET_CLIENT.cert)),
                &format!("--kubelet-client-key={}", p(kube_pki::paths::APISERVER_KUBELET_CLIENT.key)),
            ],
        )
        .unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).unwrap();
        let client =
            Client::try_from(Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()).unwrap();
        // What the controller-manager would provide for pods' kube-api-access volume.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let ca = json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "test CA"}});
        cms.create(&PostParams::default(), &serde_json::from_value(ca).unwrap()).await.unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap())
            .await
            .unwrap();

        let containerd = Containerd::start(ContainerdOptions::default()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let (port, healthz_port) = (free_port(), free_port());
        // Only --client-ca-file among the auth flags: it brings the secure defaults (anonymous off, token
        // webhook on, Webhook authorization). Denials are cached for 1s so that a grant shows quickly.
        let args = [
            "--hostname-override=n1".to_string(),
            format!("--container-runtime-endpoint=unix://{}", containerd.socket().display()),
            format!("--root-dir={}", root.path().display()),
            format!("--port={port}"),
            format!("--healthz-port={healthz_port}"),
            "--node-ip=127.0.0.1".to_string(),
            format!("--client-ca-file={}", p(kube_pki::paths::CA.cert)),
            "--authorization-webhook-cache-unauthorized-ttl=1s".to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let node_kubeconfig = api.token_kubeconfig("system:node:n1", "node1-token").unwrap();
        let kubelet = api.start_component("kubelet", &node_kubeconfig, &refs).unwrap();
        let c = Cluster {
            api,
            _etcd: etcd,
            pki,
            _containerd: containerd,
            kubelet,
            port,
            healthz_port,
            client,
            _root: root,
        };
        let serving = eventually(WAIT, || (c.call("/healthz", Cred::None).0 != 0).then_some(()));
        assert!(serving.is_some(), "the kubelet never served HTTPS:\n{}", c.kubelet.log());
        c
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.pki.path().join(rel)
    }

    /// GET `path` on the kubelet's HTTPS port: the status (0: no HTTP answer) and body.
    fn call(&self, path: &str, cred: Cred) -> (u16, String) {
        self.request("GET", path, cred)
    }

    fn request(&self, method: &str, path: &str, cred: Cred) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"]);
        match cred {
            Cred::None => {}
            Cred::Token(t) => {
                cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
            }
            Cred::Cert(cert, key) => {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        let out = cmd.arg(format!("https://127.0.0.1:{}{path}", self.port)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Writes a client certificate and key for `user` in `groups`, signed by the cluster CA.
    fn user_cert(&self, dir: &Path, user: &str, groups: &[&str]) -> (PathBuf, PathBuf) {
        let yaml =
            kube_pki::user_kubeconfig(self.pki.path(), &kube_pki::UserOptions::new(user, groups.iter().copied()))
                .unwrap();
        let conf = kube_pki::kubeconfig::ClientConfig::from_yaml(&yaml).unwrap();
        let (cert, key) = (dir.join(format!("{user}.crt")), dir.join(format!("{user}.key")));
        std::fs::write(&cert, conf.cert_pem).unwrap();
        std::fs::write(&key, conf.key_pem).unwrap();
        (cert, key)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        ok(self.api.kubectl("1.33", args))
    }

    fn logs(&self) -> String {
        format!("kubelet:\n{}\napiserver:\n{}", tail(&self.kubelet.log(), 30), tail(&self.api.log(), 20))
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn forbidden(user: &str, verb: &str, subresources: &str) -> String {
    format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{subresources}])\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_api_authenticates_and_authorizes_every_caller() {
    let c = Cluster::start().await;
    let certs = tempfile::tempdir().unwrap();

    // No credentials: 401 (anonymous is off once the kubelet has a client CA), on every path.
    for path in ["/pods", "/healthz", "/stats/summary", "/metrics", "/containerLogs/default/x/c"] {
        assert_eq!(c.call(path, Cred::None), (401, "Unauthorized".to_string()), "{path}\n{}", c.logs());
    }
    // The local healthz port stays open, as upstream's.
    let plain =
        Command::new("curl").args(["-s", &format!("http://127.0.0.1:{}/healthz", c.healthz_port)]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "ok");
    // A token the apiserver does not know: 401 after a TokenReview.
    assert_eq!(c.call("/pods", Cred::Token("not-a-token")).0, 401);

    // A certificate from the cluster CA without any RBAC: authenticated as its CN, refused with upstream's message.
    let (carol_crt, carol_key) = c.user_cert(certs.path(), "carol", &["dev"]);
    let carol = || Cred::Cert(&carol_crt, &carol_key);
    assert_eq!(c.call("/pods", carol()), (403, forbidden("carol", "get", "pods proxy")), "{}", c.logs());
    assert_eq!(c.call("/stats/summary", carol()), (403, forbidden("carol", "get", "stats")));
    assert_eq!(c.call("/metrics", carol()), (403, forbidden("carol", "get", "metrics")));
    assert_eq!(c.call("/healthz", carol()), (403, forbidden("carol", "get", "healthz proxy")));
    // A certificate of another CA does not even complete the handshake.
    let foreign = tempfile::tempdir().unwrap();
    ApiServer::generate_pki(foreign.path(), free_port()).unwrap();
    let (f_crt, f_key) = (
        foreign.path().join(kube_pki::paths::APISERVER_KUBELET_CLIENT.cert),
        foreign.path().join(kube_pki::paths::APISERVER_KUBELET_CLIENT.key),
    );
    assert_eq!(c.call("/pods", Cred::Cert(&f_crt, &f_key)).0, 0, "a foreign client certificate got an answer");

    // A bearer token of a user without RBAC: 403, then `get nodes/proxy` lets /pods through.
    assert_eq!(c.call("/pods", Cred::Token("alice-token")), (403, forbidden("alice", "get", "pods proxy")));
    c.kubectl(&["create", "clusterrole", "kubelet-proxy", "--verb=get", "--resource=nodes/proxy"]);
    c.kubectl(&["create", "clusterrolebinding", "alice-kubelet-proxy", "--clusterrole=kubelet-proxy", "--user=alice"]);
    let allowed = eventually(Duration::from_secs(15), || {
        let (code, body) = c.call("/pods", Cred::Token("alice-token"));
        (code == 200).then_some(body)
    });
    let body = allowed.unwrap_or_else(|| panic!("alice never got /pods after the grant\n{}", c.logs()));
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList", "{body}");
    assert_eq!(c.call("/healthz", Cred::Token("alice-token")), (200, "ok".to_string()));
    // nodes/proxy is not nodes/stats.
    assert_eq!(c.call("/stats/summary", Cred::Token("alice-token")), (403, forbidden("alice", "get", "stats")));
    // `get` on nodes/proxy is not enough to exec, attach or port-forward, even over a GET (a WebSocket upgrade).
    for path in ["/exec/default/p/c?command=id", "/attach/default/p/c", "/portForward/default/p"] {
        assert_eq!(c.call(path, Cred::Token("alice-token")), (403, forbidden("alice", "create", "proxy")), "{path}");
    }

    // A service-account token (TokenReview of a TokenRequest token) with `get nodes/stats` only.
    c.kubectl(&["create", "serviceaccount", "stats-reader"]);
    c.kubectl(&["create", "clusterrole", "kubelet-stats", "--verb=get", "--resource=nodes/stats"]);
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "stats-reader",
        "--clusterrole=kubelet-stats",
        "--serviceaccount=default:stats-reader",
    ]);
    let token = c.kubectl(&["create", "token", "stats-reader"]).trim().to_string();
    let (code, body) = c.call("/stats/summary", Cred::Token(&token));
    assert_eq!(code, 200, "{body}\n{}", c.logs());
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["node"]["nodeName"], "n1", "{body}");
    assert_eq!(
        c.call("/pods", Cred::Token(&token)),
        (403, forbidden("system:serviceaccount:default:stats-reader", "get", "pods proxy"))
    );
    assert_eq!(
        c.call("/metrics", Cred::Token(&token)),
        (403, forbidden("system:serviceaccount:default:stats-reader", "get", "metrics"))
    );

    // The apiserver's kubelet-client certificate (system:masters) may do everything.
    let (api_crt, api_key) =
        (c.path(kube_pki::paths::APISERVER_KUBELET_CLIENT.cert), c.path(kube_pki::paths::APISERVER_KUBELET_CLIENT.key));
    for path in ["/pods", "/stats/summary", "/metrics", "/healthz"] {
        let (code, body) = c.call(path, Cred::Cert(&api_crt, &api_key));
        assert_eq!(code, 200, "{path}: {body}\n{}", c.logs());
    }

    // Through the apiserver (which authenticates to the kubelet with that certificate): logs and exec work.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let ready = eventually(WAIT, || {
        let node = futures::executor::block_on(nodes.get_opt("n1")).ok().flatten()?;
        let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    });
    assert!(ready.is_some(), "node n1 never became Ready\n{}", c.logs());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", "echo hello-from-talker; sleep 3600"]}]},
    });
    pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    let running = eventually(WAIT, || {
        let p = futures::executor::block_on(pods.get("talker")).ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    });
    assert!(running.is_some(), "pod talker never ran\n{}", c.logs());
    for v in KUBECTL_VERSIONS {
        let logs = eventually(Duration::from_secs(20), || {
            let out = c.api.kubectl(v, &["logs", "talker"]);
            String::from_utf8_lossy(&out.stdout).contains("hello-from-talker").then_some(())
        });
        assert!(
            logs.is_some(),
            "kubectl {v} logs: {}\n{}",
            integration::text(&c.api.kubectl(v, &["logs", "talker"])),
            c.logs()
        );
        let out = ok(c.api.kubectl(v, &["exec", "talker", "--", "sh", "-c", "echo exec-through-$((40+2))"]));
        assert_eq!(out.trim(), "exec-through-42");
    }
    // A user without the kubelet-client certificate reaching the kubelet directly cannot exec.
    let (code, _) = c.request("POST", "/exec/default/talker/c?command=id&output=1", Cred::Token("alice-token"));
    assert_eq!(code, 403);
}
