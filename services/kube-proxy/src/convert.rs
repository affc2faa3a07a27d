//! From Services, EndpointSlices and this node to [`Frontend`]s: which
//! addresses a Service answers on, with which endpoints, under which
//! traffic policies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{Backend, Frontend, FrontendKey, Masquerade, NoEndpoints, Protocol};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

/// What the proxy knows of its own node.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// The addresses NodePorts are opened on.
    pub nodeport_ips: Vec<Ipv4Addr>,
}

/// One endpoint of a Service port as the EndpointSlices describe it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    backend: Backend,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Ready endpoints, or when there is none, the serving terminating ones.
fn usable(candidates: &[Candidate], local_only: bool) -> Vec<Backend> {
    let pick = |want_ready: bool| -> Vec<Backend> {
        let set: BTreeSet<Backend> = candidates
            .iter()
            .filter(|c| !local_only || c.local)
            .filter(|c| if want_ready { c.ready } else { c.serving && c.terminating })
            .map(|c| c.backend)
            .collect();
        set.into_iter().collect()
    };
    let ready = pick(true);
    if ready.is_empty() {
        pick(false)
    } else {
        ready
    }
}

/// The frontends of all `services`, and the endpoints on this node (for hairpin).
pub fn frontends(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &NodeInfo,
) -> (Vec<Frontend>, BTreeSet<Ipv4Addr>) {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, name.clone())).or_default().push(slice);
    }
    let mut out = Vec::new();
    let mut local_ips = BTreeSet::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let cluster_ips: Vec<Ipv4Addr> = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if cluster_ips.is_empty() {
            continue; // headless or not yet allocated
        }
        let external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
        let lb_ips: Vec<Ipv4Addr> = if kind == "LoadBalancer" {
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_ref()?.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
                .max(1) as u32
        });
        let svc_slices = by_service.get(&(ns.clone(), name.clone()));
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
            let Ok(svc_port) = u16::try_from(port.port) else { continue };
            let mut candidates = Vec::new();
            for slice in svc_slices.into_iter().flatten() {
                // The slice's port of the same name carries the resolved (possibly named) target port.
                let Some(target) = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                        && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else { continue };
                for ep in &slice.endpoints {
                    let c = ep.conditions.as_ref();
                    let ready = c.and_then(|c| c.ready).unwrap_or(true);
                    let local = ep.node_name.as_deref() == Some(node.name.as_str());
                    for addr in &ep.addresses {
                        let Ok(ip) = addr.parse::<Ipv4Addr>() else { continue };
                        if local {
                            local_ips.insert(ip);
                        }
                        candidates.push(Candidate {
                            backend: Backend { ip, port: target },
                            ready,
                            serving: c.and_then(|c| c.serving).unwrap_or(ready),
                            terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                            local,
                        });
                    }
                }
            }
            let all = usable(&candidates, false);
            let local = usable(&candidates, true);
            let label = format!("{ns}/{name}:{}", port.name.as_deref().unwrap_or(""));
            // No endpoint at all: refuse; endpoints elsewhere but none this policy may use: drop.
            let empty = |_: &Vec<Backend>| if all.is_empty() { NoEndpoints::Reject } else { NoEndpoints::Drop };
            let internal = if internal_local { local.clone() } else { all.clone() };
            let external = if external_local { local.clone() } else { all.clone() };
            // Local external policy: the node's and pods' own traffic still reaches every endpoint.
            let short_circuit = if external_local { all.clone() } else { Vec::new() };
            let mut push =
                |ip: Ipv4Addr, port: u16, backends: &Vec<Backend>, masquerade: Masquerade, external: bool| {
                    out.push(Frontend {
                        key: FrontendKey { ip, protocol, port },
                        backends: backends.clone(),
                        masquerade,
                        affinity_timeout: affinity,
                        no_endpoints: empty(backends),
                        cluster_backends: if external { short_circuit.clone() } else { Vec::new() },
                        service: label.clone(),
                    });
                };
            for ip in &cluster_ips {
                push(*ip, svc_port, &internal, Masquerade::OffCluster, false);
            }
            let ext_masq = if external_local { Masquerade::Never } else { Masquerade::Always };
            for ip in external_ips.iter().chain(&lb_ips) {
                push(*ip, svc_port, &external, ext_masq, true);
            }
            if matches!(kind, "NodePort" | "LoadBalancer") {
                if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
                    for ip in &node.nodeport_ips {
                        push(*ip, node_port, &external, ext_masq, true);
                    }
                }
            }
        }
    }
    // The same address and port twice (two Services claiming one external IP): keep the first.
    let mut seen = BTreeSet::new();
    out.retain(|f| seen.insert(f.key));
    (out, local_ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn node() -> NodeInfo {
        NodeInfo { name: "n1".into(), nodeport_ips: vec![Ipv4Addr::new(192, 168, 1, 10)] }
    }

    fn web(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP", "nodePort": 30080}]},
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        service(v)
    }

    fn web_slice() -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.244.2.2"], "conditions": {"ready": true}, "nodeName": "n2"},
                {"addresses": ["10.244.2.3"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "n2"},
            ],
        }))
    }

    #[test]
    fn named_target_ports_come_from_the_slice_and_node_ports_open_on_node_addresses() {
        let (f, local) = frontends(&[web(json!({}))], &[web_slice()], &node());
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key.to_string(), "10.96.0.10 . tcp . 80");
        assert_eq!(
            f[0].backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            ["10.244.1.2 . 8080", "10.244.2.2 . 8080"]
        );
        assert_eq!(f[0].masquerade, Masquerade::OffCluster);
        assert_eq!(f[1].key.to_string(), "192.168.1.10 . tcp . 30080");
        assert_eq!(f[1].masquerade, Masquerade::Always);
        assert_eq!(local, BTreeSet::from([Ipv4Addr::new(10, 244, 1, 2)]));
    }

    #[test]
    fn local_external_policy_keeps_only_local_endpoints_and_the_client_address() {
        let (f, _) = frontends(&[web(json!({"externalTrafficPolicy": "Local"}))], &[web_slice()], &node());
        assert_eq!(f[1].backends.len(), 1);
        assert_eq!(f[1].masquerade, Masquerade::Never);
        // The ClusterIP still uses every endpoint.
        assert_eq!(f[0].backends.len(), 2);
        let other = NodeInfo { name: "n3".into(), nodeport_ips: vec![Ipv4Addr::new(192, 168, 1, 11)] };
        let (f, _) = frontends(&[web(json!({"externalTrafficPolicy": "Local"}))], &[web_slice()], &other);
        assert!(f[1].backends.is_empty());
        assert_eq!(f[1].no_endpoints, NoEndpoints::Drop);
        // The node's and pods' own traffic goes to every ready endpoint; the ClusterIP has no such list.
        assert_eq!(
            f[1].cluster_backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            ["10.244.1.2 . 8080", "10.244.2.2 . 8080"]
        );
        assert!(f[0].cluster_backends.is_empty());
        let (f, _) = frontends(&[web(json!({}))], &[web_slice()], &other);
        assert!(f[1].cluster_backends.is_empty(), "Cluster policy needs no short circuit");
    }

    #[test]
    fn local_internal_policy_keeps_only_local_endpoints_for_the_cluster_ip() {
        let svc = || web(json!({"internalTrafficPolicy": "Local"}));
        let (f, _) = frontends(&[svc()], &[web_slice()], &node());
        assert_eq!(f[0].key.to_string(), "10.96.0.10 . tcp . 80");
        assert_eq!(f[0].backends.iter().map(|b| b.ip.to_string()).collect::<Vec<_>>(), ["10.244.1.2"]);
        assert_eq!(f[0].masquerade, Masquerade::OffCluster);
        // The NodePort (externalTrafficPolicy: Cluster) still uses every ready endpoint.
        assert_eq!(f[1].backends.len(), 2);
        // A node without a local endpoint drops ClusterIP traffic rather than rejecting it.
        let other = NodeInfo { name: "n3".into(), nodeport_ips: vec![] };
        let (f, _) = frontends(&[svc()], &[web_slice()], &other);
        assert!(f[0].backends.is_empty());
        assert_eq!(f[0].no_endpoints, NoEndpoints::Drop);
    }

    #[test]
    fn terminating_endpoints_serve_only_when_no_ready_one_is_left() {
        let mut s = web_slice();
        for ep in &mut s.endpoints[..2] {
            ep.conditions.as_mut().unwrap().ready = Some(false);
        }
        let (f, _) = frontends(&[web(json!({}))], &[s], &node());
        assert_eq!(f[0].backends.iter().map(|b| b.ip.to_string()).collect::<Vec<_>>(), ["10.244.2.3"]);
    }

    #[test]
    fn no_endpoints_reject_and_affinity_and_external_addresses_are_carried() {
        let svc = web(json!({
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "externalIPs": ["203.0.113.5"], "type": "LoadBalancer",
        }));
        let mut svc = svc;
        svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}})).unwrap();
        let (f, _) = frontends(&[svc], &[], &node());
        let keys: Vec<String> = f.iter().map(|f| f.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "10.96.0.10 . tcp . 80",
                "203.0.113.5 . tcp . 80",
                "198.51.100.7 . tcp . 80",
                "192.168.1.10 . tcp . 30080"
            ]
        );
        assert!(f.iter().all(|f| f.backends.is_empty() && f.no_endpoints == NoEndpoints::Reject));
        assert!(f.iter().all(|f| f.affinity_timeout == Some(60)));
    }

    #[test]
    fn headless_and_external_name_services_have_no_frontends() {
        let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        let external = web(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(frontends(&[headless, external], &[web_slice()], &node()).0.is_empty());
    }
}
