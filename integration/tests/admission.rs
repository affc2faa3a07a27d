//! The admission chain of the real apiserver, chosen by
//! `--enable-admission-plugins` / `--disable-admission-plugins`, driven by
//! stock kubectl.

use std::time::Duration;

use integration::{eventually, fails, ok, ApiServer, ControlPlane, Etcd, KUBECTL_VERSIONS};
use serde_json::{json, Value};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// A LimitRange giving containers a default cpu limit/request and a cpu maximum.
fn limit_range(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: cpu\n  namespace: {ns}\nspec:\n  limits:\n  - type: Container\n    default: {{cpu: 500m}}\n    defaultRequest: {{cpu: 100m}}\n    max: {{cpu: '1'}}\n"
    )
}

/// A pod that meets the restricted level, with an explicit cpu limit of `cpu`.
fn compliant_pod(ns: &str, name: &str, cpu: Option<&str>) -> String {
    let resources = cpu.map(|c| format!("    resources:\n      limits: {{cpu: '{c}'}}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile: {{type: RuntimeDefault}}\n  containers:\n  - name: c\n    image: busybox:1\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities: {{drop: [ALL]}}\n{resources}"
    )
}

fn pod(api: &ApiServer, v: &str, ns: &str, name: &str) -> Value {
    serde_json::from_str(&ok(api.kubectl(v, &["get", "pod", name, "-n", ns, "-o", "json"]))).unwrap()
}

/// Waits until the apiserver's LimitRanger sees the namespace's LimitRange: a
/// server-side dry run of a pod gets its default limit.
fn wait_for_limit_range(api: &ApiServer, ns: &str) {
    let seen = eventually(Duration::from_secs(10), || {
        let out = api.kubectl(
            "1.33",
            &[
                "run",
                "probe",
                "-n",
                ns,
                "--image=busybox:1",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.containers[0].resources.limits.cpu}",
            ],
        );
        (integration::stdout(&out).trim() == "500m").then_some(())
    });
    assert!(seen.is_some(), "the LimitRange never applied:\n{}", api.log());
}

#[test]
fn the_default_chain_adds_the_300s_tolerations_and_limit_range_defaults() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    ok(api.kubectl("1.33", &["create", "namespace", "lr"]));
    ok(api.kubectl_stdin("1.33", &["create", "-f", "-"], Some(&limit_range("lr"))));
    wait_for_limit_range(api, "lr");
    for v in KUBECTL_VERSIONS {
        let name = format!("p{}", v.replace('.', ""));
        ok(api.kubectl(v, &["run", &name, "-n", "lr", "--image=busybox:1"]));
        let p = pod(api, v, "lr", &name);
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ]),
            "{p}"
        );
        let resources = &p["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["cpu"], "500m", "{p}");
        assert_eq!(resources["requests"]["cpu"], "100m", "{p}");
    }
    // A pod's own not-ready toleration is kept; only the unreachable one is added.
    let own = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: own\n  namespace: lr\nspec:\n  tolerations:\n  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}\n  containers:\n  - name: c\n    image: busybox:1\n";
    ok(api.kubectl_stdin("1.33", &["create", "-f", "-"], Some(own)));
    let t = pod(api, "1.33", "lr", "own")["spec"]["tolerations"].clone();
    assert_eq!(
        t,
        json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );
    // The LimitRange's maximum is enforced.
    let out = fails(api.kubectl_stdin("1.33", &["create", "-f", "-"], Some(&compliant_pod("lr", "big", Some("2")))));
    assert!(out.contains("maximum cpu usage per Container is 1, but limit is 2"), "{out}");
}

#[test]
fn toleration_seconds_come_from_their_flags() {
    let etcd = Etcd::start().unwrap();
    let api = ApiServer::start_with(
        &etcd,
        &["--default-not-ready-toleration-seconds=60", "--default-unreachable-toleration-seconds=120"],
    )
    .unwrap();
    ok(api.kubectl("1.33", &["run", "p", "--image=busybox:1"]));
    let t = pod(&api, "1.33", "default", "p")["spec"]["tolerations"].clone();
    assert_eq!(
        t,
        json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
        ])
    );
}

