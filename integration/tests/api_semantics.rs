//! API semantics over raw HTTPS against the real binary and real etcd: what
//! controllers and the kubelet rely on beyond kubectl's everyday verbs.

use integration::{ApiServer, ControlPlane, Etcd};
use serde_json::{json, Value};

fn pod(name: &str, labels: Value, node: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
        },
    })
}

#[test]
fn status_writes_change_only_status_and_main_writes_ignore_status() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = api.json("POST", base, Some(&deployment("d1")));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created.get("status").is_none_or(|s| s.is_null() || s == &json!({})), "{created}");
    // Writing /status with a changed spec: only status changes.
    let mut s = created.clone();
    s["spec"]["replicas"] = json!(9);
    s["status"] = json!({"replicas": 1, "readyReplicas": 1, "observedGeneration": 1});
    let (code, after) = api.json("PUT", &format!("{base}/d1/status"), Some(&s));
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["spec"]["replicas"], 1);
    assert_eq!(after["status"]["readyReplicas"], 1);
    assert_eq!(after["metadata"]["generation"], 1);
    // Writing the main resource with a changed status: status is kept.
    let mut m = after.clone();
    m["status"] = json!({"replicas": 42});
    m["spec"]["replicas"] = json!(3);
    let (code, after) = api.json("PUT", &format!("{base}/d1"), Some(&m));
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"]["readyReplicas"], 1);
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(after["metadata"]["generation"], 2);
    // A metadata-only change does not bump the generation.
    let (_, after) = api.json("PATCH", &format!("{base}/d1"), Some(&json!({"metadata": {"labels": {"x": "y"}}})));
    assert_eq!(after["metadata"]["generation"], 2);
    // A stale resourceVersion is a 409.
    let (code, body) = api.json("PUT", &format!("{base}/d1"), Some(&m));
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    // Scale subresource.
    let (code, scale) = api.json("GET", &format!("{base}/d1/scale"), None);
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=d1");
}

#[test]
fn graceful_deletion_finalizers_and_propagation_policy() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let pods = "/api/v1/namespaces/default/pods";
    // A scheduled pod is deleted gracefully: it stays, marked, until grace 0.
    assert_eq!(api.json("POST", pods, Some(&pod("sched", json!({}), Some("node-a")))).0, 201);
    let (code, marked) = api.json("DELETE", &format!("{pods}/sched"), None);
    assert_eq!(code, 200, "{marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(api.json("GET", &format!("{pods}/sched"), None).0, 200);
    let (code, _) = api.json("DELETE", &format!("{pods}/sched?gracePeriodSeconds=0"), None);
    assert_eq!(code, 200);
    assert_eq!(api.json("GET", &format!("{pods}/sched"), None).0, 404);
    // An unscheduled pod goes at once.
    assert_eq!(api.json("POST", pods, Some(&pod("unsched", json!({}), None))).0, 201);
    assert_eq!(api.json("DELETE", &format!("{pods}/unsched"), None).0, 200);
    assert_eq!(api.json("GET", &format!("{pods}/unsched"), None).0, 404);
    // Finalizers hold an object until they are removed.
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"a": "b"}});
    assert_eq!(api.json("POST", cms, Some(&cm)).0, 201);
    let (_, marked) = api.json("DELETE", &format!("{cms}/held"), None);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    let (code, body) = api.json(
        "PATCH",
        &format!("{cms}/held"),
        Some(&json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}})),
    );
    assert_eq!(code, 422, "no new finalizers on a terminating object: {body}");
    let (code, _) = api.json("PATCH", &format!("{cms}/held"), Some(&json!({"metadata": {"finalizers": null}})));
    assert_eq!(code, 200);
    assert_eq!(api.json("GET", &format!("{cms}/held"), None).0, 404);
    // propagationPolicy=Orphan and Foreground are stored as finalizers for the garbage collector.
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    assert_eq!(api.json("POST", deps, Some(&deployment("orph"))).0, 201);
    let (_, o) = api.json("DELETE", &format!("{deps}/orph?propagationPolicy=Orphan"), None);
    assert_eq!(o["metadata"]["finalizers"], json!(["orphan"]));
    assert_eq!(api.json("POST", deps, Some(&deployment("fg"))).0, 201);
    let (_, f) = api.json(
        "DELETE",
        &format!("{deps}/fg"),
        Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})),
    );
    assert_eq!(f["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (code, body) = api.json("DELETE", &format!("{deps}/fg?propagationPolicy=Sideways"), None);
    assert_eq!(code, 422, "{body}");
}

#[test]
fn dry_run_generate_name_and_uid_preconditions() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, obj) = api.json("POST", &format!("{cms}?dryRun=All"), Some(&json!({"metadata": {"name": "dry"}})));
    assert_eq!(code, 201, "{obj}");
    assert!(obj["metadata"]["uid"].is_string());
    assert_eq!(api.json("GET", &format!("{cms}/dry"), None).0, 404);
    let (code, obj) = api.json("POST", cms, Some(&json!({"metadata": {"generateName": "gen-"}})));
    assert_eq!(code, 201, "{obj}");
    let name = obj["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let (code, _) = api.json("DELETE", &format!("{cms}/{name}?dryRun=All"), None);
    assert_eq!(code, 200);
    assert_eq!(api.json("GET", &format!("{cms}/{name}"), None).0, 200);
    let (code, body) =
        api.json("DELETE", &format!("{cms}/{name}"), Some(&json!({"preconditions": {"uid": "not-the-uid"}})));
    assert_eq!(code, 409, "{body}");
    assert_eq!(api.json("GET", &format!("{cms}/{name}"), None).0, 200);
    let (code, body) = api.json("POST", &format!("{cms}?dryRun=Some"), Some(&json!({"metadata": {"name": "x"}})));
    assert_eq!(code, 400, "{body}");
}

