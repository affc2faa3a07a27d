//! Stock kubectl (1.33 and 1.32) driving the real kube-apiserver on real etcd.

use integration::{fails, ok, ControlPlane, KUBECTL_VERSIONS};

fn suffix(version: &str) -> String {
    version.replace('.', "")
}

#[test]
fn discovery_version_explain_and_api_listings_work_for_stock_kubectl() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let out = ok(api.kubectl(v, &["version", "-o", "json"]));
        assert!(out.contains("\"gitVersion\": \"v1.33.0+rustkube"), "{out}");
        let res = ok(api.kubectl(v, &["api-resources"]));
        for needle in ["deployments", "deploy", "apps/v1", "pods", "po", "namespaces", "leases", "endpointslices"] {
            assert!(res.contains(needle), "api-resources lacks {needle}: {res}");
        }
        let versions = ok(api.kubectl(v, &["api-versions"]));
        for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "policy/v1"] {
            assert!(versions.lines().any(|l| l == gv), "api-versions lacks {gv}: {versions}");
        }
        let explain = ok(api.kubectl(v, &["explain", "deployment.spec.replicas"]));
        assert!(explain.contains("replicas") && explain.contains("integer"), "{explain}");
        let explain = ok(api.kubectl(v, &["explain", "pods.spec.containers.ports"]));
        assert!(explain.contains("containerPort"), "{explain}");
    }
    let ns = ok(api.kubectl("1.33", &["get", "ns", "-o", "name"]));
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    let svc = ok(api.kubectl("1.33", &["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]));
    assert_eq!(svc, "10.96.0.1");
    let ep = ok(api.kubectl(
        "1.33",
        &["get", "endpointslice", "kubernetes", "-o", "jsonpath={.endpoints[0].addresses[0]} {.ports[0].port}"],
    ));
    assert_eq!(ep, format!("127.0.0.1 {}", api.port));
}

#[test]
fn deployments_are_created_scaled_patched_labelled_and_deleted() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let name = format!("web{}", suffix(v));
        // `create deployment` posts a protobuf body.
        ok(api.kubectl(v, &["create", "deployment", &name, "--image=nginx:1.25", "--replicas=2"]));
        let wide = ok(api.kubectl(v, &["get", "deploy", &name, "-o", "wide"]));
        assert!(wide.contains("READY") && wide.contains("UP-TO-DATE") && wide.contains("nginx:1.25"), "{wide}");
        assert!(wide.contains(&format!("app={name}")), "{wide}");
        ok(api.kubectl(v, &["scale", "deployment", &name, "--replicas=4"]));
        let r = ok(api.kubectl(v, &["get", "deploy", &name, "-o", "jsonpath={.spec.replicas} {.metadata.generation}"]));
        assert_eq!(r, "4 2");
        ok(api.kubectl(v, &["label", "deploy", &name, "tier=web"]));
        ok(api.kubectl(v, &["annotate", "deploy", &name, "note=hello"]));
        ok(api.kubectl(
            v,
            &[
                "patch",
                "deploy",
                &name,
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}"#,
            ],
        ));
        let json = ok(api.kubectl(v, &["get", "deploy", &name, "-o", "json"]));
        let obj: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(obj["metadata"]["labels"]["tier"], "web");
        assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
        // Strategic merge kept the container list merged by name.
        assert_eq!(obj["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
        // Defaults as upstream.
        assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(obj["spec"]["template"]["spec"]["securityContext"], serde_json::json!({}));
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"], "/dev/termination-log");
        ok(api.kubectl(
            v,
            &["patch", "deploy", &name, "--type=json", "-p", r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#],
        ));
        ok(api.kubectl(
            v,
            &["patch", "deploy", &name, "--type=merge", "-p", r#"{"metadata":{"labels":{"merge":"yes"}}}"#],
        ));
        let r =
            ok(api.kubectl(v, &["get", "deploy", &name, "-o", "jsonpath={.spec.replicas} {.metadata.labels.merge}"]));
        assert_eq!(r, "1 yes");
        let yaml = ok(api.kubectl(v, &["get", "deploy", &name, "-o", "yaml"]));
        assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"), "{yaml}");
        let names = ok(api.kubectl(v, &["get", "deploy", "-o", "name"]));
        assert!(names.contains(&format!("deployment.apps/{name}")), "{names}");
        // Selector immutability on apps/v1.
        let out =
            fails(api.kubectl(
                v,
                &["patch", "deploy", &name, "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"other"}}}}"#],
            ));
        assert!(out.contains("field is immutable") || out.contains("does not match"), "{out}");
        ok(api.kubectl(v, &["delete", "deploy", &name, "--wait"]));
        let out = fails(api.kubectl(v, &["get", "deploy", &name]));
        assert!(out.contains("NotFound") && out.contains(&format!("deployments.apps \"{name}\" not found")), "{out}");
    }
}

#[test]
fn apply_twice_is_unchanged_and_a_changed_field_is_configured() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let name = format!("app{}", suffix(v));
        let manifest = |image: &str, extra_label: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n{extra_label}spec:\n  containers:\n  - name: main\n    image: {image}\n    ports:\n    - containerPort: 8080\n"
            )
        };
        let out = ok(api.kubectl_stdin(v, &["apply", "-f", "-"], Some(&manifest("busybox:1", ""))));
        assert!(out.contains("created"), "{out}");
        let out = ok(api.kubectl_stdin(v, &["apply", "-f", "-"], Some(&manifest("busybox:1", ""))));
        assert!(out.contains("unchanged"), "{out}");
        let out = ok(api.kubectl_stdin(v, &["apply", "-f", "-"], Some(&manifest("busybox:2", "    tier: x\n"))));
        assert!(out.contains("configured"), "{out}");
        let got = ok(api
            .kubectl(v, &["get", "pod", &name, "-o", "jsonpath={.spec.containers[0].image} {.metadata.labels.tier}"]));
        assert_eq!(got, "busybox:2 x");
        let annotations = ok(api.kubectl(v, &["get", "pod", &name, "-o", "jsonpath={.metadata.annotations}"]));
        assert!(annotations.contains("kubectl.kubernetes.io/last-applied-configuration"), "{annotations}");
        let table = ok(api.kubectl(v, &["get", "pods"]));
        assert!(
            table.contains("NAME") && table.contains("READY") && table.contains("STATUS") && table.contains("Pending"),
            "{table}"
        );
        let wide = ok(api.kubectl(v, &["get", "pods", "-o", "wide"]));
        assert!(wide.contains("NOMINATED NODE"), "{wide}");
        let described = ok(api.kubectl(v, &["describe", "pod", &name]));
        assert!(described.contains("busybox:2") && described.contains("8080/TCP"), "{described}");
        ok(api.kubectl(v, &["delete", "pod", &name, "--wait"]));
    }
}

