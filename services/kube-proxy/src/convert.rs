//! From Services, EndpointSlices and this node to [`Frontend`]s: which
//! addresses a Service answers on, with which endpoints, under which
//! traffic policies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{Backend, Frontend, FrontendKey, Masquerade, NoEndpoints, Protocol};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

/// What the proxy knows of its own node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// A Service's namespace and name.
pub type ServiceKey = (String, String);

/// The frontends of all `services`, and the endpoints on this node (for
/// hairpin). Where two Services claim one address and port, the first by
/// namespace and name has it.
pub fn frontends(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &NodeInfo,
) -> (Vec<Frontend>, BTreeSet<Ipv4Addr>) {
    let mut converter = Converter::default();
    converter.update(services, slices, node);
    (converter.frontends().cloned().collect(), converter.local_ips())
}

/// Converts one Service with its EndpointSlices: its frontends into `out`,
/// its endpoints on this node into `local_ips`.
fn convert_service(
    svc: &Service,
    slices: &[&EndpointSlice],
    node: &NodeInfo,
    out: &mut Vec<Frontend>,
    local_ips: &mut BTreeSet<Ipv4Addr>,
) {
    let Some(spec) = &svc.spec else { return };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return;
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
        return; // headless or not yet allocated
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
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
        let Ok(svc_port) = u16::try_from(port.port) else { continue };
        let mut candidates = Vec::new();
        for slice in slices {
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
        let mut push = |ip: Ipv4Addr, port: u16, backends: &Vec<Backend>, masquerade: Masquerade, external: bool| {
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

/// What a Service was converted from: its resourceVersion and its slices'
/// names and resourceVersions, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    service: String,
    slices: Vec<(String, String)>,
}

impl Fingerprint {
    /// `None` when an object has no resourceVersion (then it is converted every time).
    fn of(svc: &Service, slices: &[&EndpointSlice]) -> Option<Fingerprint> {
        let service = svc.metadata.resource_version.clone()?;
        let mut names = Vec::with_capacity(slices.len());
        for s in slices {
            names.push((s.metadata.name.clone().unwrap_or_default(), s.metadata.resource_version.clone()?));
        }
        names.sort();
        Some(Fingerprint { service, slices: names })
    }

    /// Whether `svc` and `slices` are what this was taken from (without allocating).
    fn matches(&self, svc: &Service, slices: &[&EndpointSlice]) -> bool {
        svc.metadata.resource_version.as_deref() == Some(self.service.as_str())
            && slices.len() == self.slices.len()
            && slices.iter().all(|s| {
                let name = s.metadata.name.as_deref().unwrap_or_default();
                let Some(version) = s.metadata.resource_version.as_deref() else { return false };
                self.slices.binary_search_by(|(n, v)| (n.as_str(), v.as_str()).cmp(&(name, version))).is_ok()
            })
    }
}

#[derive(Debug, Default)]
struct Converted {
    fingerprint: Option<Fingerprint>,
    keys: Vec<FrontendKey>,
    local_ips: BTreeSet<Ipv4Addr>,
    /// The last [`Converter::update`] that saw the Service.
    seen: u64,
}

/// Frontend changes: the new frontend of each changed key, `None` for a removed one.
pub type Changes = BTreeMap<FrontendKey, Option<Frontend>>;

/// Converts incrementally: only the Services whose object or EndpointSlices
/// changed (by resourceVersion) since the last [`Converter::update`] are
/// converted again, so one change costs a scan of every Service's and slice's
/// version (grouping the slices by Service, and comparing each Service's
/// versions in place) rather than a conversion of every Service. Objects
/// without a resourceVersion are converted every time.
#[derive(Debug, Default)]
pub struct Converter {
    node: Option<NodeInfo>,
    /// Namespace → name → what the Service was converted to.
    services: HashMap<String, HashMap<String, Converted>>,
    /// Every Service's claim on each frontend key; the first Service has it.
    claims: BTreeMap<FrontendKey, BTreeMap<ServiceKey, Frontend>>,
    generation: u64,
}

impl Converter {
    /// Converts what changed among `services` and `slices` (the whole
    /// current state) and returns the frontends that changed.
    pub fn update<'a, S, E>(&mut self, services: S, slices: E, node: &NodeInfo) -> Changes
    where
        S: IntoIterator<Item = &'a Service>,
        E: IntoIterator<Item = &'a EndpointSlice>,
    {
        if self.node.as_ref() != Some(node) {
            // NodePort addresses or the node's name changed: everything again.
            for c in self.services.values_mut().flat_map(HashMap::values_mut) {
                c.fingerprint = None;
            }
            self.node = Some(node.clone());
        }
        self.generation += 1;
        let generation = self.generation;
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            by_service.entry((ns, name.as_str())).or_default().push(slice);
        }
        let mut touched: BTreeMap<FrontendKey, Option<Frontend>> = BTreeMap::new();
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let svc_slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
            if let Some(c) = self.services.get_mut(ns).and_then(|n| n.get_mut(name)) {
                c.seen = generation;
                if c.fingerprint.as_ref().is_some_and(|f| f.matches(svc, svc_slices)) {
                    continue;
                }
            }
            let key: ServiceKey = (ns.to_string(), name.to_string());
            let mut out = Vec::new();
            let mut local_ips = BTreeSet::new();
            convert_service(svc, svc_slices, node, &mut out, &mut local_ips);
            self.release(&key, &mut touched);
            let mut keys = Vec::with_capacity(out.len());
            for f in out {
                let fk = f.key;
                let claim = self.claims.entry(fk).or_default();
                if claim.contains_key(&key) {
                    continue; // the same key twice in one Service: the first
                }
                touched.entry(fk).or_insert_with(|| claim.values().next().cloned());
                claim.insert(key.clone(), f);
                keys.push(fk);
            }
            let converted =
                Converted { fingerprint: Fingerprint::of(svc, svc_slices), keys, local_ips, seen: generation };
            self.services.entry(key.0).or_default().insert(key.1, converted);
        }
        let gone: Vec<ServiceKey> = self
            .services
            .iter()
            .flat_map(|(ns, names)| names.iter().map(move |(name, c)| (ns, name, c)))
            .filter(|(_, _, c)| c.seen != generation)
            .map(|(ns, name, _)| (ns.clone(), name.clone()))
            .collect();
        for key in gone {
            self.release(&key, &mut touched);
            if let Some(names) = self.services.get_mut(&key.0) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.services.remove(&key.0);
                }
            }
        }
        // `touched` holds each key's frontend before; keep those that changed, with their new value.
        let mut changes = Changes::new();
        for (fk, before) in touched {
            let after = self.claims.get(&fk).and_then(|c| c.values().next());
            if before.as_ref() != after {
                changes.insert(fk, after.cloned());
            }
        }
        changes
    }

    /// Withdraws a Service's claims, noting each key's frontend before.
    fn release(&mut self, key: &ServiceKey, touched: &mut BTreeMap<FrontendKey, Option<Frontend>>) {
        let Some(c) = self.services.get_mut(&key.0).and_then(|n| n.get_mut(&key.1)) else { return };
        for fk in std::mem::take(&mut c.keys) {
            if let Some(claim) = self.claims.get_mut(&fk) {
                touched.entry(fk).or_insert_with(|| claim.values().next().cloned());
                claim.remove(key);
                if claim.is_empty() {
                    self.claims.remove(&fk);
                }
            }
        }
    }

    /// Every current frontend, in key order.
    pub fn frontends(&self) -> impl Iterator<Item = &Frontend> {
        self.claims.values().filter_map(|c| c.values().next())
    }

    /// The endpoints on this node (for hairpin).
    pub fn local_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.services.values().flat_map(HashMap::values).flat_map(|c| c.local_ips.iter().copied()).collect()
    }
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
                "192.168.1.10 . tcp . 30080",
                "198.51.100.7 . tcp . 80",
                "203.0.113.5 . tcp . 80",
            ]
        );
        assert!(f.iter().all(|f| f.backends.is_empty() && f.no_endpoints == NoEndpoints::Reject));
        assert!(f.iter().all(|f| f.affinity_timeout == Some(60)));
    }

    fn versioned<T: serde::Serialize + serde::de::DeserializeOwned>(object: &T, version: &str) -> T {
        let mut v = serde_json::to_value(object).unwrap();
        v["metadata"]["resourceVersion"] = json!(version);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_converter_reconverts_only_what_changed() {
        let mut c = Converter::default();
        let web1 = versioned(&web(json!({})), "1");
        let mut other = web(json!({"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"], "type": "ClusterIP"}));
        other.metadata.name = Some("other".into());
        let other = versioned(&other, "2");
        let slice1 = versioned(&web_slice(), "3");
        let changes = c.update([&web1, &other], [&slice1], &node());
        assert_eq!(changes.len(), 3);
        assert!(changes.values().all(Option::is_some));
        // Nothing changed: nothing to do.
        assert!(c.update([&web1, &other], [&slice1], &node()).is_empty());
        // A slice update (new version): only that Service's frontends, with the new endpoints.
        let mut slice2 = web_slice();
        slice2.endpoints.truncate(1);
        let slice2 = versioned(&slice2, "4");
        let changes = c.update([&web1, &other], [&slice2], &node());
        let keys: Vec<String> = changes.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["10.96.0.10 . tcp . 80", "192.168.1.10 . tcp . 30080"]);
        assert!(changes.values().all(|f| f.as_ref().is_some_and(|f| f.backends.len() == 1)));
        // The same version again but different content is not looked at (versions decide).
        let mut same_version = slice2.clone();
        same_version.endpoints.clear();
        assert!(c.update([&web1, &other], [&same_version], &node()).is_empty());
        // A Service goes: its frontends are removed.
        let changes = c.update([&web1], [&slice2], &node());
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes.get(&FrontendKey { ip: Ipv4Addr::new(10, 96, 0, 11), protocol: Protocol::Tcp, port: 80 }),
            Some(&None)
        );
        // Another node address: the NodePort moves, the ClusterIP stays as it was.
        let moved = NodeInfo { name: "n1".into(), nodeport_ips: vec![Ipv4Addr::new(192, 168, 1, 20)] };
        let changes = c.update([&web1], [&slice2], &moved);
        let keys: Vec<String> = changes.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["192.168.1.10 . tcp . 30080", "192.168.1.20 . tcp . 30080"]);
        assert_eq!(c.frontends().count(), 2);
        assert_eq!(c.local_ips(), BTreeSet::from([Ipv4Addr::new(10, 244, 1, 2)]));
    }

    #[test]
    fn an_address_two_services_claim_goes_to_the_first_and_then_to_the_other() {
        let mut c = Converter::default();
        let claim = |name: &str, ip: &str, version: &str| {
            let mut s =
                web(json!({"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "externalIPs": ["203.0.113.5"]}));
            s.metadata.name = Some(name.into());
            versioned(&s, version)
        };
        let (a, b) = (claim("a", "10.96.0.1", "1"), claim("b", "10.96.0.2", "2"));
        let external = FrontendKey { ip: Ipv4Addr::new(203, 0, 113, 5), protocol: Protocol::Tcp, port: 80 };
        let changes = c.update([&b, &a], [], &node());
        assert_eq!(changes[&external].as_ref().map(|f| f.service.as_str()), Some("default/a:http"));
        // "a" goes: "b" has the address now.
        let changes = c.update([&b], [], &node());
        assert_eq!(changes[&external].as_ref().map(|f| f.service.as_str()), Some("default/b:http"));
        let changes = c.update([], [], &node());
        assert_eq!(changes[&external], None);
        assert_eq!(c.frontends().count(), 0);
    }

    #[test]
    fn headless_and_external_name_services_have_no_frontends() {
        let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        let external = web(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(frontends(&[headless, external], &[web_slice()], &node()).0.is_empty());
    }
}