#[test]
fn disabled_plugins_leave_pods_alone_and_the_rest_of_the_chain_runs() {
    let etcd = Etcd::start().unwrap();
    let api =
        ApiServer::start_with(&etcd, &["--disable-admission-plugins=DefaultTolerationSeconds,LimitRanger"]).unwrap();
    ok(api.kubectl("1.33", &["create", "namespace", "lr"]));
    ok(api.kubectl("1.33", &["label", "namespace", "lr", "pod-security.kubernetes.io/enforce=restricted"]));
    ok(api.kubectl_stdin("1.33", &["create", "-f", "-"], Some(&limit_range("lr"))));
    // The LimitRange and the label are stored and in the watch caches (a pod
    // violating restricted is refused, so the namespace's label is seen).
    ok(api.kubectl("1.33", &["get", "limitrange", "cpu", "-n", "lr"]));
    let refused = eventually(Duration::from_secs(10), || {
        let out = api.kubectl("1.33", &["run", "plain", "-n", "lr", "--image=busybox:1", "--dry-run=server"]);
        integration::text(&out).contains("violates PodSecurity \"restricted:latest\"").then_some(())
    });
    assert!(refused.is_some(), "PodSecurity did not run with other plugins disabled:\n{}", api.log());
    std::thread::sleep(Duration::from_millis(500));
    for (v, limit) in [("1.33", None), ("1.32", Some("2"))] {
        let name = format!("p{}", v.replace('.', ""));
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&compliant_pod("lr", &name, limit))));
        let p = pod(&api, v, "lr", &name);
        assert!(p["spec"]["tolerations"].as_array().is_none_or(|t| t.is_empty()), "{p}");
        let resources = &p["spec"]["containers"][0]["resources"];
        // No default from the LimitRange, and its maximum is not enforced either.
        match limit {
            None => assert!(resources.as_object().is_none_or(|r| r.is_empty()), "{p}"),
            Some(l) => assert_eq!(resources["limits"]["cpu"], l, "{p}"),
        }
    }
}

#[test]
fn unknown_or_overlapping_plugin_names_stop_the_apiserver_naming_them() {
    for (flags, named) in [
        (vec!["--enable-admission-plugins=NoSuchPlugin"], "NoSuchPlugin"),
        (vec!["--enable-admission-plugins=PodSecurity,NoSuchPlugin"], "NoSuchPlugin"),
        (vec!["--disable-admission-plugins=AlsoMissing"], "AlsoMissing"),
        (vec!["--enable-admission-plugins=Priority", "--disable-admission-plugins=Priority"], "overlapped"),
    ] {
        let out = std::process::Command::new(integration::binary("kube-apiserver"))
            .arg("--etcd-servers=http://127.0.0.1:1")
            .args(&flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?}");
        let text = integration::text(&out);
        assert!(text.contains(named), "{flags:?}: {text}");
        // It stops on the flags, before trying etcd.
        assert!(!text.contains("etcd not reachable"), "{flags:?}: {text}");
    }
}

#[test]
fn a_restricted_namespace_refuses_a_plain_pod_listing_its_violations_and_admits_a_compliant_one() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    ok(api.kubectl("1.33", &["create", "namespace", "locked"]));
    ok(api.kubectl("1.33", &["label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted"]));
    let seen = eventually(Duration::from_secs(10), || {
        let out = api.kubectl("1.33", &["run", "probe", "-n", "locked", "--image=busybox:1", "--dry-run=server"]);
        (!out.status.success()).then_some(())
    });
    assert!(seen.is_some(), "the restricted label never took effect:\n{}", api.log());
    for v in KUBECTL_VERSIONS {
        let name = format!("plain{}", v.replace('.', ""));
        let out = fails(api.kubectl(v, &["run", &name, "-n", "locked", "--image=busybox:1"]));
        let expected = format!(
            "pods \"{name}\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"{name}\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"{name}\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"{name}\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"{name}\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert!(out.contains(&expected), "{out}");
        let good = format!("good{}", v.replace('.', ""));
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&compliant_pod("locked", &good, None))));
        assert_eq!(pod(api, v, "locked", &good)["metadata"]["name"], good.as_str());
    }
    // Nothing but the compliant pods was stored.
    let names = ok(api.kubectl("1.33", &["get", "pods", "-n", "locked", "-o", "jsonpath={.items[*].metadata.name}"]));
    assert_eq!(names.split_whitespace().collect::<Vec<_>>(), ["good132", "good133"]);
}

