//! The EndpointSlice controller (and the Endpoints controller, writing the
//! same data as a core/v1 Endpoints): for every Service with a selector, the
//! matching pods with an IP become endpoints with ready/serving/terminating
//! conditions, target ports resolved by name per pod, at most 100 per slice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("{action} for service {service}: {source}")]
pub struct Error {
    pub action: &'static str,
    pub service: String,
    #[source]
    pub source: kube::Error,
}

/// A resolved service port: (name, target port, protocol).
type ResolvedPort = (Option<String>, i32, String);
/// Endpoints by resolved port set, each with whether it is ready.
type Groups = BTreeMap<Vec<ResolvedPort>, Vec<(Endpoint, bool)>>;

pub struct EndpointSliceController {
    client: kube::Client,
    /// Writes Endpoints (the endpoint-controller's identity), if that controller is on.
    endpoints_client: Option<kube::Client>,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    queue: WorkQueue,
}

fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(sel: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl EndpointSliceController {
    /// `endpoints_client`: also keep the core/v1 Endpoints object (the endpoints controller), writing with it.
    pub fn register(
        factory: &Factory,
        client: kube::Client,
        endpoints_client: Option<kube::Client>,
        queue: WorkQueue,
    ) -> Arc<Self> {
        let svc_inf = factory.services();
        let pod_inf = factory.pods();
        let slice_inf = factory.endpoint_slices();
        let this = Arc::new(EndpointSliceController {
            client,
            services: svc_inf.store(),
            pods: pod_inf.store(),
            slices: slice_inf.store(),
            endpoints_client,
            queue,
        });
        let q = this.queue.clone();
        svc_inf.add_handler(move |c| match c {
            Change::Upsert { new, .. } => q.add(util::key_of(&new.metadata)),
            Change::Deleted(_) => {}
        });
        let me = this.clone();
        pod_inf.add_handler(move |c| {
            let (old, new) = match c {
                Change::Upsert { old, new } => (old.clone(), new.clone()),
                Change::Deleted(p) => (None, p.clone()),
            };
            for svc in me.services.state() {
                if svc.metadata.namespace != new.metadata.namespace {
                    continue;
                }
                let Some(sel) = selector_of(&svc) else { continue };
                if selects(sel, &new) || old.as_ref().is_some_and(|o| selects(sel, o)) {
                    me.queue.add(util::key_of(&svc.metadata));
                }
            }
        });
        let q = this.queue.clone();
        slice_inf.add_handler(move |c| {
            let s = match c {
                Change::Upsert { new, .. } => new,
                Change::Deleted(old) => old,
            };
            let labels = s.metadata.labels.as_ref();
            if labels.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY) {
                if let Some(svc) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                    q.add(format!("{}/{svc}", s.metadata.namespace.as_deref().unwrap_or_default()));
                }
            }
        });
        this
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = util::split_key(key);
        // A deleted service's slices go with it through their ownerReference.
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let Some(sel) = selector_of(&svc) else { return Ok(None) };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(None);
        }
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && selects(sel, p) && !util::is_terminal(p))
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty()))
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

        // Endpoints grouped by their resolved port set.
        let mut groups: Groups = BTreeMap::new();
        for pod in &pods {
            let ports: Vec<ResolvedPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
                    let port = match sp.target_port.as_ref() {
                        None => Some(sp.port),
                        Some(IntOrString::Int(n)) => Some(*n),
                        Some(IntOrString::String(name)) => find_port(pod, name, &protocol),
                    }?;
                    Some((sp.name.clone(), port, protocol))
                })
                .collect();
            let ready = util::is_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let status = pod.status.clone().unwrap_or_default();
            let endpoint = Endpoint {
                addresses: vec![status.pod_ip.clone().unwrap_or_default()],
                conditions: Some(EndpointConditions {
                    ready: Some(publish_not_ready || (ready && !terminating)),
                    serving: Some(publish_not_ready || ready),
                    terminating: Some(terminating),
                }),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                }),
                hostname: None,
                ..Default::default()
            };
            groups.entry(ports).or_default().push((endpoint, ready && !terminating));
        }
        let desired: Vec<(Vec<SlicePort>, Vec<Endpoint>)> = groups
            .iter()
            .flat_map(|(ports, eps)| {
                let ports: Vec<SlicePort> = ports
                    .iter()
                    .map(|(name, port, protocol)| SlicePort {
                        name: Some(name.clone().unwrap_or_default()),
                        port: Some(*port),
                        protocol: Some(protocol.clone()),
                        app_protocol: None,
                    })
                    .collect();
                eps.chunks(MAX_ENDPOINTS_PER_SLICE)
                    .map(move |c| (ports.clone(), c.iter().map(|(e, _)| e.clone()).collect()))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.reconcile_slices(&svc, desired).await?;
        if let Some(client) = &self.endpoints_client {
            self.reconcile_endpoints(client, &svc, &groups).await?;
        }
        Ok(None)
    }

    async fn reconcile_slices(
        &self,
        svc: &Service,
        desired: Vec<(Vec<SlicePort>, Vec<Endpoint>)>,
    ) -> Result<(), Error> {
        sync_slices(&self.client, &self.slices, svc, desired, MANAGED_BY, true).await
    }
}

