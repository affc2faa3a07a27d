//! The node's pod network: once the node has a `spec.podCIDR`, the CNI
//! configuration for the project's `rustkube-bridge` plugin (chained with
//! `portmap`) is written into the CNI config dir, which makes the runtime's
//! network ready; and every other node's pod CIDR is routed via that node's
//! InternalIP, so that pods reach each other across nodes directly, without
//! NAT (host-gateway routing between nodes on one L2 segment).

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

pub const CONFLIST_NAME: &str = "10-rustkube.conflist";

pub struct NetworkSettings {
    pub node_name: String,
    pub conf_dir: PathBuf,
    /// IPAM state of the plugin, per node (under the kubelet's root dir).
    pub data_dir: PathBuf,
    /// The cluster's pod network: traffic leaving it is masqueraded by the plugin.
    pub cluster_cidr: Option<String>,
    /// `--pod-cidr`, used when the node has none (standalone mode).
    pub pod_cidr: Option<String>,
}

/// The conflist for a pod CIDR.
pub fn conflist(s: &NetworkSettings, pod_cidr: &str) -> String {
    let mut plugin = serde_json::json!({
        "type": "rustkube-bridge",
        "subnet": pod_cidr,
        "dataDir": s.data_dir,
    });
    if let Some(c) = &s.cluster_cidr {
        plugin["clusterCIDR"] = serde_json::Value::String(c.clone());
    }
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "rustkube",
        "plugins": [plugin, {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}],
    });
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

fn write_conflist(s: &NetworkSettings, pod_cidr: &str) {
    let path = s.conf_dir.join(CONFLIST_NAME);
    let text = conflist(s, pod_cidr);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return;
    }
    let tmp = s.conf_dir.join(format!(".{CONFLIST_NAME}.tmp"));
    let result = std::fs::create_dir_all(&s.conf_dir)
        .and_then(|_| std::fs::write(&tmp, &text))
        .and_then(|_| std::fs::rename(&tmp, &path));
    match result {
        Ok(()) => tracing::info!(pod_cidr, path = %path.display(), "wrote the CNI configuration"),
        Err(e) => tracing::warn!(path = %path.display(), "writing the CNI configuration: {e}"),
    }
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status.as_ref()?.addresses.as_ref()?.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone())
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip").args(args).status().map(|s| s.success()).unwrap_or(false)
}

/// Watches the nodes: writes this node's CNI config and routes the others' pod CIDRs.
pub async fn run(client: kube::Client, s: NetworkSettings) -> anyhow::Result<()> {
    if let Some(cidr) = &s.pod_cidr {
        write_conflist(&s, cidr);
    }
    let api: Api<Node> = Api::all(client);
    let mut stream = Box::pin(watcher::watcher(api, watcher::Config::default()).default_backoff());
    // Routes this kubelet installed: pod CIDR → gateway.
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<String, Node>> = None;
    while let Some(event) = stream.try_next().await? {
        match event {
            Event::Init => relisting = Some(BTreeMap::new()),
            Event::InitApply(n) => {
                if let Some(r) = relisting.as_mut() {
                    r.insert(n.metadata.name.clone().unwrap_or_default(), n);
                }
            }
            Event::InitDone => nodes = relisting.take().unwrap_or_default(),
            Event::Apply(n) => {
                nodes.insert(n.metadata.name.clone().unwrap_or_default(), n);
            }
            Event::Delete(n) => {
                nodes.remove(n.metadata.name.as_deref().unwrap_or(""));
            }
        }
        if relisting.is_some() {
            continue;
        }
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (name, node) in &nodes {
            let cidr = node.spec.as_ref().and_then(|sp| sp.pod_cidr.clone());
            if *name == s.node_name {
                if let Some(c) = cidr.or(s.pod_cidr.clone()) {
                    write_conflist(&s, &c);
                }
                continue;
            }
            if let (Some(c), Some(gw)) = (cidr, internal_ip(node)) {
                wanted.insert(c, gw);
            }
        }
        for (cidr, gw) in &wanted {
            if routes.get(cidr) != Some(gw) {
                if ip(&["route", "replace", cidr, "via", gw]) {
                    tracing::info!(%cidr, via = %gw, "routing another node's pods");
                    routes.insert(cidr.clone(), gw.clone());
                } else {
                    tracing::warn!(%cidr, via = %gw, "could not add the route");
                }
            }
        }
        let stale: Vec<String> = routes.keys().filter(|c| !wanted.contains_key(*c)).cloned().collect();
        for cidr in stale {
            let _ = ip(&["route", "del", &cidr]);
            routes.remove(&cidr);
        }
    }
    Ok(())
}
