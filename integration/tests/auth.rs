//! Authentication and RBAC against the real apiserver with stock kubectl.

use integration::{fails, ok, ControlPlane, KUBECTL_VERSIONS};

#[test]
fn anonymous_requests_reach_only_health_and_version() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let (code, _, _) = api.raw_request("GET", "/healthz", &[]).unwrap();
    assert_eq!(code, 200);
    let (code, body, _) = api.raw_request("GET", "/version", &[]).unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, body, _) = api.raw_request("GET", "/api", &[]).unwrap();
    assert_eq!(code, 403);
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["message"], "forbidden: User \"system:anonymous\" cannot get path \"/api\"");
    let (code, body, _) = api.raw_request("GET", "/api/v1/namespaces/default/pods", &[]).unwrap();
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    // A wrong token is refused outright, not downgraded to anonymous.
    let (code, body, _) = api.raw_request("GET", "/healthz", &["Authorization: Bearer not-a-token"]).unwrap();
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    for v in KUBECTL_VERSIONS {
        let out = fails(api.kubectl_as(v, "not-a-token", &["get", "pods"]));
        assert!(out.contains("Unauthorized") || out.contains("provide credentials"), "{out}");
    }
}

type CanIRow = (String, String, String, String);

/// `kubectl auth can-i --list`'s table as a set of (resource, non-resource URL, resource names, verbs) rows.
fn parse_can_i_list(table: &str) -> std::collections::BTreeSet<CanIRow> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = |name: &str| header.find(name).unwrap_or_else(|| panic!("no {name} column: {table}"));
    let (urls, names, verbs) = (col("Non-Resource URLs"), col("Resource Names"), col("Verbs"));
    let cell = |l: &str, from: usize, to: usize| l.get(from..to.min(l.len())).unwrap_or_default().trim().to_string();
    let unbracket = |s: String| s.trim_start_matches('[').trim_end_matches(']').to_string();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            (
                cell(l, 0, urls),
                unbracket(cell(l, urls, names)),
                unbracket(cell(l, names, verbs)),
                unbracket(cell(l, verbs, usize::MAX)),
            )
        })
        .collect()
}

fn can_i_rows(rows: &[(&str, &str, &str)]) -> std::collections::BTreeSet<CanIRow> {
    rows.iter().map(|(r, u, v)| (r.to_string(), u.to_string(), String::new(), v.to_string())).collect()
}

