//! More of kubectl's tunnels through the apiserver (issue 10), with stock kubectl 1.33 and
//! 1.32 against a real kubelet on a private containerd:
//! - `services/proxy`, `pods/proxy` and `nodes/proxy` carrying methods, headers, bodies and
//!   status codes both ways, with upstream's endpoint choice and RBAC verbs;
//! - discovery of the subresources (`/api/v1` and aggregated), hidden from `api-resources`;
//! - `exec -it` in a real terminal (a pty) with a resize, `attach`, and the SPDY/3.1
//!   fallback (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`)
//!   for exec, cp and port-forward; port-forward with ten connections at once;
//! - a bearer token in a WebSocket subprotocol, as browsers send it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use integration::containerd::{TEST_IMAGE, TEST_PAGE_MARKER};
use integration::node::{merge, SingleNode, WAIT};
use integration::{eventually, free_port, kubectl_path, ControlPlane, KUBECTL_VERSIONS};
use serde_json::{json, Value};

const PYTHON: &str = "/usr/bin/python3";

struct Node1(SingleNode);

impl std::ops::Deref for Node1 {
    type Target = SingleNode;
    fn deref(&self) -> &SingleNode {
        &self.0
    }
}

impl std::ops::DerefMut for Node1 {
    fn deref_mut(&mut self) -> &mut SingleNode {
        &mut self.0
    }
}

impl Node1 {
    async fn start() -> Node1 {
        Node1::start_with(&[]).await
    }

    /// The same with more kubelet flags.
    async fn start_with(extra: &[&str]) -> Node1 {
        Node1(SingleNode::start(extra).await)
    }

    async fn pod(&self, name: &str, extra: Value) {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never"}]},
        });
        merge(&mut pod, extra);
        self.create_pod(pod).await;
    }

    /// Waits for the pod to run (and, when it declares a readiness probe, to be ready); its status.
    async fn running(&self, name: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Ok(p) = self.pods().get(name).await {
                let status = serde_json::to_value(&p.status).unwrap_or_default();
                if status["phase"] == "Running" && !status["podIP"].as_str().unwrap_or("").is_empty() {
                    return status;
                }
                assert!(start.elapsed() < WAIT, "pod {name} never ran: {status}\n{}", self.logs_for_failure());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn apply(&self, obj: &Value) {
        let o = self.cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&obj.to_string()));
        assert!(o.status.success(), "apply {obj}: {}", err(&o));
    }

    /// kubectl `version` with `env` set, optionally fed `stdin`.
    fn kubectl_env(&self, version: &str, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(kubectl_path(version));
        cmd.arg(format!("--kubeconfig={}", self.cp.apiserver.kubeconfig.display()))
            .args(args)
            .env("HOME", self.cp.apiserver.dir.path())
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_env(version, &[], args, None)
    }

    /// One HTTPS request to the apiserver with curl: (code, response headers, body).
    fn curl(&self, method: &str, path: &str, headers: &[&str], body: Option<&str>) -> (u16, String, String) {
        let mut args: Vec<String> = vec!["-sk".into(), "-X".into(), method.into(), "-D".into(), "-".into()];
        for h in headers {
            args.extend(["-H".into(), h.to_string()]);
        }
        if let Some(b) = body {
            args.extend(["--data-binary".into(), b.to_string()]);
        }
        args.push(format!("{}{path}", self.cp.apiserver.url()));
        let o = Command::new("curl").args(&args).output().unwrap();
        let text = out(&o);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, head.to_string(), body.to_string())
    }
}

/// A process killed when dropped, so a failing assertion leaves nothing running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn command(script: &str) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", script]}]}})
}