#[test]
fn label_and_field_selectors_and_paginated_lists() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let pods = "/api/v1/namespaces/default/pods";
    for i in 0..7 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        let node = if i < 3 { Some("node-a") } else { None };
        assert_eq!(
            api.json("POST", pods, Some(&pod(&format!("p{i}"), json!({"tier": tier, "idx": i.to_string()}), node))).0,
            201
        );
    }
    let names = |q: &str| -> Vec<String> {
        let (code, list) = api.json("GET", &format!("{pods}?{q}"), None);
        assert_eq!(code, 200, "{q}: {list}");
        assert_eq!(list["kind"], "PodList");
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("labelSelector=tier%3Dweb"), ["p0", "p2", "p4", "p6"]);
    assert_eq!(names("labelSelector=tier!%3Dweb"), ["p1", "p3", "p5"]);
    assert_eq!(names("labelSelector=idx%20in%20(1,2)"), ["p1", "p2"]);
    assert_eq!(names("labelSelector=idx%20notin%20(1,2),tier"), ["p0", "p3", "p4", "p5", "p6"]);
    assert_eq!(names("labelSelector=!missing,tier%3Ddb"), ["p1", "p3", "p5"]);
    assert_eq!(names("fieldSelector=spec.nodeName%3Dnode-a"), ["p0", "p1", "p2"]);
    assert_eq!(names("fieldSelector=spec.nodeName%3D,status.phase%3DPending"), ["p3", "p4", "p5", "p6"]);
    assert_eq!(names("fieldSelector=metadata.name%3Dp5"), ["p5"]);
    let (code, body) = api.json("GET", &format!("{pods}?fieldSelector=spec.bogus%3Dx"), None);
    assert_eq!(code, 400, "{body}");
    let (code, body) = api.json("GET", &format!("{pods}?labelSelector=a%20in%20(b"), None);
    assert_eq!(code, 400, "{body}");
    // limit/continue over three pages, consistent at the first page's revision.
    let (_, page1) = api.json("GET", &format!("{pods}?limit=3"), None);
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    assert_eq!(page1["metadata"]["remainingItemCount"], 4);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // A change after page 1 does not show up in page 2.
    assert_eq!(api.json("POST", pods, Some(&pod("p9", json!({}), None))).0, 201);
    let (_, page2) = api.json("GET", &format!("{pods}?limit=3&continue={token}"), None);
    assert_eq!(page2["items"].as_array().unwrap().len(), 3, "{page2}");
    assert_eq!(page2["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);
    let token = page2["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, page3) = api.json("GET", &format!("{pods}?limit=3&continue={token}"), None);
    let last: Vec<&str> =
        page3["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(last, ["p6"]);
    assert!(page3["metadata"].get("continue").is_none_or(|c| c.is_null() || c == ""), "{page3}");
    let (code, _) = api.json("GET", &format!("{pods}?limit=3&continue=garbage"), None);
    assert_eq!(code, 400);
    // Cluster-wide list across namespaces.
    let (_, all) = api.json("GET", "/api/v1/pods?labelSelector=tier", None);
    assert_eq!(all["items"].as_array().unwrap().len(), 7);
}

#[test]
fn binding_assigns_a_node_once_and_eviction_respects_disruption_budgets() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(api.json("POST", pods, Some(&pod("b1", json!({"app": "guarded"}), None))).0, 201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b1"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let (code, body) = api.json("POST", &format!("{pods}/b1/binding"), Some(&binding));
    assert_eq!(code, 201, "{body}");
    let (_, p) = api.json("GET", &format!("{pods}/b1"), None);
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert!(
        p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"),
        "{p}"
    );
    let (code, body) = api.json("POST", &format!("{pods}/b1/binding"), Some(&binding));
    assert_eq!(code, 409, "{body}");
    // A PDB allowing no disruptions blocks eviction with 429.
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}});
    let (code, created) = api.json("POST", pdbs, Some(&pdb));
    assert_eq!(code, 201, "{created}");
    let mut with_status = created.clone();
    with_status["status"] =
        json!({"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
    assert_eq!(api.json("PUT", &format!("{pdbs}/guard/status"), Some(&with_status)).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "b1"}});
    let (code, body) = api.json("POST", &format!("{pods}/b1/eviction"), Some(&eviction));
    assert_eq!(code, 429, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disruption budget"), "{body}");
    let (_, current) = api.json("GET", &format!("{pdbs}/guard"), None);
    let mut allow = current.clone();
    allow["status"]["disruptionsAllowed"] = json!(1);
    assert_eq!(api.json("PUT", &format!("{pdbs}/guard/status"), Some(&allow)).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, body) = api.json("POST", &format!("{pods}/b1/eviction"), Some(&eviction));
    assert_eq!(code, 201, "{body}");
    let (_, p) = api.json("GET", &format!("{pods}/b1"), None);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
}

#[test]
fn two_apiservers_never_hand_out_the_same_cluster_ip() {
    let etcd = Etcd::start().unwrap();
    // A /28 has 14 usable addresses; the kubernetes service takes the first.
    let range = ["--service-cluster-ip-range=10.200.0.0/28"];
    let a = ApiServer::start_with(&etcd, &range).unwrap();
    let b = ApiServer::start_with(&etcd, &range).unwrap();
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let server = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let svc = json!({"metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}});
                    server.json("POST", "/api/v1/namespaces/default/services", Some(&svc))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = results
        .iter()
        .filter(|(code, _)| *code == 201)
        .map(|(_, s)| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 13, "13 free addresses for 16 services: {results:?}");
    ips.push("10.200.0.1".into());
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 14, "an address was handed out twice");
    assert!(results.iter().filter(|(c, _)| *c != 201).all(|(c, _)| *c == 500), "{results:?}");
    // Deleting a service frees its address for the other apiserver.
    let victim = results.iter().find(|(c, _)| *c == 201).unwrap().1["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(a.json("DELETE", &format!("/api/v1/namespaces/default/services/{victim}"), None).0, 200);
    let svc = json!({"metadata": {"name": "reuse"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(b.json("POST", "/api/v1/namespaces/default/services", Some(&svc)).0, 201);
}

#[test]
fn the_apiserver_fails_over_between_etcd_endpoints() {
    let etcd = Etcd::start().unwrap();
    let dead = format!("http://127.0.0.1:{}", integration::free_port());
    let servers = format!("--etcd-servers={dead},{}", etcd.client_url);
    // The harness passes its own --etcd-servers first; a later flag wins.
    let api = ApiServer::start_with(&etcd, &[&servers]).unwrap();
    for i in 0..10 {
        let (code, body) = api.json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&json!({"metadata": {"name": format!("f{i}")}})),
        );
        assert_eq!(code, 201, "{body}");
    }
}

#[test]
fn tables_partial_metadata_and_protobuf_are_negotiated() {
    let cp = ControlPlane::start().unwrap();
    let api = &cp.apiserver;
    assert_eq!(api.json("POST", "/api/v1/namespaces/default/pods", Some(&pod("t1", json!({"a": "b"}), None))).0, 201);
    let (code, body, _) = api
        .request_with_headers(
            "GET",
            "/api/v1/namespaces/default/pods",
            &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io"],
        )
        .unwrap();
    assert_eq!(code, 200);
    let t: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "t1");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["labels"]["a"], "b");
    let (_, body, _) = api
        .request_with_headers(
            "GET",
            "/api/v1/namespaces/default/pods",
            &["Accept: application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"],
        )
        .unwrap();
    let l: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert!(l["items"][0].get("spec").is_none());
    let (code, body, headers) = api
        .request_with_headers(
            "GET",
            "/api/v1/namespaces/default/pods/t1",
            &["Accept: application/vnd.kubernetes.protobuf"],
        )
        .unwrap();
    assert_eq!(code, 200);
    assert!(headers.to_lowercase().contains("content-type: application/vnd.kubernetes.protobuf"), "{headers}");
    assert_eq!(&body[..4], b"k8s\0");
    let (_, body, headers) = api
        .request_with_headers(
            "GET",
            "/apis",
            &["Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"],
        )
        .unwrap();
    assert!(headers.contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), "{headers}");
    let d: Value = serde_json::from_slice(&body).unwrap();
    assert!(d["items"].as_array().unwrap().iter().any(|g| g["metadata"]["name"] == "apps"));
    let (code, body, _) = api.request_with_headers("GET", "/metrics", &[]).unwrap();
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("apiserver_request_total{") && text.contains("apiserver_storage_objects{resource=\"pods\"}"),
        "{text}"
    );
}

