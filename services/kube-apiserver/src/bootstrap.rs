//! What exists in every cluster from the start: the system namespaces and the
//! `kubernetes` Service with endpoints pointing at this apiserver.

use serde_json::json;

use crate::endpoints::ApiServer;
use crate::registry::store::{Target, WriteOptions};

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates upstream's default RBAC roles and bindings that are missing.
pub async fn ensure_rbac_policy(server: &ApiServer) -> anyhow::Result<()> {
    let store = &server.store;
    let opts = WriteOptions::default();
    let lookup = |plural: &str| {
        server
            .resources
            .lookup("rbac.authorization.k8s.io", "v1", plural)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no {plural}"))
    };
    let sets: Vec<(_, Vec<serde_json::Value>)> = vec![
        (lookup("clusterroles")?, rbac::bootstrap_cluster_roles().iter().map(to_json).collect()),
        (lookup("clusterrolebindings")?, rbac::bootstrap_cluster_role_bindings().iter().map(to_json).collect()),
        (lookup("roles")?, rbac::bootstrap_roles().iter().map(to_json).collect()),
        (lookup("rolebindings")?, rbac::bootstrap_role_bindings().iter().map(to_json).collect()),
    ];
    let mut created = 0;
    for (d, objects) in sets {
        for mut obj in objects {
            obj["apiVersion"] = json!(d.api_version());
            obj["kind"] = json!(d.kind);
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            match store.create(&d, &ns, obj, &opts, |_| Ok(())).await {
                Ok(_) => created += 1,
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => anyhow::bail!("creating bootstrap {}: {e}", d.plural),
            }
        }
    }
    if created > 0 {
        tracing::info!(created, "created bootstrap RBAC policy objects");
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// Creates the system namespaces and the `kubernetes` service if missing and
/// points its endpoints at this server. Safe to run on every start.
pub async fn ensure(server: &ApiServer) -> anyhow::Result<()> {
    let store = &server.store;
    let opts = WriteOptions::default();
    let nsd =
        server.resources.lookup("", "v1", "namespaces").cloned().ok_or_else(|| anyhow::anyhow!("no namespaces"))?;
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match store.create(&nsd, "", obj, &opts, |_| Ok(())).await {
            Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => anyhow::bail!("creating namespace {ns}: {e}"),
        }
    }
    // The built-in priority classes.
    if let Some(pcd) = server.resources.lookup("scheduling.k8s.io", "v1", "priorityclasses").cloned() {
        for (name, value, description) in [
            ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
            ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
        ] {
            let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                            "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"});
            match store.create(&pcd, "", pc, &opts, |_| Ok(())).await {
                Ok(_) | Err(apimachinery::status::ApiError { reason: "AlreadyExists", .. }) => {}
                Err(e) => anyhow::bail!("creating priority class {name}: {e}"),
            }
        }
    }
    let ip = server.allocator.as_ref().map(|a| a.first_ip().to_string());
    let svcd = server.resources.lookup("", "v1", "services").cloned().ok_or_else(|| anyhow::anyhow!("no services"))?;
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "sessionAffinity": "None", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.config.secure_port}]},
    });
    if store.get(&svcd, "default", "kubernetes").await.is_err() {
        if let Some(ip) = &ip {
            svc["spec"]["clusterIP"] = json!(ip);
        }
        if let Some(alloc) = &server.allocator {
            alloc.allocate_for(&mut svc).await?;
        }
        match store.create(&svcd, "default", svc, &opts, |_| Ok(())).await {
            Ok(_) | Err(apimachinery::status::ApiError { reason: "AlreadyExists", .. }) => {}
            Err(e) => anyhow::bail!("creating the kubernetes service: {e}"),
        }
    }
    let epd = server.resources.lookup("", "v1", "endpoints").cloned().ok_or_else(|| anyhow::anyhow!("no endpoints"))?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": server.config.advertise_address}], "ports": [{"name": "https", "port": server.config.secure_port, "protocol": "TCP"}]}],
    });
    let e2 = endpoints.clone();
    let r =
        store.update(&epd, "default", "kubernetes", Target::Main, &opts, move |_| Ok(e2.clone()), |_, _| Ok(())).await;
    if let Err(e) = r {
        if e.is_not_found() {
            store
                .create(&epd, "default", endpoints, &opts, |_| Ok(()))
                .await
                .map_err(|e| anyhow::anyhow!("creating kubernetes endpoints: {e}"))?;
        } else {
            anyhow::bail!("updating kubernetes endpoints: {e}");
        }
    }
    // The same endpoint as an EndpointSlice, which kube-proxy reads.
    let esd = server
        .resources
        .lookup("discovery.k8s.io", "v1", "endpointslices")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no endpointslices"))?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "kube-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [server.config.advertise_address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": server.config.secure_port, "protocol": "TCP"}],
    });
    let s2 = slice.clone();
    let r =
        store.update(&esd, "default", "kubernetes", Target::Main, &opts, move |_| Ok(s2.clone()), |_, _| Ok(())).await;
    if let Err(e) = r {
        if e.is_not_found() {
            store
                .create(&esd, "default", slice, &opts, |_| Ok(()))
                .await
                .map_err(|e| anyhow::anyhow!("creating the kubernetes endpointslice: {e}"))?;
        } else {
            anyhow::bail!("updating the kubernetes endpointslice: {e}");
        }
    }
    Ok(())
}