/// A pod serving HTTP on 8080 (declared): `/` a page, `/cgi-bin/echo` a 201 with an
/// `X-Backend` header describing the request it got (method, URI, its headers, its body).
const ECHO_SERVER: &str = r#"mkdir -p /tmp/www/cgi-bin
echo 'echo-pod page' > /tmp/www/index.html
cat > /tmp/www/cgi-bin/echo <<'EOF'
#!/bin/sh
body=$(head -c "${CONTENT_LENGTH:-0}")
printf 'HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Backend: echo\r\n\r\n'
echo "method=$REQUEST_METHOD"
echo "uri=$REQUEST_URI"
env | grep '^HTTP_' | sort
echo "body=$body"
EOF
chmod +x /tmp/www/cgi-bin/echo
exec httpd -f -p 8080 -h /tmp/www"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_subresources_that_api_resources_hides() {
    let cp = ControlPlane::start().unwrap();
    let o = cp.apiserver.kubectl("1.33", &["get", "--raw", "/api/v1"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let resources = list["resources"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| resources.iter().find(|r| r["name"] == name).cloned().unwrap_or(Value::Null);
    for (name, kind, verbs) in [
        ("pods/exec", "PodExecOptions", json!(["create", "get"])),
        ("pods/attach", "PodAttachOptions", json!(["create", "get"])),
        ("pods/portforward", "PodPortForwardOptions", json!(["create", "get"])),
        ("pods/log", "Pod", json!(["get"])),
        ("pods/proxy", "PodProxyOptions", json!(["create", "delete", "get", "patch", "update"])),
        ("services/proxy", "ServiceProxyOptions", json!(["create", "delete", "get", "patch", "update"])),
        ("nodes/proxy", "NodeProxyOptions", json!(["create", "delete", "get", "patch", "update"])),
        ("pods/binding", "Binding", json!(["create"])),
        ("pods/status", "Pod", json!(["get", "patch", "update"])),
        ("namespaces/finalize", "Namespace", json!(["update"])),
    ] {
        let r = find(name);
        assert_eq!(r["kind"], kind, "{name}: {r}");
        assert_eq!(r["verbs"], verbs, "{name}: {r}");
        assert_eq!(r["namespaced"], json!(!name.starts_with("n")), "{name}: {r}");
        assert_eq!(r["singularName"], "", "{name}: {r}");
    }
    let eviction = find("pods/eviction");
    assert_eq!(
        (&eviction["group"], &eviction["version"], &eviction["kind"]),
        (&json!("policy"), &json!("v1"), &json!("Eviction"))
    );
    let token = find("serviceaccounts/token");
    assert_eq!((&token["group"], &token["kind"]), (&json!("authentication.k8s.io"), &json!("TokenRequest")));
    let scale = find("replicationcontrollers/scale");
    assert_eq!((&scale["group"], &scale["kind"]), (&json!("autoscaling"), &json!("Scale")));
    // In name order, as upstream lists them.
    let names: Vec<&str> = resources.iter().filter_map(|r| r["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // Aggregated discovery: the same subresources under their resource.
    let (code, body, _) = cp
        .apiserver
        .request_with_headers(
            "GET",
            "/api",
            &["Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"],
        )
        .unwrap();
    assert_eq!(code, 200);
    let agg: Value = serde_json::from_slice(&body).unwrap();
    let core = &agg["items"][0]["versions"][0]["resources"];
    let pods = core.as_array().unwrap().iter().find(|r| r["resource"] == "pods").unwrap();
    let subs = pods["subresources"].as_array().unwrap();
    let exec = subs.iter().find(|s| s["subresource"] == "exec").unwrap();
    assert_eq!(exec["responseKind"], json!({"group": "", "version": "v1", "kind": "PodExecOptions"}));
    assert_eq!(exec["verbs"], json!(["create", "get"]));
    for s in ["attach", "binding", "eviction", "log", "portforward", "proxy", "status"] {
        assert!(subs.iter().any(|x| x["subresource"] == s), "pods lacks {s}: {subs:?}");
    }
    let services = core.as_array().unwrap().iter().find(|r| r["resource"] == "services").unwrap();
    assert!(services["subresources"].as_array().unwrap().iter().any(|x| x["subresource"] == "proxy"));

    // kubectl api-resources shows the resources only, over either discovery.
    for v in KUBECTL_VERSIONS {
        let o = cp.apiserver.kubectl(v, &["api-resources", "--api-group="]);
        assert!(o.status.success(), "{}", err(&o));
        let first: Vec<String> =
            out(&o).lines().skip(1).filter_map(|l| l.split_whitespace().next().map(String::from)).collect();
        assert!(first.iter().any(|n| n == "pods") && first.iter().any(|n| n == "services"), "{}", out(&o));
        assert!(first.iter().all(|n| !n.contains('/')), "{}", out(&o));
        // Its verbs column comes from the same list.
        let o = cp.apiserver.kubectl(v, &["api-resources", "--api-group=", "-o", "wide"]);
        let pods = out(&o).lines().find(|l| l.starts_with("pods ")).unwrap_or_default().to_string();
        assert!(pods.contains("create") && pods.contains("watch"), "{}", out(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_reach_pods_services_and_nodes() {
    let n = Node1::start().await;
    let mut echo = command(ECHO_SERVER);
    echo["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    n.pod("echo", echo).await;
    // A host-network pod: its address is the node's (127.0.0.1), where the test serves HTTPS.
    let mut hostnet = command("sleep 3600");
    hostnet["spec"]["hostNetwork"] = json!(true);
    n.pod("hostnet", hostnet).await;
    let status = n.running("echo").await;
    let ip = status["podIP"].as_str().unwrap().to_string();
    let host_status = n.running("hostnet").await;
    assert_eq!(host_status["podIP"], "127.0.0.1");
    let ready = eventually(WAIT, || {
        let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/namespaces/default/pods/echo:8080/proxy/"]);
        out(&o).contains("echo-pod page").then_some(())
    });
    assert!(ready.is_some(), "{}", n.logs_for_failure());

    // pods/proxy: the path and query reach the pod; the declared port is the default.
    for v in KUBECTL_VERSIONS {
        let o = n.kubectl(
            v,
            &["get", "--raw", "/api/v1/namespaces/default/pods/echo:8080/proxy/cgi-bin/echo/some/path?q=1"],
        );
        assert!(out(&o).contains("method=GET\nuri=/cgi-bin/echo/some/path?q=1\n"), "{v}: {}{}", out(&o), err(&o));
        let o = n.kubectl(v, &["get", "--raw", "/api/v1/namespaces/default/pods/echo/proxy/"]);
        assert_eq!(out(&o), "echo-pod page\n", "{}", err(&o));
        let o = n.kubectl(v, &["get", "--raw", "/api/v1/namespaces/default/pods/http:echo:8080/proxy/"]);
        assert_eq!(out(&o), "echo-pod page\n", "{}", err(&o));
    }
    // Method, headers and body go through; the backend's status and headers come back;
    // the credentials the apiserver consumed do not reach the pod.
    let (code, head, body) = n.curl(
        "POST",
        "/api/v1/namespaces/default/pods/echo:8080/proxy/cgi-bin/echo?x=y",
        &["Authorization: Bearer admin", "X-Test: abc", "Content-Type: text/plain"],
        Some("hello body"),
    );
    assert_eq!(code, 201, "{head}{body}");
    assert!(head.to_lowercase().contains("x-backend: echo"), "{head}");
    assert!(body.contains("method=POST\n") && body.contains("uri=/cgi-bin/echo?x=y\n"), "{body}");
    assert!(body.contains("HTTP_X_TEST=abc\n") && body.contains("body=hello body"), "{body}");
    assert!(!body.contains("HTTP_AUTHORIZATION"), "the bearer token reached the pod: {body}");
    // `.../proxy` without the slash: upstream's redirect to `.../proxy/`, the query kept
    // (kubectl follows it).
    let (code, head, _) =
        n.curl("GET", "/api/v1/namespaces/default/pods/echo/proxy?a=b", &["Authorization: Bearer admin"], None);
    assert_eq!(code, 301, "{head}");
    assert!(head.to_lowercase().contains("location: /api/v1/namespaces/default/pods/echo/proxy/?a=b\r\n"), "{head}");
    let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/namespaces/default/pods/echo/proxy"]);
    assert_eq!(out(&o), "echo-pod page\n", "{}", err(&o));
    // The backend's own 404, not the apiserver's.
    let (code, _, body) =
        n.curl("GET", "/api/v1/namespaces/default/pods/echo:8080/proxy/nope", &["Authorization: Bearer admin"], None);
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("\"kind\":\"Status\""), "{body}");
    // Nothing listens there: 503 from the apiserver.
    let (code, _, body) =
        n.curl("GET", "/api/v1/namespaces/default/pods/echo:9999/proxy/", &["Authorization: Bearer admin"], None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("error trying to reach pod"), "{body}");
    // A loopback pod address is not proxied to (upstream: "address not allowed").
    let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/namespaces/default/pods/hostnet:80/proxy/"]);
    assert!(!o.status.success() && err(&o).contains("address not allowed"), "{}{}", out(&o), err(&o));

    // services/proxy: a ready endpoint of the Service's EndpointSlices, by port number or name.
    n.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "closed", "port": 81, "targetPort": 9999}]}}));
    let endpoint = |addr: &str, pod: &str, ready: bool| {
        json!({"addresses": [addr], "conditions": {"ready": ready},
               "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}})
    };
    let slice = |name: &str, svc: &str, endpoints: Value, ports: Value| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
               "addressType": "IPv4", "endpoints": endpoints, "ports": ports})
    };
    n.apply(&slice(
        "web-1",
        "web",
        json!([endpoint(&ip, "echo", true)]),
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "closed", "port": 9999, "protocol": "TCP"}]),
    ));
    // An endpoint not ready, and one whose address is not its pod's, are never chosen.
    n.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}));
    n.apply(&slice(
        "other-1",
        "other",
        json!([endpoint(&ip, "echo", false), endpoint("127.0.0.1", "echo", true), {"addresses": ["127.0.0.1"]}]),
        json!([{"port": 8080, "protocol": "TCP"}]),
    ));
    n.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lonely"},
        "spec": {"ports": [{"port": 80}]}}));
    let svc = "/api/v1/namespaces/default/services";
    let served = eventually(WAIT, || {
        out(&n.kubectl("1.33", &["get", "--raw", &format!("{svc}/web:80/proxy/")]))
            .contains("echo-pod page")
            .then_some(())
    });
    assert!(served.is_some(), "{}", n.logs_for_failure());
    for v in KUBECTL_VERSIONS {
        for id in ["web:80", "web:http", "http:web:80", "http:web:http"] {
            let o = n.kubectl(v, &["get", "--raw", &format!("{svc}/{id}/proxy/cgi-bin/echo/a/b?q=2")]);
            assert!(out(&o).contains("uri=/cgi-bin/echo/a/b?q=2\n"), "{v} {id}: {}{}", out(&o), err(&o));
        }
        let o = n.kubectl(v, &["get", "--raw", &format!("{svc}/web:82/proxy/")]);
        assert!(err(&o).contains("no service port 82 found for service \"web\""), "{}", err(&o));
        for id in ["lonely", "other:80"] {
            let o = n.kubectl(v, &["get", "--raw", &format!("{svc}/{id}/proxy/")]);
            let name = id.split(':').next().unwrap_or(id);
            assert!(err(&o).contains(&format!("no endpoints available for service \"{name}\"")), "{id}: {}", err(&o));
        }
        let o = n.kubectl(v, &["get", "--raw", &format!("{svc}/nope:80/proxy/")]);
        assert!(err(&o).contains("services \"nope\" not found"), "{}", err(&o));
    }
    let (code, head, body) = n.curl(
        "PUT",
        &format!("{svc}/web:http/proxy/cgi-bin/echo"),
        &["Authorization: Bearer admin", "Impersonate-User: alice", "X-Test: put"],
        Some("put body"),
    );
    // alice cannot update services/proxy: the impersonated request is refused.
    assert_eq!(code, 403, "{head}{body}");
    let (code, head, body) = n.curl(
        "PUT",
        &format!("{svc}/web:http/proxy/cgi-bin/echo"),
        &["Authorization: Bearer admin", "X-Test: put"],
        Some("put body"),
    );
    assert_eq!(code, 201, "{head}{body}");
    // (busybox's httpd hands a CGI the body of a POST only: the PUT's is not checked here.)
    assert!(body.contains("method=PUT\n") && body.contains("HTTP_X_TEST=put\n"), "{body}");
    // The Service port whose endpoint port nobody listens on: 503.
    let (code, _, body) = n.curl("GET", &format!("{svc}/web:81/proxy/"), &["Authorization: Bearer admin"], None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("error trying to reach service"), "{body}");

    // https: the scheme in the name makes the apiserver speak TLS to the endpoint.
    let tls_dir = tempfile::tempdir().unwrap();
    let key = tls_dir.path().join("key.pem");
    let cert = tls_dir.path().join("cert.pem");
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=secure"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    std::fs::write(tls_dir.path().join("hello.txt"), "hello over tls\n").unwrap();
    let tls_port = free_port();
    let s_server = Reaped(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{tls_port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(tls_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    n.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "secure"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": tls_port}]}}));
    n.apply(&slice(
        "secure-1",
        "secure",
        json!([endpoint("127.0.0.1", "hostnet", true)]),
        json!([{"name": "https", "port": tls_port, "protocol": "TCP"}]),
    ));
    let tls = eventually(WAIT, || {
        let o = n.kubectl("1.33", &["get", "--raw", &format!("{svc}/https:secure:443/proxy/hello.txt")]);
        (out(&o) == "hello over tls\n").then_some(())
    });
    // Without the scheme it is plain HTTP, which the TLS server does not answer with the file.
    let plain = n.kubectl("1.33", &["get", "--raw", &format!("{svc}/secure:443/proxy/hello.txt")]);
    drop(s_server);
    assert!(!out(&plain).contains("hello over tls"), "{}", out(&plain));
    assert!(tls.is_some(), "{}", n.logs_for_failure());

    // nodes/proxy: the kubelet's own port (TLS, the apiserver's client certificate), or another
    // port of the node in plain HTTP.
    let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/nodes/n1/proxy/pods"]);
    let pods: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(pods["kind"], "PodList", "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("\"echo\""), "{}", out(&o));
    let o = n.kubectl("1.32", &["get", "--raw", &format!("/api/v1/nodes/n1:{}/proxy/healthz", n.healthz_port)]);
    assert_eq!(out(&o), "ok", "{}", err(&o));

    // RBAC: `get` on services is not `get` on services/proxy, nor is `get` on it `create`.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "proxy"},
        "rules": [{"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["get", "list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]});
    n.apply(&role);
    n.apply(&binding);
    for v in KUBECTL_VERSIONS {
        let o = n.cp.apiserver.kubectl_as(v, "alice-token", &["get", "--raw", &format!("{svc}/web:80/proxy/")]);
        assert!(err(&o).contains("cannot get resource \"services/proxy\""), "{}", err(&o));
        let o = n.cp.apiserver.kubectl_as(
            v,
            "alice-token",
            &["get", "--raw", "/api/v1/namespaces/default/pods/echo/proxy/"],
        );
        assert!(err(&o).contains("cannot get resource \"pods/proxy\""), "{}", err(&o));
    }
    let mut role = role.clone();
    role["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]}));
    n.apply(&role);
    let allowed = eventually(Duration::from_secs(10), || {
        let o = n.cp.apiserver.kubectl_as("1.33", "alice-token", &["get", "--raw", &format!("{svc}/web:80/proxy/")]);
        (out(&o) == "echo-pod page\n").then_some(())
    });
    assert!(allowed.is_some());
    let (code, _, body) =
        n.curl("POST", &format!("{svc}/web:80/proxy/cgi-bin/echo"), &["Authorization: Bearer alice-token"], Some("x"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot create resource \\\"services/proxy\\\""), "{body}");
}

/// Runs `argv` in a new pseudo-terminal of 30x100 until `stty size` prints that, then
/// resizes the terminal to 40x120 (the kernel signals SIGWINCH to kubectl), waits for
/// `40 120`, and types Ctrl-C. Prints what the terminal showed and `EXIT <code>`.
const PTY_DRIVER: &str = r#"
import os, pty, select, struct, sys, termios, fcntl, time
def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    winsize(0, 30, 100)
    os.execvp(sys.argv[1], sys.argv[1:])
out = b''
def read_until(needle, limit):
    global out
    end = time.time() + limit
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return False
        if not chunk:
            return False
        out += chunk
        if needle in out:
            return True
    return False
if read_until(b'30 100', 40):
    out += b'\n[resized]\n'
    winsize(fd, 40, 120)
    read_until(b'40 120', 40)
os.write(fd, b'\x03')
read_until(b'\x00never', 20)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
print('\nEXIT', os.waitstatus_to_exitcode(status))
"#;

fn sha(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, data).unwrap();
    let o = Command::new("sha256sum").arg(&p).output().unwrap();
    out(&o).split_whitespace().next().unwrap_or_default().to_string()
}