#[test]
fn services_configmaps_and_namespaces_round_trip() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let s = suffix(v);
        let ns = format!("team{s}");
        ok(api.kubectl(v, &["create", "namespace", &ns]));
        ok(api.kubectl(v, &["create", "configmap", "settings", "-n", &ns, "--from-literal=mode=fast"]));
        let data = ok(api.kubectl(v, &["get", "cm", "settings", "-n", &ns, "-o", "jsonpath={.data.mode}"]));
        assert_eq!(data, "fast");
        ok(api.kubectl(v, &["create", "service", "nodeport", "front", "-n", &ns, "--tcp=80:8080"]));
        let svc = ok(api.kubectl(v, &["get", "svc", "front", "-n", &ns, "-o", "json"]));
        let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
        let ip = svc["spec"]["clusterIP"].as_str().unwrap();
        assert!(ip.starts_with("10."), "{svc}");
        let np = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&np), "{svc}");
        let table = ok(api.kubectl(v, &["get", "svc", "-n", &ns]));
        assert!(table.contains(&format!("80:{np}/TCP")), "{table}");
        // Deleting a namespace marks it Terminating (the controller empties it later).
        ok(api.kubectl(v, &["delete", "namespace", &ns, "--wait=false"]));
        let phase = ok(api.kubectl(v, &["get", "ns", &ns, "-o", "jsonpath={.status.phase}"]));
        assert_eq!(phase, "Terminating");
        let out = fails(api.kubectl(v, &["create", "configmap", "late", "-n", &ns, "--from-literal=a=b"]));
        assert!(out.contains("because it is being terminated"), "{out}");
        let out = fails(api.kubectl(v, &["create", "configmap", "x", "-n", "does-not-exist", "--from-literal=a=b"]));
        assert!(out.contains("namespaces \"does-not-exist\" not found"), "{out}");
    }
}