#[test]
fn a_user_can_do_exactly_what_a_role_grants() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let ns = format!("team{}", v.replace('.', ""));
        ok(api.kubectl(v, &["create", "namespace", &ns]));
        let who = ok(api.kubectl_as(v, "alice-token", &["auth", "whoami"]));
        assert!(who.contains("alice") && who.contains("system:authenticated") && who.contains("dev"), "{who}");
        let out = fails(api.kubectl_as(v, "alice-token", &["get", "pods", "-n", &ns]));
        assert!(
            out.contains(&format!(
                "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"{ns}\""
            )),
            "{out}"
        );
        assert_eq!(
            integration::stdout(&api.kubectl_as(v, "alice-token", &["auth", "can-i", "list", "pods", "-n", &ns]))
                .trim(),
            "no"
        );
        ok(api.kubectl(v, &["create", "role", "pod-reader", "-n", &ns, "--verb=get,list,watch", "--resource=pods"]));
        ok(api.kubectl(v, &["create", "rolebinding", "alice-reads", "-n", &ns, "--role=pod-reader", "--user=alice"]));
        std::thread::sleep(std::time::Duration::from_millis(200));
        ok(api.kubectl_as(v, "alice-token", &["get", "pods", "-n", &ns]));
        assert_eq!(
            integration::stdout(&api.kubectl_as(v, "alice-token", &["auth", "can-i", "list", "pods", "-n", &ns]))
                .trim(),
            "yes"
        );
        assert_eq!(
            integration::stdout(&api.kubectl_as(v, "alice-token", &["auth", "can-i", "delete", "pods", "-n", &ns]))
                .trim(),
            "no"
        );
        assert_eq!(
            integration::stdout(&api.kubectl_as(v, "alice-token", &["auth", "can-i", "list", "pods", "-n", "default"]))
                .trim(),
            "no"
        );
        let out = fails(api.kubectl_as(v, "alice-token", &["run", "x", "--image=busybox", "-n", &ns]));
        assert!(out.contains("cannot create resource \"pods\""), "{out}");
        let out = fails(api.kubectl_as(v, "alice-token", &["get", "secrets", "-n", &ns]));
        assert!(out.contains("Forbidden") || out.contains("forbidden"), "{out}");
        // The whole table: the Role's rule plus what every authenticated user gets from the bootstrap
        // policy (system:basic-user, system:discovery, system:public-info-viewer), nothing else.
        let list = ok(api.kubectl_as(v, "alice-token", &["auth", "can-i", "--list", "-n", &ns]));
        let expected = can_i_rows(&[
            ("pods", "", "get list watch"),
            ("selfsubjectreviews.authentication.k8s.io", "", "create"),
            ("selfsubjectaccessreviews.authorization.k8s.io", "", "create"),
            ("selfsubjectrulesreviews.authorization.k8s.io", "", "create"),
            ("", "/api", "get"),
            ("", "/api/*", "get"),
            ("", "/apis", "get"),
            ("", "/apis/*", "get"),
            ("", "/healthz", "get"),
            ("", "/livez", "get"),
            ("", "/readyz", "get"),
            ("", "/openapi", "get"),
            ("", "/openapi/*", "get"),
            ("", "/version", "get"),
            ("", "/version/", "get"),
        ]);
        assert_eq!(parse_can_i_list(&list), expected, "kubectl {v}:\n{list}");
        // Another namespace: only what the cluster-wide bootstrap bindings grant.
        let list = ok(api.kubectl_as(v, "alice-token", &["auth", "can-i", "--list", "-n", "default"]));
        let without_pods: std::collections::BTreeSet<_> = expected.iter().filter(|r| r.0 != "pods").cloned().collect();
        assert_eq!(parse_can_i_list(&list), without_pods, "kubectl {v}:\n{list}");
        // The admin (system:masters) may do anything.
        assert_eq!(ok(api.kubectl(v, &["auth", "can-i", "*", "*"])).trim(), "yes");
    }
}

#[test]
fn bootstrap_policy_gives_components_least_privilege() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    // SubjectAccessReview asks on behalf of another user, as a webhook would.
    let can = |user: &str, verb: &str, group: &str, resource: &str, sub: &str, ns: &str| -> bool {
        let review = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"],
                     "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "subresource": sub, "namespace": ns}},
        });
        let (code, body) = api.json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(&review));
        assert_eq!(code, 201, "{body}");
        body["status"]["allowed"].as_bool().unwrap_or(false)
    };
    assert!(can("system:kube-scheduler", "create", "", "pods", "binding", "default"));
    assert!(!can("system:kube-scheduler", "get", "", "secrets", "", "default"));
    assert!(can("system:kube-proxy", "list", "discovery.k8s.io", "endpointslices", "", ""));
    assert!(!can("system:kube-proxy", "create", "", "pods", "", "default"));
    assert!(can("system:kube-controller-manager", "get", "", "secrets", "", "kube-system"));
    assert!(!can("nobody", "get", "", "pods", "", "default"));
    let roles = ok(api.kubectl("1.33", &["get", "clusterroles", "-o", "name"]));
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node-proxier",
        "system:kube-scheduler",
        "system:controller:deployment-controller",
    ] {
        assert!(roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{r}\n")), "missing {r}");
    }
}

