//! The EndpointSlice mirroring controller: for a Service without a selector
//! whose Endpoints someone maintains by hand, mirrors those Endpoints into
//! EndpointSlices (so kube-proxy, which reads slices, sees them). Endpoints
//! labelled `endpointslice.kubernetes.io/skip-mirror=true` (those the
//! endpoints controller writes) are left alone.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::endpointslice::{self, sync_slices, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SKIP_MIRROR_LABEL};
use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream mirrors at most this many addresses of one subset.
const MAX_PER_SUBSET: usize = 1000;
const MAX_PER_SLICE: usize = 100;

pub struct EndpointSliceMirroringController {
    client: kube::Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    queue: WorkQueue,
}

impl EndpointSliceMirroringController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let services = factory.services();
        let endpoints = factory.endpoints();
        let slices = factory.endpoint_slices();
        for_key(&services, &queue, |s: &Service| Some(util::key_of(&s.metadata)));
        for_key(&endpoints, &queue, |e: &Endpoints| Some(util::key_of(&e.metadata)));
        for_key(&slices, &queue, |s: &EndpointSlice| {
            let l = s.metadata.labels.as_ref()?;
            if l.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
                return None;
            }
            Some(format!("{}/{}", s.metadata.namespace.as_deref().unwrap_or_default(), l.get(SERVICE_NAME_LABEL)?))
        });
        Arc::new(EndpointSliceMirroringController {
            client,
            services: services.store(),
            endpoints: endpoints.store(),
            slices: slices.store(),
            queue,
        })
    }

    pub fn run(self: &Arc<Self>, workers: usize) {
        let me = self.clone();
        self.queue.run_workers(workers, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, endpointslice::Error> {
        let (ns, name) = util::split_key(key);
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else { return Ok(None) };
        let ep = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let selectorless = svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(|s| s.is_empty());
        let skip = ep
            .as_ref()
            .and_then(|e| e.metadata.labels.as_ref())
            .and_then(|l| l.get(SKIP_MIRROR_LABEL))
            .is_some_and(|v| v == "true");
        let desired = match ep {
            Some(ep) if selectorless && !skip => mirror(&ep),
            // Nothing (more) to mirror: remove what was mirrored.
            _ => Vec::new(),
        };
        sync_slices(&self.client, &self.slices, &svc, desired, MANAGED_BY, false).await?;
        Ok(None)
    }
}

fn for_key<K>(
    inf: &Arc<crate::informer::Informer<K>>,
    queue: &WorkQueue,
    key: impl Fn(&K) -> Option<String> + Send + Sync + 'static,
) where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let q = queue.clone();
    inf.add_handler(move |c| {
        let obj = match c {
            Change::Upsert { new, .. } => new,
            Change::Deleted(old) => old,
        };
        if let Some(k) = key(obj) {
            q.add(k);
        }
    });
}

/// One slice per subset (and per 100 addresses): ready addresses and not-ready ones.
fn mirror(ep: &Endpoints) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let endpoint = |a: &EndpointAddress, ready: bool| Endpoint {
            addresses: vec![a.ip.clone()],
            conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(ready), terminating: Some(false) }),
            hostname: a.hostname.clone(),
            node_name: a.node_name.clone(),
            target_ref: a.target_ref.clone(),
            ..Default::default()
        };
        let endpoints: Vec<Endpoint> = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| endpoint(a, true))
            .chain(subset.not_ready_addresses.iter().flatten().map(|a| endpoint(a, false)))
            .take(MAX_PER_SUBSET)
            .collect();
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}