#[test]
fn bad_input_gets_the_upstream_status_and_changes_nothing() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        // 400: unknown field under strict validation (what kubectl sends).
        let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata: {a: b}\nbogus: 1\n";
        let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(bad)));
        assert!(out.contains("unknown field \"bogus\""), "{out}");
        // 422 with the field named.
        let bad =
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n    image: x\n";
        let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(bad)));
        assert!(out.contains("is invalid") && out.contains("metadata.name: Invalid value: \"Bad_Name\""), "{out}");
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dup\nspec:\n  containers:\n  - {name: c, image: x}\n  - {name: c, image: x2}\n";
        let out = fails(api.kubectl_stdin(v, &["create", "-f", "-"], Some(bad)));
        assert!(out.contains("spec.containers[1].name: Duplicate value: \"c\""), "{out}");
        // 409 AlreadyExists.
        ok(api.kubectl(v, &["create", "configmap", &format!("once{}", suffix(v))]));
        let out = fails(api.kubectl(v, &["create", "configmap", &format!("once{}", suffix(v))]));
        assert!(out.contains(&format!("configmaps \"once{}\" already exists", suffix(v))), "{out}");
    }
    // Raw HTTP for what kubectl will not send.
    let (code, body) = api
        .request("POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), Some(b"{not json"))
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\"") && body.contains("BadRequest"), "{body}");
    let (code, body) =
        api.request("POST", "/api/v1/namespaces/default/configmaps", Some("text/plain"), Some(b"x")).unwrap();
    assert_eq!(code, 415, "{body}");
    let big =
        format!("{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}", "x".repeat(3 * 1024 * 1024 + 10));
    let (code, body) = api
        .request("POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), Some(big.as_bytes()))
        .unwrap();
    assert_eq!(code, 413, "{body}");
    let (code, _) = api.request("GET", "/api/v1/namespaces/default/nosuchthings", None, None).unwrap();
    assert_eq!(code, 404);
    let (code, _) = api
        .request("POST", "/api/v1/namespaces/default/configmaps/x/status", Some("application/json"), Some(b"{}"))
        .unwrap();
    assert_eq!(code, 404);
    let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dupkey"},"data":{"a":"1","a":"2"}}"#;
    let (code, body) = api
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            Some("application/json"),
            Some(dup),
        )
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("duplicate field"), "{body}");
    // Nothing was stored by the failed requests.
    let names = ok(api.kubectl("1.33", &["get", "cm", "-o", "name"]));
    for n in ["strict", "big", "dupkey"] {
        assert!(!names.contains(&format!("configmap/{n}\n")), "{names}");
    }
}