/// Makes the slices `managed_by` keeps for `svc` hold `desired` (one slice per entry),
/// updating in place, creating and deleting as needed. `placeholder`: an empty
/// service keeps one empty slice, as the EndpointSlice controller does.
pub async fn sync_slices(
    client: &kube::Client,
    slices: &Store<EndpointSlice>,
    svc: &Service,
    mut desired: Vec<(Vec<SlicePort>, Vec<Endpoint>)>,
    managed_by: &str,
    placeholder: bool,
) -> Result<(), Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let err = |action| {
        let service = format!("{ns}/{name}");
        move |source| Error { action, service, source }
    };
    let mut existing: Vec<Arc<EndpointSlice>> = slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name)
                && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(managed_by)
        })
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if desired.is_empty() && placeholder {
        // A service without endpoints still has one (empty) slice, as upstream keeps.
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|ps| {
                ps.iter()
                    .filter(|p| matches!(p.target_port, None | Some(IntOrString::Int(_))))
                    .map(|p| SlicePort {
                        name: Some(p.name.clone().unwrap_or_default()),
                        port: Some(match &p.target_port {
                            Some(IntOrString::Int(n)) => *n,
                            _ => p.port,
                        }),
                        protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        desired.push((ports, Vec::new()));
    }
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), managed_by.into());
    let wanted = desired.len();
    for (i, (ports, endpoints)) in desired.into_iter().enumerate() {
        let address_type = if endpoints.first().is_some_and(|e| e.addresses.iter().any(|a| a.contains(':'))) {
            "IPv6"
        } else {
            "IPv4"
        };
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![util::new_controller_ref(svc)]),
                ..Default::default()
            },
            address_type: address_type.into(),
            endpoints,
            ports: Some(ports),
        };
        match existing.get(i) {
            Some(old) => {
                if old.endpoints == slice.endpoints
                    && old.ports == slice.ports
                    && old.address_type == slice.address_type
                    && old.metadata.labels == slice.metadata.labels
                {
                    continue;
                }
                slice.metadata = ObjectMeta { labels: Some(labels.clone()), ..old.metadata.clone() };
                let slice_name = old.metadata.name.clone().unwrap_or_default();
                match api.replace(&slice_name, &PostParams::default(), &slice).await {
                    Ok(_) => {}
                    Err(e) if util::api_code(&e) == Some(404) => {}
                    Err(e) => return Err(err("updating endpointslice")(e)),
                }
            }
            None => {
                api.create(&PostParams::default(), &slice).await.map_err(err("creating endpointslice"))?;
            }
        }
    }
    for surplus in existing.iter().skip(wanted) {
        let slice_name = surplus.metadata.name.clone().unwrap_or_default();
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if util::api_code(&e) == Some(404) => {}
            Err(e) => return Err(err("deleting endpointslice")(e)),
        }
    }
    Ok(())
}

impl EndpointSliceController {
    async fn reconcile_endpoints(&self, client: &kube::Client, svc: &Service, groups: &Groups) -> Result<(), Error> {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let err = |action| {
            let service = format!("{ns}/{name}");
            move |source| Error { action, service, source }
        };
        let subsets: Vec<EndpointSubset> = groups
            .iter()
            .map(|(ports, eps)| {
                let address = |e: &Endpoint| EndpointAddress {
                    ip: e.addresses.first().cloned().unwrap_or_default(),
                    node_name: e.node_name.clone(),
                    target_ref: e.target_ref.clone(),
                    hostname: None,
                };
                let ready: Vec<EndpointAddress> = eps.iter().filter(|(_, r)| *r).map(|(e, _)| address(e)).collect();
                let not_ready: Vec<EndpointAddress> = eps
                    .iter()
                    .filter(|(e, r)| !*r && e.conditions.as_ref().and_then(|c| c.terminating) != Some(true))
                    .map(|(e, _)| address(e))
                    .collect();
                EndpointSubset {
                    addresses: (!ready.is_empty()).then_some(ready),
                    not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p, proto)| EndpointPort {
                                name: n.clone(),
                                port: *p,
                                protocol: Some(proto.clone()),
                                app_protocol: None,
                            })
                            .collect(),
                    ),
                }
            })
            .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
            .collect();
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        let current = api.get_opt(&name).await.map_err(err("getting endpoints"))?;
        let subsets = (!subsets.is_empty()).then_some(subsets);
        // Managed here: the EndpointSlice mirroring controller must leave it alone.
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(SKIP_MIRROR_LABEL.into(), "true".into());
        let labels = Some(labels);
        match current {
            Some(cur) if cur.subsets == subsets && cur.metadata.labels == labels => Ok(()),
            Some(cur) => {
                let ep = Endpoints { metadata: ObjectMeta { labels, ..cur.metadata }, subsets };
                match api.replace(&name, &PostParams::default(), &ep).await {
                    Ok(_) => Ok(()),
                    Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(()),
                    Err(e) => Err(err("updating endpoints")(e)),
                }
            }
            None => {
                let ep = Endpoints {
                    metadata: ObjectMeta { name: Some(name.clone()), labels, ..Default::default() },
                    subsets,
                };
                match api.create(&PostParams::default(), &ep).await {
                    Ok(_) => Ok(()),
                    Err(e) if util::api_code(&e) == Some(409) => Ok(()),
                    Err(e) => Err(err("creating endpoints")(e)),
                }
            }
        }
    }
}

/// A named container port of the pod, for a string targetPort.
fn find_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
        (p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
            .then_some(p.container_port)
    })
}
