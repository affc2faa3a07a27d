//! `kubectl logs`, `exec`, `attach`, `cp` and `port-forward` through the
//! apiserver to a real kubelet on a private containerd, with stock kubectl
//! 1.33 and 1.32 (WebSocket v5 for exec/attach, the SPDY tunnel for
//! port-forward), and the RBAC verbs that guard them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::containerd::{TEST_IMAGE, TEST_PAGE_MARKER};
use integration::node::{merge, SingleNode, WAIT};
use integration::{eventually, free_port, kubectl_path, KUBECTL_VERSIONS};
use serde_json::{json, Value};

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
        Node1(SingleNode::start(&[]).await)
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

    async fn running(&self, name: &str) {
        self.until(name, "Running", |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).await;
    }

    fn kubectl(&self, version: &str, args: &[&str]) -> std::process::Output {
        self.cp.apiserver.kubectl(version, args)
    }

    fn kubectl_cmd(&self, version: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_path(version));
        cmd.arg(format!("--kubeconfig={}", self.cp.apiserver.kubeconfig.display()))
            .args(args)
            .env("HOME", self.cp.apiserver.dir.path());
        cmd
    }
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn command(script: &str) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", script]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_with_every_flag() {
    let n = Node1::start().await;
    n.pod(
        "logger",
        command("for i in 1 2 3 4 5 6 7 8 9 10; do echo start $i; done; sleep 0.5; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"),
    )
    .await;
    n.pod(
        "two",
        json!({"spec": {"containers": [
            {"name": "a", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "echo from-a; sleep 3600"]},
            {"name": "b", "image": TEST_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "echo from-b; sleep 3600"]}]}}),
    )
    .await;
    // Counts its runs in an emptyDir: the first exits, the second stays.
    let mut crashy = command("n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo attempt $n; if [ $n -ge 2 ]; then sleep 3600; fi; exit 1");
    crashy["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    crashy["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    n.pod("crashy", crashy).await;
    n.running("logger").await;
    n.running("two").await;
    // The tail checks below need three ticks after the stderr line: wait for them rather than
    // for a fixed time (a loaded machine starts the container late).
    let ticked = eventually(WAIT, || out(&n.kubectl("1.33", &["logs", "logger"])).contains("tick 4\n").then_some(()));
    assert!(ticked.is_some(), "{}", n.logs_for_failure());
    let ticked_at = Instant::now();
    for v in KUBECTL_VERSIONS {
        let o = n.kubectl(v, &["logs", "logger"]);
        let text = out(&o);
        assert!(o.status.success(), "kubectl {v} logs: {}\n{}", err(&o), n.logs_for_failure());
        // stdout and stderr are separate pipes (their relative order is the runtime's), so the
        // script writes to stderr only after a pause.
        let stdout_lines: Vec<&str> = text.lines().filter(|l| *l != "oops").collect();
        assert!(stdout_lines.starts_with(&["start 1", "start 2"]) && text.contains("start 10\n"), "{text}");
        assert!(text.lines().any(|l| l == "oops") && text.contains("tick 1\n"), "{text}");

        let o = n.kubectl(v, &["logs", "logger", "--tail=3"]);
        assert_eq!(out(&o).lines().count(), 3, "{}", out(&o));
        assert!(out(&o).lines().all(|l| l.starts_with("tick ")), "{}", out(&o));

        let o = n.kubectl(v, &["logs", "logger", "--tail=1", "--timestamps"]);
        let line = out(&o);
        let (ts, rest) = line.trim_end().split_once(' ').unwrap_or_default();
        assert!(ts.parse::<jiff_like::Ts>().is_ok() && rest.starts_with("tick "), "{line}");

        let o = n.kubectl(v, &["logs", "logger", "--limit-bytes=9"]);
        assert_eq!(out(&o), "start 1\ns");

        let o = n.kubectl(v, &["logs", "logger", "--since=1h", "--tail=-1"]);
        assert!(out(&o).starts_with("start 1\n"), "{}", out(&o));
        // The start lines came before "tick 4" was seen; once 3 s have passed, the last 2 s
        // hold ticks only.
        if let Some(rest) = Duration::from_secs(3).checked_sub(ticked_at.elapsed()) {
            std::thread::sleep(rest);
        }
        let o = n.kubectl(v, &["logs", "logger", "--since=2s"]);
        let recent = out(&o);
        assert!(o.status.success() && !recent.contains("start ") && recent.contains("tick "), "{recent}{}", err(&o));
        let future = "2099-01-01T00:00:00Z";
        let o = n.kubectl(v, &["logs", "logger", &format!("--since-time={future}")]);
        assert!(o.status.success() && out(&o).is_empty(), "{}{}", out(&o), err(&o));

        let o = n.kubectl(v, &["logs", "two", "-c", "b"]);
        assert_eq!(out(&o), "from-b\n", "{}", err(&o));
        let o = n.kubectl(v, &["logs", "two", "--all-containers"]);
        assert!(out(&o).contains("from-a\n") && out(&o).contains("from-b\n"), "{}{}", out(&o), err(&o));
        let o = n.kubectl(v, &["logs", "-l", "app=two", "--all-containers", "--prefix"]);
        assert!(
            out(&o).contains("[pod/two/a] from-a") && out(&o).contains("[pod/two/b] from-b"),
            "{}{}",
            out(&o),
            err(&o)
        );
        let o = n.kubectl(v, &["logs", "two", "-c", "nope"]);
        assert!(!o.status.success() && err(&o).contains("container nope is not valid for pod two"), "{}", err(&o));

        // Follow: new lines arrive while the container runs.
        let mut child = n.kubectl_cmd(v, &["logs", "-f", "--tail=1", "logger"]).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let second = lines.next().unwrap().unwrap();
        let third = lines.next().unwrap().unwrap();
        let num = |l: &str| l.trim_start_matches("tick ").parse::<u64>().unwrap_or(0);
        assert!(num(&second) == num(&first) + 1 && num(&third) == num(&second) + 1, "{first} {second} {third}");
        let _ = child.kill();
        let _ = child.wait();
    }
    // --previous: the first run's log, after the restart.
    n.until("crashy", "a restart", |p| {
        p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c[0].restart_count >= 1)
    })
    .await;
    let got = eventually(WAIT, || {
        let o = n.kubectl("1.33", &["logs", "crashy"]);
        (out(&o) == "attempt 2\n").then_some(())
    });
    assert!(got.is_some(), "{}", out(&n.kubectl("1.33", &["logs", "crashy"])));
    for v in KUBECTL_VERSIONS {
        let o = n.kubectl(v, &["logs", "crashy", "--previous"]);
        assert_eq!(out(&o), "attempt 1\n", "{}", err(&o));
        let o = n.kubectl(v, &["logs", "two", "-c", "a", "--previous"]);
        assert!(!o.status.success() && err(&o).contains("previous terminated container"), "{}", err(&o));
    }
    // -f ends when the container ends.
    let mut short = command("echo one; sleep 3; echo two");
    short["spec"]["restartPolicy"] = json!("Never");
    n.pod("short", short).await;
    n.running("short").await;
    let start = Instant::now();
    let o = n.kubectl("1.33", &["logs", "-f", "short"]);
    assert_eq!(out(&o), "one\ntwo\n", "{}", err(&o));
    assert!(start.elapsed() < Duration::from_secs(20), "follow did not end with the container");
}