#[test]
fn concurrent_conflicting_updates_let_exactly_one_win() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    ok(api.kubectl("1.33", &["create", "configmap", "race", "--from-literal=v=0"]));
    let current = ok(api.kubectl("1.33", &["get", "cm", "race", "-o", "json"]));
    let base: serde_json::Value = serde_json::from_str(&current).unwrap();
    let outcomes: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let mut obj = base.clone();
                obj["data"]["v"] = serde_json::json!((i + 1).to_string()); // never the current value: a no-op write succeeds without a version change
                let body = obj.to_string();
                let version = KUBECTL_VERSIONS[i % 2];
                s.spawn(move || {
                    let o = api.kubectl_stdin(version, &["replace", "-f", "-"], Some(&body));
                    (o.status.success(), integration::text(&o))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for (won, text) in &outcomes {
        if !won {
            assert!(
                text.contains(
                    "the object has been modified; please apply your changes to the latest version and try again"
                ),
                "{text}"
            );
        }
    }
}

#[test]
fn edit_server_side_apply_drain_and_rollout_verbs_work() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let s = suffix(v);
        let dep = format!("ed{s}");
        ok(api.kubectl(v, &["create", "deployment", &dep, "--image=nginx:1"]));
        // kubectl edit with a scripted editor.
        let mut cmd = std::process::Command::new(integration::kubectl_path(v));
        cmd.arg(format!("--kubeconfig={}", api.kubeconfig.display()))
            .args(["edit", "deployment", &dep])
            .env("EDITOR", "sed -i s/nginx:1/nginx:2/")
            .env("HOME", api.dir.path());
        let out = ok(cmd.output().unwrap());
        assert!(out.contains("edited"), "{out}");
        let image =
            ok(api.kubectl(v, &["get", "deploy", &dep, "-o", "jsonpath={.spec.template.spec.containers[0].image}"]));
        assert_eq!(image, "nginx:2");
        ok(api.kubectl(v, &["rollout", "pause", "deployment", &dep]));
        assert_eq!(ok(api.kubectl(v, &["get", "deploy", &dep, "-o", "jsonpath={.spec.paused}"])), "true");
        ok(api.kubectl(v, &["rollout", "resume", "deployment", &dep]));
        ok(api.kubectl(v, &["rollout", "restart", "deployment", &dep]));
        let ann = ok(api.kubectl(v, &["get", "deploy", &dep, "-o", "jsonpath={.spec.template.metadata.annotations}"]));
        assert!(ann.contains("kubectl.kubernetes.io/restartedAt"), "{ann}");
        let described = ok(api.kubectl(v, &["describe", "deployment", &dep]));
        assert!(described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"), "{described}");
        // Server-side apply is routed: create, then change.
        let cm =
            |val: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa{s}\ndata:\n  a: \"{val}\"\n");
        let out = ok(api.kubectl_stdin(v, &["apply", "--server-side", "-f", "-"], Some(&cm("1"))));
        assert!(out.contains("serverside-applied"), "{out}");
        ok(api.kubectl_stdin(v, &["apply", "--server-side", "-f", "-"], Some(&cm("2"))));
        assert_eq!(ok(api.kubectl(v, &["get", "cm", &format!("ssa{s}"), "-o", "jsonpath={.data.a}"])), "2");
        // drain: cordon and evict through pods/eviction.
        let node = format!("node{s}");
        ok(api.kubectl_stdin(
            v,
            &["create", "-f", "-"],
            Some(&format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n")),
        ));
        for i in 0..2 {
            let pod = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: dp{s}-{i}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox:1\n");
            ok(api.kubectl_stdin(v, &["create", "-f", "-"], Some(&pod)));
        }
        let out = ok(api.kubectl(v, &["drain", &node, "--force", "--grace-period=0", "--timeout=30s"]));
        assert!(out.contains("drained"), "{out}");
        let nodes = ok(api.kubectl(v, &["get", "node", &node]));
        assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
        let pods = ok(api.kubectl(v, &["get", "pods", "-o", "name"]));
        assert!(!pods.contains(&format!("dp{s}-")), "{pods}");
        ok(api.kubectl(v, &["uncordon", &node]));
    }
}

#[test]
fn jobs_and_cronjobs_get_generated_selectors_and_defaults() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    for v in KUBECTL_VERSIONS {
        let s = suffix(v);
        let job = format!("pi{s}");
        ok(api.kubectl(v, &["create", "job", &job, "--image=busybox:1", "--", "echo", "hi"]));
        let got = ok(api.kubectl(v, &["get", "job", &job, "-o", "json"]));
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        let uid = got["metadata"]["uid"].as_str().unwrap();
        assert_eq!(got["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(got["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"], job.as_str());
        assert_eq!(got["spec"]["backoffLimit"], 6);
        assert_eq!(got["spec"]["completions"], 1);
        let table = ok(api.kubectl(v, &["get", "jobs"]));
        assert!(table.contains("COMPLETIONS") && table.contains(&job), "{table}");
        let cj = format!("tick{s}");
        ok(api.kubectl(v, &["create", "cronjob", &cj, "--image=busybox:1", "--schedule=*/5 * * * *", "--", "date"]));
        let policy = ok(api.kubectl(
            v,
            &["get", "cronjob", &cj, "-o", "jsonpath={.spec.concurrencyPolicy} {.spec.successfulJobsHistoryLimit}"],
        ));
        assert_eq!(policy, "Allow 3");
        let out =
            fails(api.kubectl(v, &["create", "cronjob", &format!("bad{s}"), "--image=busybox:1", "--schedule=* * *"]));
        assert!(out.contains("spec.schedule"), "{out}");
    }
}