#[test]
fn rbac_writes_cannot_grant_more_than_the_writer_holds() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "namespace", "esc"]));
    ok(api.kubectl(
        v,
        &["create", "role", "rbac-writer", "-n", "esc", "--verb=create,get,list", "--resource=roles,rolebindings,pods"],
    ));
    ok(api.kubectl(v, &["create", "rolebinding", "alice-writes", "-n", "esc", "--role=rbac-writer", "--user=alice"]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Within what alice holds: allowed.
    ok(api.kubectl_as(
        v,
        "alice-token",
        &["create", "role", "reader", "-n", "esc", "--verb=get,list", "--resource=pods"],
    ));
    std::thread::sleep(std::time::Duration::from_millis(200));
    ok(api.kubectl_as(
        v,
        "alice-token",
        &["create", "rolebinding", "bob-reads", "-n", "esc", "--role=reader", "--user=bob"],
    ));
    // Beyond it: refused with upstream's explanation.
    let out = fails(api.kubectl_as(
        v,
        "alice-token",
        &["create", "role", "deleter", "-n", "esc", "--verb=delete", "--resource=pods"],
    ));
    assert!(out.contains("is attempting to grant RBAC permissions not currently held"), "{out}");
    let out = fails(api.kubectl_as(
        v,
        "alice-token",
        &["create", "rolebinding", "grab", "-n", "esc", "--clusterrole=cluster-admin", "--user=alice"],
    ));
    assert!(out.contains("forbidden"), "{out}");
    // The admin may grant anything.
    ok(api.kubectl(v, &["create", "role", "deleter", "-n", "esc", "--verb=delete", "--resource=pods"]));
}

#[test]
fn impersonation_needs_the_impersonate_verb_and_then_acts_as_that_user() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        // The admin may impersonate: the answers are the impersonated user's.
        let can = |args: &[&str]| integration::stdout(&api.kubectl(v, args)).trim().to_string();
        assert_eq!(can(&["auth", "can-i", "get", "secrets", "--as", "system:kube-scheduler"]), "no");
        assert_eq!(
            can(&["auth", "can-i", "create", "pods", "--subresource=binding", "--as", "system:kube-scheduler"]),
            "yes"
        );
        assert_eq!(can(&["auth", "can-i", "list", "pods", "--as", "alice"]), "no");
        let who = ok(api.kubectl(v, &["auth", "whoami", "--as", "dave", "--as-group", "ops"]));
        assert!(who.contains("dave") && who.contains("ops") && who.contains("system:authenticated"), "{who}");
        // A user without the verb may not.
        let out = fails(api.kubectl_as(v, "alice-token", &["get", "pods", "--as", "admin"]));
        assert!(
            out.contains("users \"admin\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
            "{out}"
        );
    }
}

#[test]
fn a_kubelet_reads_only_its_own_pods_objects_and_writes_only_itself() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "secret", "generic", "s1", "--from-literal=k=v"]));
    ok(api.kubectl(v, &["create", "secret", "generic", "s2", "--from-literal=k=v"]));
    ok(api.kubectl(v, &["create", "configmap", "c1", "--from-literal=k=v"]));
    let pod = |name: &str, node: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox:1\n    envFrom:\n    - configMapRef:\n        name: c1\n  volumes:\n  - name: s\n    secret:\n      secretName: {secret}\n"
        )
    };
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("on-n1", "n1", "s1"))));
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("on-n2", "n2", "s2"))));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // n1 reads what its pod references, and nothing of n2's.
    ok(api.kubectl_as(v, "node1-token", &["get", "secret", "s1"]));
    ok(api.kubectl_as(v, "node1-token", &["get", "configmap", "c1"]));
    let out = fails(api.kubectl_as(v, "node1-token", &["get", "secret", "s2"]));
    assert!(out.contains("no relationship found between node 'n1' and this object"), "{out}");
    let out = fails(api.kubectl_as(v, "node1-token", &["get", "secrets"]));
    assert!(out.contains("forbidden"), "{out}");
    ok(api.kubectl_as(v, "node2-token", &["get", "secret", "s2"]));
    // Kubelets may read pods and nodes (upstream's node rules).
    ok(api.kubectl_as(v, "node1-token", &["get", "pods", "-A"]));
    // NodeRestriction: its own Node yes, another's no; pods bound elsewhere no.
    let node = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n");
    ok(api.kubectl_stdin(v, &["--token", "node1-token", "create", "-f", "-"], Some(&node("n1"))));
    let out = fails(api.kubectl_stdin(v, &["--token", "node1-token", "create", "-f", "-"], Some(&node("n2"))));
    assert!(out.contains("is not allowed to modify node \"n2\""), "{out}");
    let out = fails(api.kubectl_as(v, "node1-token", &["label", "pod", "on-n2", "x=y"]));
    assert!(out.contains("forbidden"), "{out}");
    let out = fails(api.kubectl_as(v, "node1-token", &["delete", "pod", "on-n2"]));
    assert!(out.contains("can only update pod status for pods with spec.nodeName set to itself"), "{out}");
}