fn sha(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, data).unwrap();
    let o = Command::new("sha256sum").arg(&p).output().unwrap();
    out(&o).split_whitespace().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_cp_port_forward_and_rbac() {
    let n = Node1::start().await;
    n.pod("sh", command("sleep 3600")).await;
    let mut attach = command("while read l; do echo got $l; done; echo stdin closed");
    attach["spec"]["containers"][0]["stdin"] = json!(true);
    attach["spec"]["containers"][0]["stdinOnce"] = json!(true);
    attach["spec"]["restartPolicy"] = json!("Never");
    n.pod("attach", attach).await;
    n.pod("web", json!({})).await;
    n.running("sh").await;
    n.running("attach").await;
    n.running("web").await;
    for v in KUBECTL_VERSIONS {
        // Output, error and exit code of a command.
        let o = n.kubectl(v, &["exec", "sh", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(out(&o), "out\n", "kubectl {v}: {}\n{}", err(&o), n.logs_for_failure());
        assert!(err(&o).contains("err\n") && err(&o).contains("command terminated with exit code 3"), "{}", err(&o));
        assert_eq!(o.status.code(), Some(3));
        // Over the WebSocket (v5), not the SPDY fallback.
        let o = n.kubectl(v, &["-v=6", "exec", "sh", "-c", "c", "--", "true"]);
        assert!(o.status.success(), "{}", err(&o));
        assert!(err(&o).contains("The subprotocol is v5.channel.k8s.io"), "{}", err(&o));
        // Standard input goes through and its end reaches the command.
        let o = n.cp.apiserver.kubectl_stdin(
            v,
            &["exec", "-i", "sh", "--", "sh", "-c", "cat; echo eof"],
            Some("hello stdin\n"),
        );
        assert_eq!(
            out(&o),
            "hello stdin\neof\n",
            "{}\npod: {}\n{}",
            err(&o),
            out(&n.kubectl("1.33", &["get", "pod", "sh", "-o", "jsonpath={.status.containerStatuses}"])),
            n.logs_for_failure()
        );
        // A terminal: `script` gives kubectl one.
        let kc = format!(
            "{} --kubeconfig={} exec -it sh -- sh -c 'tty && stty size'",
            kubectl_path(v).display(),
            n.cp.apiserver.kubeconfig.display()
        );
        let o = Command::new("script")
            .args(["-qec", &kc, "/dev/null"])
            .env("HOME", n.cp.apiserver.dir.path())
            .env("COLUMNS", "100")
            .env("LINES", "30")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out(&o).contains("/dev/pts/"), "{}{}", out(&o), err(&o));
    }
    // Attach to the container's own stdin (1.33; the container ends when its stdin closes).
    let o = n.cp.apiserver.kubectl_stdin("1.33", &["attach", "-i", "attach"], Some("hello\n"));
    assert!(out(&o).contains("got hello"), "{}{}", out(&o), err(&o));

    // kubectl cp: a 1 MiB file in and out, identical.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let src = dir.path().join("in.bin");
    std::fs::write(&src, &data).unwrap();
    for v in KUBECTL_VERSIONS {
        let o = n.kubectl(v, &["cp", &src.display().to_string(), "sh:/tmp/in.bin"]);
        assert!(o.status.success(), "cp in with {v}: {}{}", out(&o), err(&o));
        let o = n.kubectl(v, &["exec", "sh", "--", "sha256sum", "/tmp/in.bin"]);
        assert!(out(&o).starts_with(&sha(&data)), "{}{}", out(&o), err(&o));
        let back = dir.path().join(format!("out-{v}.bin"));
        let o = n.kubectl(v, &["cp", "sh:/tmp/in.bin", &back.display().to_string()]);
        assert!(o.status.success(), "cp out with {v}: {}{}", out(&o), err(&o));
        assert!(std::fs::read(&back).unwrap() == data, "the copy differs");
    }

    // port-forward carries an HTTP request.
    for v in KUBECTL_VERSIONS {
        let port = free_port();
        let mut child = n
            .kubectl_cmd(v, &["port-forward", "pod/web", &format!("{port}:80")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(ready.contains("Forwarding from"), "{ready}");
        for _ in 0..3 {
            let page = Command::new("curl")
                .args(["-s", "--max-time", "10", &format!("http://127.0.0.1:{port}/")])
                .output()
                .unwrap();
            assert!(out(&page).contains(TEST_PAGE_MARKER), "{}{}\n{}", out(&page), err(&page), n.logs_for_failure());
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    // nodes/proxy reaches the kubelet's API, pods/proxy the pod's port.
    let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/nodes/n1/proxy/healthz"]);
    assert_eq!(out(&o), "ok", "{}", err(&o));
    let o = n.kubectl("1.33", &["get", "--raw", "/api/v1/namespaces/default/pods/web:80/proxy/"]);
    assert!(out(&o).contains(TEST_PAGE_MARKER), "{}{}", out(&o), err(&o));

    // RBAC: alice may read pods, but not their logs nor exec into them, until granted.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]});
    for obj in [&role, &binding] {
        let o = n.cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&obj.to_string()));
        assert!(o.status.success(), "{}", err(&o));
    }
    for v in KUBECTL_VERSIONS {
        let o = n.cp.apiserver.kubectl_as(v, "alice-token", &["logs", "sh"]);
        assert!(err(&o).contains("cannot get resource \"pods/log\""), "{}", err(&o));
        let o = n.cp.apiserver.kubectl_as(v, "alice-token", &["exec", "sh", "--", "true"]);
        assert!(err(&o).contains("cannot create resource \"pods/exec\""), "{}", err(&o));
        let o = n.cp.apiserver.kubectl_as(v, "alice-token", &["attach", "sh"]);
        assert!(err(&o).contains("cannot create resource \"pods/attach\""), "{}", err(&o));
        let o =
            n.cp.apiserver.kubectl_as(v, "alice-token", &["port-forward", "pod/web", &format!("{}:80", free_port())]);
        assert!(err(&o).contains("cannot create resource \"pods/portforward\""), "{}", err(&o));
    }
    let mut role = role.clone();
    role["rules"].as_array_mut().unwrap().push(json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}));
    role["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}));
    let o = n.cp.apiserver.kubectl_stdin("1.33", &["apply", "-f", "-"], Some(&role.to_string()));
    assert!(o.status.success(), "{}", err(&o));
    let allowed = eventually(Duration::from_secs(10), || {
        let o = n.cp.apiserver.kubectl_as("1.33", "alice-token", &["exec", "sh", "--", "echo", "hi"]);
        (out(&o) == "hi\n").then_some(())
    });
    assert!(allowed.is_some());
    let o = n.cp.apiserver.kubectl_as("1.33", "alice-token", &["logs", "sh"]);
    assert!(o.status.success(), "{}", err(&o));
}

/// Parses RFC 3339 timestamps without another dependency: enough to tell one.
mod jiff_like {
    pub struct Ts;
    impl std::str::FromStr for Ts {
        type Err = ();
        fn from_str(s: &str) -> Result<Ts, ()> {
            let ok = s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z');
            if ok {
                Ok(Ts)
            } else {
                Err(())
            }
        }
    }
}