const SPDY_EXEC: (&str, &str) = ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
const SPDY_PORT_FORWARD: (&str, &str) = ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_attach_and_the_spdy_fallback() {
    let n = Node1::start().await;
    n.pod("sh", command("sleep 3600")).await;
    for name in ["attach-133", "attach-132", "attach-spdy"] {
        let mut attach = command("while read l; do echo got $l; done; echo stdin closed");
        attach["spec"]["containers"][0]["stdin"] = json!(true);
        attach["spec"]["containers"][0]["stdinOnce"] = json!(true);
        attach["spec"]["restartPolicy"] = json!("Never");
        n.pod(name, attach).await;
    }
    n.running("sh").await;
    let dir = tempfile::tempdir().unwrap();
    let driver = dir.path().join("term_driver.py");
    std::fs::write(&driver, PTY_DRIVER).unwrap();

    // exec -it in a terminal: the remote tty has the local size, and follows a resize; Ctrl-C
    // reaches the remote shell. Over the WebSocket and over SPDY.
    for v in KUBECTL_VERSIONS {
        for env in [None, Some(SPDY_EXEC)] {
            let mut cmd = Command::new(PYTHON);
            cmd.arg(&driver)
                .arg(kubectl_path(v))
                .arg(format!("--kubeconfig={}", n.cp.apiserver.kubeconfig.display()))
                .args(["exec", "-it", "sh", "--", "sh", "-c", "while true; do stty size; sleep 0.2; done"])
                .env("HOME", n.cp.apiserver.dir.path())
                .env("TERM", "xterm");
            if let Some((k, val)) = env {
                cmd.env(k, val);
            }
            let o = cmd.output().unwrap();
            let shown = out(&o);
            let after = shown.split_once("[resized]").map(|(_, a)| a).unwrap_or("");
            assert!(shown.contains("30 100"), "kubectl {v} {env:?}: {shown}{}\n{}", err(&o), n.logs_for_failure());
            assert!(after.contains("40 120"), "kubectl {v} {env:?}: no resize: {shown}{}", err(&o));
            assert!(shown.contains("command terminated with exit code 130"), "{v} {env:?}: {shown}");
            assert!(shown.trim_end().ends_with("EXIT 130"), "{v} {env:?}: {shown}");
        }
    }

    // attach, both versions and over SPDY: the container's own stdin and output.
    for (v, pod, env) in
        [("1.33", "attach-133", None), ("1.32", "attach-132", None), ("1.33", "attach-spdy", Some(SPDY_EXEC))]
    {
        n.running(pod).await;
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let o = n.kubectl_env(v, &env, &["attach", "-i", pod], Some(b"hello\nworld\n"));
        assert!(
            out(&o).contains("got hello\ngot world\n"),
            "{v} {pod}: {}{}\n{}",
            out(&o),
            err(&o),
            n.logs_for_failure()
        );
    }

    // exec over SPDY: output, error and exit code; stdin; and it is SPDY that carried it.
    for v in KUBECTL_VERSIONS {
        let o =
            n.kubectl_env(v, &[SPDY_EXEC], &["exec", "sh", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
        assert_eq!(out(&o), "out\n", "kubectl {v}: {}\n{}", err(&o), n.logs_for_failure());
        assert!(err(&o).contains("err\n") && err(&o).contains("command terminated with exit code 3"), "{}", err(&o));
        assert_eq!(o.status.code(), Some(3));
        let o = n.kubectl_env(
            v,
            &[SPDY_EXEC],
            &["exec", "-i", "sh", "--", "sh", "-c", "cat; echo eof"],
            Some(b"via spdy\n"),
        );
        assert_eq!(out(&o), "via spdy\neof\n", "{}", err(&o));
        let o = n.kubectl_env(v, &[SPDY_EXEC], &["-v=7", "exec", "sh", "--", "true"], None);
        assert!(o.status.success(), "{}", err(&o));
        assert!(!err(&o).contains("subprotocol is v5.channel.k8s.io"), "{}", err(&o));
        assert!(err(&o).contains("POST") && err(&o).contains("101 Switching Protocols"), "{}", err(&o));
    }

    // kubectl cp over SPDY, both ways, a 1 MiB file identical.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2246822519) >> 23) as u8).collect();
    let src = dir.path().join("in.bin");
    std::fs::write(&src, &data).unwrap();
    for v in KUBECTL_VERSIONS {
        let o = n.kubectl_env(v, &[SPDY_EXEC], &["cp", &src.display().to_string(), "sh:/tmp/in.bin"], None);
        assert!(o.status.success(), "cp in with {v}: {}{}", out(&o), err(&o));
        let o = n.kubectl(v, &["exec", "sh", "--", "sha256sum", "/tmp/in.bin"]);
        assert!(out(&o).starts_with(&sha(&data)), "{}{}", out(&o), err(&o));
        let back = dir.path().join(format!("out-{v}.bin"));
        let o = n.kubectl_env(v, &[SPDY_EXEC], &["cp", "sh:/tmp/in.bin", &back.display().to_string()], None);
        assert!(o.status.success(), "cp out with {v}: {}{}", out(&o), err(&o));
        assert!(std::fs::read(&back).unwrap() == data, "the copy differs");
    }
}

/// Ten downloads at once through one `kubectl port-forward`, each checked whole.
fn parallel_downloads(port: u16, want: &str, dir: &Path) -> Vec<String> {
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let file = dir.join(format!("dl-{port}-{i}"));
            std::thread::spawn(move || {
                let o = Command::new("curl")
                    .args(["-s", "--max-time", "60", "-o"])
                    .arg(&file)
                    .arg(format!("http://127.0.0.1:{port}/big"))
                    .output();
                let got = std::fs::read(&file).map(|d| sha(&d)).unwrap_or_default();
                let _ = std::fs::remove_file(&file);
                (got, o.map(|o| err(&o)).unwrap_or_default())
            })
        })
        .collect();
    handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|(got, _)| got != want)
        .map(|(got, e)| format!("{got} {e}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_many_connections_over_websocket_and_spdy() {
    let n = Node1::start().await;
    n.pod("web", command("head -c 2097152 /dev/urandom > /www/big && exec httpd -f -p 80 -h /www")).await;
    n.running("web").await;
    let sum = eventually(WAIT, || {
        let o = n.kubectl("1.33", &["exec", "web", "--", "sha256sum", "/www/big"]);
        let s = out(&o).split_whitespace().next().map(String::from)?;
        (s.len() == 64).then_some(s)
    })
    .expect("the pod never wrote its file");
    // `svc/web` is resolved by kubectl to a pod of the selector and the Service's target port.
    n.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": 80}]}}));
    let dir = tempfile::tempdir().unwrap();
    for v in KUBECTL_VERSIONS {
        for (env, target, remote) in [
            (None, "pod/web", 80),
            (Some(SPDY_PORT_FORWARD), "pod/web", 80),
            (None, "svc/web", 8080),
            (Some(SPDY_PORT_FORWARD), "svc/web", 8080),
        ] {
            let port = free_port();
            let mut cmd = Command::new(kubectl_path(v));
            cmd.arg(format!("--kubeconfig={}", n.cp.apiserver.kubeconfig.display()))
                .args(["-v=6", "port-forward", target, &format!("{port}:{remote}")])
                .env("HOME", n.cp.apiserver.dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some((k, val)) = env {
                cmd.env(k, val);
            }
            let mut child = Reaped(cmd.spawn().unwrap());
            let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
            let ready = lines.next().and_then(|l| l.ok()).unwrap_or_default();
            assert!(ready.contains("Forwarding from"), "{ready}");
            let page = Command::new("curl")
                .args(["-s", "--max-time", "10", &format!("http://127.0.0.1:{port}/")])
                .output()
                .unwrap();
            assert!(out(&page).contains(TEST_PAGE_MARKER), "{v} {env:?}: {}{}", out(&page), err(&page));
            let start = Instant::now();
            let failures = parallel_downloads(port, &sum, dir.path());
            let took = start.elapsed();
            let _ = child.0.kill();
            let _ = child.0.wait();
            let mut log = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut log);
            }
            assert!(failures.is_empty(), "kubectl {v} {env:?}: {failures:?}\n{log}\n{}", n.logs_for_failure());
            eprintln!("kubectl {v} {env:?} {target}: 10 x 2 MiB through one port-forward in {took:?}");
            // Which protocol carried it: a WebSocket GET, or kubectl's SPDY POST.
            let upgrade = log.lines().find(|l| l.contains("/portforward")).unwrap_or_default().to_string();
            match env {
                None => assert!(upgrade.contains("GET"), "{log}"),
                Some(_) => assert!(upgrade.contains("POST"), "{log}"),
            }
        }
    }
}