#[test]
fn a_kubelet_reaches_no_claim_lease_pod_status_or_token_of_another_node() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    pods_on_two_nodes(api);
    let n1 = |args: &[&str]| api.kubectl_as(v, "node1-token", args);
    // Claims: its own pod's yes, another node's pod's no.
    ok(n1(&["get", "pvc", "pvc1"]));
    let out = fails(n1(&["get", "pvc", "pvc2"]));
    assert!(out.contains("no relationship found between node 'n1' and this object"), "{out}");
    ok(api.kubectl_as(v, "node2-token", &["get", "pvc", "pvc2"]));
    // Leases in kube-node-lease: its own yes, n2's neither created nor updated.
    let lease = |name: &str, holder: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {holder}\n  leaseDurationSeconds: 40\n"
        )
    };
    ok(api.kubectl_stdin(v, &["--token", "node1-token", "apply", "-f", "-"], Some(&lease("n1", "n1"))));
    let out = fails(api.kubectl_stdin(v, &["--token", "node1-token", "create", "-f", "-"], Some(&lease("n2", "n1"))));
    assert!(out.contains("forbidden"), "{out}");
    ok(api.kubectl_stdin(v, &["--token", "node2-token", "create", "-f", "-"], Some(&lease("n2", "n2"))));
    let out = fails(n1(&[
        "patch",
        "lease",
        "n2",
        "-n",
        "kube-node-lease",
        "--type=merge",
        "-p",
        r#"{"spec":{"holderIdentity":"n1"}}"#,
    ]));
    assert!(out.contains("forbidden"), "{out}");
    let out = fails(n1(&["delete", "lease", "n2", "-n", "kube-node-lease"]));
    assert!(out.contains("forbidden"), "{out}");
    let holder =
        ok(api.kubectl(v, &["get", "lease", "n2", "-n", "kube-node-lease", "-o", "jsonpath={.spec.holderIdentity}"]));
    assert_eq!(holder, "n2");
    // Pod status (the kubelet's PATCH of pods/status; kubectl would GET pods/status first, which upstream's
    // node rules do not grant either): its own pod's yes, a pod bound to n2 no.
    let patch_status = |pod: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH"])
            .args(["-H", "Authorization: Bearer node1-token", "-H", "Content-Type: application/merge-patch+json"])
            .args(["--data", r#"{"status":{"phase":"Failed","message":"set by n1"}}"#])
            .arg(format!("{}/api/v1/namespaces/default/pods/{pod}/status", api.url()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(patch_status("on-n1"), "200");
    assert_eq!(ok(api.kubectl(v, &["get", "pod", "on-n1", "-o", "jsonpath={.status.phase}"])), "Failed");
    assert_eq!(patch_status("on-n2"), "403");
    let phase = ok(api.kubectl(v, &["get", "pod", "on-n2", "-o", "jsonpath={.status.phase}"]));
    assert_ne!(phase, "Failed");
    // Tokens: for its own pod's service account, bound to that pod, yes; for n2's pod's account no, bound
    // to n2's pod or to nothing.
    let uid = ok(api.kubectl(v, &["get", "pod", "on-n1", "-o", "jsonpath={.metadata.uid}"]));
    let uid = format!("--bound-object-uid={uid}");
    let token = ok(n1(&["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n1", &uid]));
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let out = fails(n1(&["create", "token", "sa2", "--bound-object-kind=Pod", "--bound-object-name=on-n2"]));
    assert!(out.contains("forbidden"), "{out}");
    let out = fails(n1(&["create", "token", "sa2"]));
    assert!(out.contains("forbidden"), "{out}");
}

/// Service accounts sa1 and sa2, claims pvc1 and pvc2, and pods on-n1 (on n1, sa1, pvc1) and on-n2 (on n2,
/// sa2, pvc2) in the default namespace.
fn pods_on_two_nodes(api: &integration::ApiServer) {
    let v = "1.33";
    for n in ["1", "2"] {
        ok(api.kubectl(v, &["create", "serviceaccount", &format!("sa{n}")]));
        let pvc = format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: pvc{n}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
        );
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pvc)));
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-n{n}\nspec:\n  nodeName: n{n}\n  serviceAccountName: sa{n}\n  containers:\n  - name: c\n    image: busybox:1\n  volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: pvc{n}\n"
        );
        ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod)));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
}