#[test]
fn service_type_changes_allocate_and_free_node_ports() {
    let etcd = Etcd::start().unwrap();
    // A range of two ports makes reuse observable.
    let api = ApiServer::start_with(&etcd, &["--service-node-port-range=30000-30001"]).unwrap();
    let svcs = "/api/v1/namespaces/default/services";
    let svc = json!({"metadata": {"name": "flip"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(api.json("POST", svcs, Some(&svc)).0, 201);
    let (code, s) = api.json("PATCH", &format!("{svcs}/flip"), Some(&json!({"spec": {"type": "NodePort"}})));
    assert_eq!(code, 200, "{s}");
    let port = s["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port after the type change");
    assert!((30000..=30001).contains(&port), "{s}");
    // Another NodePort service takes the other port; a third finds none.
    let other = json!({"metadata": {"name": "other"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    assert_eq!(api.json("POST", svcs, Some(&other)).0, 201);
    let third = json!({"metadata": {"name": "third"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    assert_eq!(api.json("POST", svcs, Some(&third)).0, 500);
    // Back to ClusterIP: the port is dropped and freed for the third service.
    let (code, s) = api.json("PATCH", &format!("{svcs}/flip"), Some(&json!({"spec": {"type": "ClusterIP"}})));
    assert_eq!(code, 200, "{s}");
    assert!(s["spec"]["ports"][0].get("nodePort").is_none(), "{s}");
    let (code, s) = api.json("POST", svcs, Some(&third));
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["spec"]["ports"][0]["nodePort"].as_u64(), Some(port));
}