/// A WebSocket exec as a browser makes it: the token in a subprotocol, no Authorization.
/// Prints the status line, the chosen subprotocol, then each message as `CH<n> <text>`.
const WS_CLIENT: &str = r#"
import base64, os, socket, ssl, struct, sys
host, port, path, token, protocols = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
if token.startswith('header:'):
    auth = 'Authorization: Bearer %s\r\n' % token[len('header:'):]
else:
    auth = ''
    protocols += ', base64url.bearer.authorization.k8s.io.' + base64.urlsafe_b64encode(token.encode()).decode().rstrip('=')
s.sendall(('GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
           'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s'
           'Sec-WebSocket-Protocol: %s\r\n\r\n' % (path, host, port, key, auth, protocols)).encode())
buf = b''
while b'\r\n\r\n' not in buf:
    c = s.recv(65536)
    if not c:
        break
    buf += c
head, _, buf = buf.partition(b'\r\n\r\n')
lines = head.decode().split('\r\n')
print(lines[0])
for l in lines[1:]:
    if l.lower().startswith('sec-websocket-protocol'):
        print(l)
if ' 101 ' not in lines[0]:
    sys.exit(0)
def exact(n):
    global buf
    while len(buf) < n:
        c = s.recv(65536)
        if not c:
            raise SystemExit('EOF')
        buf += c
    d, buf = buf[:n], buf[n:]
    return d