#[test]
fn resource_quota_charges_creates_and_gives_back_deletes_one_by_one_or_by_collection() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "namespace", "q"]));
    ok(api.kubectl(v, &["create", "quota", "one-pod", "-n", "q", "--hard=pods=1"]));
    let over = "pods \"b\" is forbidden: exceeded quota: one-pod, requested: pods=1, used: pods=1, limited: pods=1";
    ok(api.kubectl(v, &["run", "a", "-n", "q", "--image=busybox:1"]));
    let out = fails(api.kubectl(v, &["run", "b", "-n", "q", "--image=busybox:1"]));
    assert!(out.contains(over), "{out}");
    // A refused create charged nothing, and a delete gives its share back.
    ok(api.kubectl(v, &["delete", "pod", "a", "-n", "q", "--wait=false"]));
    ok(api.kubectl(v, &["run", "b", "-n", "q", "--image=busybox:1"]));
    let out = fails(api.kubectl(v, &["run", "c", "-n", "q", "--image=busybox:1"]));
    assert!(out.contains("exceeded quota: one-pod"), "{out}");
    // So does a delete of the whole collection.
    let (code, body) = api.json("DELETE", "/api/v1/namespaces/q/pods", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
    ok(api.kubectl(v, &["run", "c", "-n", "q", "--image=busybox:1"]));
    let used = ok(api.kubectl(v, &["get", "quota", "one-pod", "-n", "q", "-o", "jsonpath={.status.used.pods}"]));
    assert_eq!(used, "1");
}

#[test]
fn node_restriction_gives_a_kubelet_tokens_only_for_pods_bound_to_it() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    for n in ["1", "2"] {
        ok(api.kubectl(v, &["create", "serviceaccount", &format!("sa{n}")]));
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-n{n}\nspec:\n  nodeName: n{n}\n  serviceAccountName: sa{n}\n  containers:\n  - name: c\n    image: busybox:1\n"
        );
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod)));
    }
    let uid = |pod: &str| ok(api.kubectl(v, &["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]));
    let (uid1, uid2) = (uid("on-n1"), uid("on-n2"));
    let n1 = |args: &[&str]| api.kubectl_as(v, "node1-token", args);
    // Bound to its own pod by name and uid: a token.
    let token = eventually(Duration::from_secs(10), || {
        let out = n1(&[
            "create",
            "token",
            "sa1",
            "--bound-object-kind=Pod",
            "--bound-object-name=on-n1",
            &format!("--bound-object-uid={uid1}"),
        ]);
        out.status.success().then(|| integration::stdout(&out))
    });
    assert_eq!(token.map(|t| t.trim().split('.').count()), Some(3));
    // Without the pod's uid, bound to nothing, or bound to another node's pod: refused by NodeRestriction.
    let out = fails(n1(&["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n1"]));
    assert!(out.contains("node requested token with a pod binding without a uid"), "{out}");
    let out = fails(n1(&["create", "token", "sa1"]));
    assert!(out.contains("node requested token not bound to a pod"), "{out}");
    let out = fails(n1(&[
        "create",
        "token",
        "sa1",
        "--bound-object-kind=Pod",
        "--bound-object-name=on-n2",
        &format!("--bound-object-uid={uid2}"),
    ]));
    assert!(out.contains("node requested token bound to a pod scheduled on a different node"), "{out}");
    // The admin is not a node: its token bound to a pod running as the account is issued; the
    // token endpoint refuses a pod of another account.
    ok(api.kubectl(v, &["create", "token", "sa2", "--bound-object-kind=Pod", "--bound-object-name=on-n2"]));
    let out =
        fails(api.kubectl(v, &["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n2"]));
    assert!(
        out.contains("cannot bind token for serviceaccount \"sa1\" to pod running with different serviceaccount name."),
        "{out}"
    );
}

#[test]
fn node_restriction_lets_a_kubelet_evict_only_pods_bound_to_it() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    for n in ["1", "2"] {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-n{n}\nspec:\n  nodeName: n{n}\n  containers:\n  - name: c\n    image: busybox:1\n"
        );
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod)));
    }
    let evict = |pod: &str| {
        let body = format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}"}}}}"#);
        let out = std::process::Command::new("curl")
            .args(["-sk", "-X", "POST", "-w", "\n%{http_code}"])
            .args(["-H", "Authorization: Bearer node1-token", "-H", "Content-Type: application/json"])
            .args(["--data", &body])
            .arg(format!("{}/api/v1/namespaces/default/pods/{pod}/eviction", api.url()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        (code.to_string(), body.to_string())
    };
    let (code, body) = evict("on-n2");
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("node n1 can only evict pods with spec.nodeName set to itself"), "{body}");
    ok(api.kubectl(v, &["get", "pod", "on-n2"]));
    let (code, body) = evict("on-n1");
    assert_eq!(code, "201", "{body}");
    let gone = eventually(Duration::from_secs(10), || {
        let out = api.kubectl(v, &["get", "pod", "on-n1"]);
        (!out.status.success() || integration::stdout(&out).contains("Terminating")).then_some(())
    });
    assert!(gone.is_some());
}
