//! Service environment variables: what every container learns about the
//! Services of its namespace, as upstream's kubelet injects them.
//!
//! The `kubernetes` Service of the `default` namespace is always included (so
//! that in-cluster clients find the apiserver through
//! `KUBERNETES_SERVICE_HOST`/`_PORT`); the other Services of the pod's
//! namespace only when `spec.enableServiceLinks` is not false. Services
//! without a cluster IP (headless, ExternalName) give nothing. Each Service
//! `my-svc` gives `MY_SVC_SERVICE_HOST`, `MY_SVC_SERVICE_PORT`,
//! `MY_SVC_SERVICE_PORT_<PORTNAME>` and the Docker-link variables
//! `MY_SVC_PORT`, `MY_SVC_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`.
//!
//! Services come from one watch over all namespaces (a reflector store), so a
//! pod start costs the apiserver nothing.

use std::collections::BTreeMap;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

/// The namespace and name of the services every pod sees.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICES: &[&str] = &["kubernetes"];

#[derive(Clone)]
pub struct ServiceEnv {
    store: Store<Service>,
}

impl ServiceEnv {
    /// Starts the services reflector in the background.
    pub fn start(client: kube::Client) -> ServiceEnv {
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher::watcher(Api::<Service>::all(client), Default::default()));
        tokio::spawn(async move {
            let mut stream = stream.default_backoff().boxed();
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::warn!("watching services for container environments: {e}");
                }
            }
        });
        ServiceEnv { store }
    }

    /// Whether the services have been listed at least once.
    pub fn synced(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
    }

    /// The service variables for a container of `pod`, or an error (upstream's
    /// wording) while the services have not been read yet. Static pods do not
    /// wait: they must start without the apiserver.
    pub fn for_pod(&self, pod: &Pod) -> Result<BTreeMap<String, String>, String> {
        if !self.synced() && !crate::static_pods::is_static(pod) {
            return Err("services have not yet been read at least once, cannot construct envvars".into());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        Ok(variables(ns, links, self.store.state().iter().map(|s| s.as_ref())))
    }
}

/// The variables of the services a pod in `ns` sees, upstream's selection:
/// the master services of `default` always, the namespace's own with links on.
pub fn variables<'a>(ns: &str, links: bool, services: impl Iterator<Item = &'a Service>) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let Some(ip) = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) else { continue };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if svc_ns == MASTER_NAMESPACE && MASTER_SERVICES.contains(&name.as_str()) {
            chosen.entry(name).or_insert(svc);
        } else if svc_ns == ns && links {
            chosen.insert(name, svc);
        }
    }
    let mut out = BTreeMap::new();
    for (name, svc) in chosen {
        service_variables(&name, svc, &mut out);
    }
    out
}

fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

fn service_variables(name: &str, svc: &Service, out: &mut BTreeMap<String, String>) {
    let Some(spec) = &svc.spec else { return };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = env_name(name);
    let ports = spec.ports.clone().unwrap_or_default();
    out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
    let Some(first) = ports.first() else { return };
    out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for p in &ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.insert(format!("{prefix}_SERVICE_PORT_{}", env_name(n)), p.port.to_string());
        }
    }
    // Docker links: an IPv6 address is bracketed in the URL.
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
    out.insert(format!("{prefix}_PORT"), format!("{}://{host}:{}", proto(first).to_lowercase(), first.port));
    for p in &ports {
        let proto = proto(p);
        let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.insert(base.clone(), format!("{}://{host}:{}", proto.to_lowercase(), p.port));
        out.insert(format!("{base}_PROTO"), proto.to_lowercase());
        out.insert(format!("{base}_PORT"), p.port.to_string());
        out.insert(format!("{base}_ADDR"), ip.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    #[test]
    fn a_service_gives_host_port_named_ports_and_docker_links() {
        let s =
            svc("app", "my-db", "10.96.0.7", json!([{"name": "sql", "port": 5432}, {"port": 53, "protocol": "UDP"}]));
        let vars = variables("app", true, [&s].into_iter());
        let want = [
            ("MY_DB_SERVICE_HOST", "10.96.0.7"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_PORT", "tcp://10.96.0.7:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.96.0.7:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.96.0.7"),
            ("MY_DB_PORT_53_UDP", "udp://10.96.0.7:53"),
            ("MY_DB_PORT_53_UDP_PROTO", "udp"),
            ("MY_DB_PORT_53_UDP_PORT", "53"),
            ("MY_DB_PORT_53_UDP_ADDR", "10.96.0.7"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn the_master_service_is_always_there_and_links_follow_enable_service_links() {
        let master = svc("default", "kubernetes", "10.96.0.1", json!([{"name": "https", "port": 443}]));
        let own = svc("app", "web", "10.96.0.9", json!([{"port": 80}]));
        let other_ns = svc("elsewhere", "web2", "10.96.0.10", json!([{"port": 80}]));
        let headless = svc("app", "peers", "None", json!([{"port": 80}]));
        let all = [&master, &own, &other_ns, &headless];
        let with_links = variables("app", true, all.into_iter());
        assert_eq!(with_links["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(with_links["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(with_links["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(with_links["WEB_SERVICE_HOST"], "10.96.0.9");
        assert!(!with_links.keys().any(|k| k.starts_with("WEB2_") || k.starts_with("PEERS_")));
        let without = variables("app", false, all.into_iter());
        assert!(without.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!without.contains_key("WEB_SERVICE_HOST"));
    }
}