while True:
    h = exact(2)
    op, ln = h[0] & 15, h[1] & 127
    if ln == 126:
        ln = struct.unpack('>H', exact(2))[0]
    elif ln == 127:
        ln = struct.unpack('>Q', exact(8))[0]
    p = exact(ln)
    if op == 8:
        print('CLOSE')
        break
    if op == 2 and p:
        print('CH%d %s' % (p[0], p[1:].decode(errors='replace')))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_bearer_subprotocol_and_an_upgrade_through_nodes_proxy() {
    let n = Node1::start().await;
    n.pod("sh", command("sleep 3600")).await;
    n.running("sh").await;
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("ws.py");
    std::fs::write(&client, WS_CLIENT).unwrap();
    let url = n.cp.apiserver.url();
    let port = url.rsplit(':').next().unwrap_or_default().trim_end_matches('/').to_string();
    let path = "/api/v1/namespaces/default/pods/sh/exec?command=echo&command=hi&stdout=true&stderr=true";
    let ws = |path: &str, token: &str, protocols: &str| {
        let o = Command::new(PYTHON).arg(&client).args(["127.0.0.1", &port, path, token, protocols]).output().unwrap();
        format!("{}{}", out(&o), err(&o))
    };
    let run = |token: &str| ws(path, token, "v5.channel.k8s.io");
    let got = eventually(WAIT, || {
        let o = run("admin");
        o.contains("CH1 hi").then_some(o)
    });
    let got = got.unwrap_or_else(|| panic!("{}\n{}", run("admin"), n.logs_for_failure()));
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    // The token is not echoed back: the channel protocol is the one chosen.
    assert!(got.to_lowercase().contains("sec-websocket-protocol: v5.channel.k8s.io\n"), "{got}");
    assert!(got.contains("CH3 {") && got.contains("\"status\":\"Success\""), "{got}");
    // A wrong token is no one; a real user without the verb is refused.
    let o = run("not-a-token");
    assert!(o.starts_with("HTTP/1.1 401"), "{o}");
    let o = run("alice-token");
    assert!(o.starts_with("HTTP/1.1 403"), "{o}");

    // The older WebSocket channel protocol (no v5 nor v4 offered) is not translated: the
    // upgrade goes through to the kubelet and the runtime, which speak it.
    let old = "/api/v1/namespaces/default/pods/sh/exec?command=echo&command=old-protocol&stdout=true";
    let o = ws(old, "header:admin", "channel.k8s.io");
    assert!(o.starts_with("HTTP/1.1 101"), "{o}\n{}", n.logs_for_failure());
    assert!(o.to_lowercase().contains("sec-websocket-protocol: channel.k8s.io\n"), "{o}");
    assert!(o.contains("CH1 old-protocol"), "{o}");
    // An upgrade through nodes/proxy goes to the kubelet as it is: here the kubelet's own exec
    // endpoint, whose runtime speaks the older channel protocol (v4).
    let kubelet_exec = "/api/v1/nodes/n1/proxy/exec/default/sh/c?command=echo&command=via-node-proxy&output=1&error=1";
    let o = ws(kubelet_exec, "header:admin", "v4.channel.k8s.io");
    assert!(o.starts_with("HTTP/1.1 101"), "{o}\n{}", n.logs_for_failure());
    assert!(o.to_lowercase().contains("sec-websocket-protocol: v4.channel.k8s.io\n"), "{o}");
    assert!(o.contains("CH1 via-node-proxy"), "{o}");

    // `get` on nodes/proxy reads through it, but an upgrade (an exec on the kubelet with this
    // server's credentials) needs `create`.
    let reader = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "node-proxy-reader"},
        "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "alice-node-proxy-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-proxy-reader"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]});
    n.apply(&reader);
    n.apply(&binding);
    let healthz = format!("/api/v1/nodes/n1:{}/proxy/healthz", n.healthz_port);
    let read = eventually(WAIT, || {
        let o = n.cp.apiserver.kubectl_as("1.33", "alice-token", &["get", "--raw", &healthz]);
        (out(&o) == "ok").then_some(())
    });
    assert!(read.is_some(), "alice cannot read through nodes/proxy");
    let o = ws(kubelet_exec, "alice-token", "v4.channel.k8s.io");
    assert!(o.starts_with("HTTP/1.1 403") && !o.contains("via-node-proxy"), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatty_logs_rotate_and_idle_streams_time_out() {
    let n = Node1::start_with(&[
        "--container-log-max-size=16Ki",
        "--container-log-max-files=2",
        "--streaming-connection-idle-timeout=3s",
    ])
    .await;
    // About 50 KiB/s of log lines.
    let chatty = "i=0; while true; do j=0; while [ $j -lt 50 ]; do i=$((i+1)); j=$((j+1)); \
                  echo \"line $i ................................................................\"; done; sleep 0.1; done";
    n.pod("chatty", command(chatty)).await;
    n.pod("sh", command("sleep 3600")).await;
    n.running("chatty").await;
    n.running("sh").await;
    let uid = n.pods().get("chatty").await.unwrap().metadata.uid.unwrap_or_default();
    let dir = Path::new("/var/log/pods").join(format!("default_chatty_{uid}")).join("c");
    let files = || -> Vec<(String, u64)> {
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect()
    };

    // Idle streams: the kubelet ends an exec whose stdin stays open but silent, and a
    // port-forward nobody uses, after --streaming-connection-idle-timeout.
    for (v, env) in [("1.33", None), ("1.32", None), ("1.33", Some(SPDY_EXEC))] {
        let mut cmd = Command::new(kubectl_path(v));
        cmd.arg(format!("--kubeconfig={}", n.cp.apiserver.kubeconfig.display()))
            .args(["exec", "-i", "sh", "--", "cat"])
            .env("HOME", n.cp.apiserver.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((k, val)) = env {
            cmd.env(k, val);
        }
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let ended = eventually(Duration::from_secs(30), || child.try_wait().ok().flatten());
        drop(stdin);
        let took = start.elapsed();
        if ended.is_none() {
            let _ = child.kill();
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            ended.is_some(),
            "kubectl {v} {env:?}: an idle exec was never ended\n{}\n{}",
            err(&o),
            n.logs_for_failure()
        );
        assert!(took >= Duration::from_secs(3), "kubectl {v} {env:?}: ended after {took:?}: {}", err(&o));
    }
    for (v, env) in [("1.33", None), ("1.32", Some(SPDY_PORT_FORWARD))] {
        let mut cmd = Command::new(kubectl_path(v));
        cmd.arg(format!("--kubeconfig={}", n.cp.apiserver.kubeconfig.display()))
            .args(["port-forward", "pod/sh", &format!("{}:80", free_port())])
            .env("HOME", n.cp.apiserver.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((k, val)) = env {
            cmd.env(k, val);
        }
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let ended = eventually(Duration::from_secs(30), || child.try_wait().ok().flatten());
        let took = start.elapsed();
        if ended.is_none() {
            let _ = child.kill();
        }
        let o = child.wait_with_output().unwrap();
        assert!(ended.is_some(), "kubectl {v} {env:?}: an idle port-forward was never ended\n{}", err(&o));
        assert!(
            took >= Duration::from_secs(3) && err(&o).contains("lost connection to pod"),
            "{v} {env:?} after {took:?}: {}",
            err(&o)
        );
    }
    // An active stream is not idle: a command that prints every second for 5 s runs to its end.
    let o = n.kubectl("1.33", &["exec", "sh", "--", "sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 1; done"]);
    assert_eq!(out(&o), "1\n2\n3\n4\n5\n", "{}", err(&o));

    // Rotation: the live log and at most one rotated file (max-files 2), old ones removed,
    // and kubectl logs still follows the live one.
    let mut rotated_names = std::collections::BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(45) && rotated_names.len() < 3 {
        let now = files();
        assert!(now.len() <= 2, "more files than --container-log-max-files: {now:?}");
        rotated_names.extend(now.iter().filter(|(f, _)| f.starts_with("0.log.")).map(|(f, _)| f.clone()));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        rotated_names.len() >= 2,
        "the log was not rotated (twice) in time: {:?} {:?}\n{}",
        files(),
        rotated_names,
        n.logs_for_failure()
    );
    let o = n.kubectl("1.33", &["logs", "chatty", "--tail=1"]);
    assert!(out(&o).starts_with("line ") && out(&o).lines().count() == 1, "{}{}", out(&o), err(&o));
    let last: u64 = out(&o).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(last > 1000, "{}", out(&o));
    let o = n.kubectl("1.33", &["delete", "pod", "chatty", "--wait=false"]);
    assert!(o.status.success(), "{}", err(&o));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
}
