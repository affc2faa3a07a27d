//! Watches: live events to `kubectl get -w`, resumption across an apiserver
//! restart, and 410 for compacted history.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::{kubectl_path, ok, ControlPlane, KUBECTL_VERSIONS};

#[test]
fn kubectl_get_watch_receives_live_events() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let name = format!("live{}", v.replace('.', ""));
        let mut child = Command::new(kubectl_path(v))
            .arg(format!("--kubeconfig={}", api.kubeconfig.display()))
            .args(["get", "configmaps", "-w", "--request-timeout=20s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::sleep(Duration::from_millis(700));
        ok(api.kubectl(v, &["create", "configmap", &name, "--from-literal=a=b"]));
        ok(api.kubectl(v, &["label", "configmap", &name, "x=y"]));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while Instant::now() < deadline && seen < 2 {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if line.starts_with(&name) {
                    seen += 1;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen >= 2, "kubectl {v} saw {seen} events for {name}");
    }
}

fn watch_lines(api: &integration::ApiServer, path: &str) -> Vec<serde_json::Value> {
    let (code, body) = api.request("GET", path, None, None).unwrap();
    assert_eq!(code, 200, "{body}");
    body.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn watchers_resume_from_their_resource_version_after_an_apiserver_restart() {
    let mut cp = ControlPlane::start().unwrap();
    ok(cp.apiserver.kubectl("1.33", &["create", "configmap", "before", "--from-literal=a=1"]));
    let rv = ok(cp.apiserver.kubectl("1.33", &["get", "cm", "before", "-o", "jsonpath={.metadata.resourceVersion}"]));
    // Changes the watcher has not seen yet, then a restart (fresh, empty cache window).
    ok(cp.apiserver.kubectl("1.33", &["create", "configmap", "during1", "--from-literal=a=1"]));
    cp.apiserver.restart().unwrap();
    ok(cp.apiserver.kubectl("1.33", &["create", "configmap", "after1", "--from-literal=a=1"]));
    ok(cp.apiserver.kubectl("1.33", &["delete", "configmap", "before"]));
    let events = watch_lines(
        &cp.apiserver,
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2"),
    );
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [("ADDED", "during1"), ("ADDED", "after1"), ("DELETED", "before")];
    for (t, n) in expected {
        assert!(seen.contains(&(t.to_string(), n.to_string())), "missing {t} {n} in {seen:?}");
    }
    // Events arrive in resourceVersion order, none twice.
    let rvs: Vec<i64> =
        events.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    // The restarted server serves the same objects.
    let names = ok(cp.apiserver.kubectl("1.33", &["get", "cm", "-o", "name"]));
    assert!(
        names.contains("configmap/during1")
            && names.contains("configmap/after1")
            && !names.contains("configmap/before\n"),
        "{names}"
    );
}

#[test]
fn watch_from_zero_starts_with_the_current_state_and_bookmarks_end_initial_events() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    ok(api.kubectl("1.33", &["create", "configmap", "one", "--from-literal=a=1"]));
    let events = watch_lines(api, "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=1");
    assert!(events.iter().any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "one"), "{events:?}");
    let events = watch_lines(
        api,
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    );
    let bookmark = events.iter().find(|e| e["type"] == "BOOKMARK").expect("an initial-events-end bookmark");
    assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let labelled =
        watch_lines(api, "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=none%3Dhere&timeoutSeconds=1");
    assert!(labelled.iter().all(|e| e["type"] != "ADDED"), "{labelled:?}");
}

#[test]
fn a_compacted_resource_version_gets_an_expired_error_event() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    ok(api.kubectl("1.33", &["create", "configmap", "c0", "--from-literal=a=1"]));
    let old = ok(api.kubectl("1.33", &["get", "cm", "c0", "-o", "jsonpath={.metadata.resourceVersion}"]));
    for i in 0..3 {
        ok(api.kubectl("1.33", &["label", "cm", "c0", &format!("l{i}=x")]));
    }
    let rev = ok(api.kubectl("1.33", &["get", "cm", "c0", "-o", "jsonpath={.metadata.resourceVersion}"]));
    let out = cp.etcd.etcdctl(&["compact", &rev]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Too old for the cache window? The cache holds recent events, so use a
    // restart to empty it, then ask for the compacted version.
    let mut cp = cp;
    cp.apiserver.restart().unwrap();
    let events = watch_lines(
        &cp.apiserver,
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}&timeoutSeconds=2"),
    );
    let err = events.iter().find(|e| e["type"] == "ERROR").unwrap_or_else(|| panic!("no ERROR in {events:?}"));
    assert_eq!(err["object"]["code"], 410);
    assert_eq!(err["object"]["reason"], "Expired");
}