#[test]
fn a_kubelet_gets_tokens_only_bound_to_its_own_pods() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    pods_on_two_nodes(api);
    let n1 = |args: &[&str]| api.kubectl_as("1.33", "node1-token", args);
    let uid = ok(api.kubectl("1.33", &["get", "pod", "on-n1", "-o", "jsonpath={.metadata.uid}"]));
    let uid = format!("--bound-object-uid={uid}");
    ok(n1(&["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n1", &uid]));
    // Upstream's NodeRestriction: a node's token must be bound to a pod (with its uid) on that node.
    let out = fails(n1(&["create", "token", "sa1"]));
    assert!(out.contains("node requested token not bound to a pod"), "{out}");
    let out = fails(n1(&["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n1"]));
    assert!(out.contains("node requested token with a pod binding without a uid"), "{out}");
    let uid2 = ok(api.kubectl("1.33", &["get", "pod", "on-n2", "-o", "jsonpath={.metadata.uid}"]));
    let uid2 = format!("--bound-object-uid={uid2}");
    let out = fails(n1(&["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n2", &uid2]));
    assert!(out.contains("node requested token bound to a pod scheduled on a different node"), "{out}");
    // And upstream's token endpoint, for anyone: the pod must run as that service account.
    let out =
        fails(api.kubectl("1.33", &["create", "token", "sa1", "--bound-object-kind=Pod", "--bound-object-name=on-n2"]));
    assert!(out.contains("to pod running with different serviceaccount name"), "{out}");
}

#[test]
fn resource_quotas_are_enforced_tracked_in_status_and_hold_under_concurrency() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "namespace", "q"]));
    ok(api.kubectl(v, &["create", "quota", "small", "-n", "q", "--hard=pods=2,requests.cpu=1,configmaps=3"]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: q\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    resources:\n      requests:\n        cpu: {cpu}\n"
        )
    };
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("a", "400m"))));
    let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("big", "700m"))));
    assert!(
        out.contains(
            "exceeded quota: small, requested: requests.cpu=700m, used: requests.cpu=400m, limited: requests.cpu=1"
        ),
        "{out}"
    );
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("b", "100m"))));
    let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("c", "100m"))));
    assert!(out.contains("exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"), "{out}");
    let used = ok(api.kubectl(
        v,
        &["get", "quota", "small", "-n", "q", "-o", "jsonpath={.status.used.pods} {.status.used.requests\\.cpu}"],
    ));
    assert_eq!(used, "2 500m");
    // Deleting refunds.
    ok(api.kubectl(v, &["delete", "pod", "b", "-n", "q"]));
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod("c", "100m"))));
    // Concurrent creates never overshoot: 3 configmaps allowed, 8 tried at once.
    let results: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || api.kubectl(v, &["create", "configmap", &format!("cm{i}"), "-n", "q"]).status.success())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| **r).count(), 3, "{results:?}");
    let cms = ok(api.kubectl(v, &["get", "configmaps", "-n", "q", "-o", "name"]));
    assert_eq!(cms.lines().count(), 3, "{cms}");
}

#[test]
fn limit_ranges_default_and_bound_containers_and_priority_classes_resolve() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "namespace", "lr"]));
    let lr = "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: lim\n  namespace: lr\nspec:\n  limits:\n  - type: Container\n    default:\n      cpu: 500m\n    defaultRequest:\n      cpu: 200m\n    max:\n      cpu: \"1\"\n";
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(lr)));
    std::thread::sleep(std::time::Duration::from_millis(200));
    ok(api.kubectl(v, &["run", "d", "-n", "lr", "--image=busybox:1"]));
    let res = ok(api.kubectl(
        v,
        &[
            "get",
            "pod",
            "d",
            "-n",
            "lr",
            "-o",
            "jsonpath={.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.requests.cpu}",
        ],
    ));
    assert_eq!(res, "500m 200m");
    let big = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: lr\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    resources:\n      limits:\n        cpu: \"2\"\n";
    let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(big)));
    assert!(out.contains("maximum cpu usage per Container is 1, but limit is 2"), "{out}");
    // Priority classes: the built-in ones exist; names resolve to values.
    let pcs = ok(api.kubectl(v, &["get", "priorityclasses", "-o", "name"]));
    assert!(pcs.contains("system-node-critical") && pcs.contains("system-cluster-critical"), "{pcs}");
    ok(api.kubectl(v, &["create", "priorityclass", "high", "--value=1000"]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hi\nspec:\n  priorityClassName: high\n  containers:\n  - name: c\n    image: busybox:1\n";
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(pod)));
    assert_eq!(ok(api.kubectl(v, &["get", "pod", "hi", "-o", "jsonpath={.spec.priority}"])), "1000");
    let out = fails(api.kubectl_stdin(
        v,
        &["create", "-f", "-"],
        Some(&pod.replace("high", "missing").replace("name: hi", "name: hm")),
    ));
    assert!(out.contains("no PriorityClass with name missing was found"), "{out}");
}

#[test]
fn unknown_admission_plugins_and_authorization_modes_stop_the_apiserver_with_their_name() {
    for (flag, name) in [("--enable-admission-plugins=Bogus", "Bogus"), ("--authorization-mode=ABAC", "ABAC")] {
        let out = std::process::Command::new(integration::binary("kube-apiserver"))
            .args(["--etcd-servers=http://127.0.0.1:1", flag])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let text = integration::text(&out);
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn pod_security_levels_are_enforced_and_warned_by_namespace_label() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let s = v.replace('.', "");
        let (strict, lax) = (format!("strict{s}"), format!("lax{s}"));
        ok(api.kubectl(v, &["create", "namespace", &strict]));
        ok(api.kubectl(v, &["label", "namespace", &strict, "pod-security.kubernetes.io/enforce=baseline"]));
        ok(api.kubectl(v, &["create", "namespace", &lax]));
        ok(api.kubectl(v, &["label", "namespace", &lax, "pod-security.kubernetes.io/warn=restricted"]));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let privileged = |ns: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: priv\n  namespace: {ns}\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox:1\n    securityContext:\n      privileged: true\n"
            )
        };
        let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&privileged(&strict))));
        assert!(
            out.contains("violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"),
            "{out}"
        );
        // An ordinary pod passes baseline.
        ok(api.kubectl(v, &["run", "plain", "-n", &strict, "--image=busybox:1"]));
        // warn=restricted: admitted, with kubectl printing the warning.
        let out = api.kubectl(v, &["run", "w", "-n", &lax, "--image=busybox:1"]);
        assert!(out.status.success());
        let text = integration::text(&out);
        assert!(text.contains("Warning: would violate PodSecurity \"restricted:latest\""), "{text}");
    }
}

#[test]
fn pod_security_warns_on_workload_templates_and_checks_pod_updates() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["create", "namespace", "psa"]));
    // A privileged pod admitted before the namespace was labelled.
    let host = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostnet\n  namespace: psa\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox:1\n";
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(host)));
    ok(api.kubectl(v, &["label", "namespace", "psa", "pod-security.kubernetes.io/enforce=baseline"]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Metadata-only updates are not re-evaluated; an image change is.
    ok(api.kubectl(v, &["label", "pod", "hostnet", "-n", "psa", "touched=yes"]));
    let out = fails(api.kubectl(v, &["set", "image", "pod/hostnet", "-n", "psa", "c=busybox:2"]));
    assert!(out.contains("violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"), "{out}");
    // A Deployment whose template would be rejected is admitted with a warning.
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hostd\n  namespace: psa\nspec:\n  selector:\n    matchLabels: {app: hostd}\n  template:\n    metadata:\n      labels: {app: hostd}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: c\n        image: busybox:1\n";
    let out = api.kubectl_stdin(v, &["create", "-f", "-"], Some(deploy));
    assert!(out.status.success(), "{}", integration::text(&out));
    let text = integration::text(&out);
    assert!(
        text.contains("Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"),
        "{text}"
    );
}

#[test]
fn pods_get_a_projected_service_account_token_volume_unless_they_opt_out() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let v = "1.33";
    ok(api.kubectl(v, &["run", "auto", "--image=busybox:1"]));
    let got = ok(api.kubectl(v, &["get", "pod", "auto", "-o", "json"]));
    let pod: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let vol = &pod["spec"]["volumes"][0];
    assert!(vol["name"].as_str().unwrap().starts_with("kube-api-access-"), "{pod}");
    assert_eq!(vol["projected"]["sources"][0]["serviceAccountToken"]["path"], "token");
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_eq!(mount["name"], vol["name"]);
    let off = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: no-automount\nspec:\n  automountServiceAccountToken: false\n  containers:\n  - name: c\n    image: busybox:1\n";
    ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(off)));
    assert_eq!(ok(api.kubectl(v, &["get", "pod", "no-automount", "-o", "jsonpath={.spec.volumes}"])), "");
}
