//! Node IPAM (the range allocator): gives every node a distinct
//! `spec.podCIDR` of `--node-cidr-mask-size` carved from `--cluster-cidr`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::informer::{Change, Factory};
use crate::queue::WorkQueue;
use crate::util;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --cluster-cidr {0:?}: an IPv4 CIDR is required")]
    InvalidCidr(String),
    #[error("--node-cidr-mask-size {mask} does not fit in --cluster-cidr /{prefix}")]
    InvalidMask { mask: u8, prefix: u8 },
    #[error("no pod CIDR left in the cluster CIDR for node {0}")]
    Exhausted(String),
    #[error("setting the pod CIDR of node {node}: {source}")]
    Api {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// A bitmap of the node-sized blocks of the cluster CIDR.
pub struct CidrSet {
    base: u32,
    prefix: u8,
    mask: u8,
    used: Vec<bool>,
    next: usize,
}

pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.trim().split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip, len))
}

impl CidrSet {
    pub fn new(cluster_cidr: &str, mask: u8) -> Result<CidrSet, Error> {
        // Dual-stack lists: the IPv4 one.
        let (ip, prefix) =
            cluster_cidr.split(',').find_map(parse_cidr).ok_or_else(|| Error::InvalidCidr(cluster_cidr.to_string()))?;
        if mask < prefix || mask > 32 || mask - prefix > 24 {
            return Err(Error::InvalidMask { mask, prefix });
        }
        let base = u32::from(ip) & (u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
        Ok(CidrSet { base, prefix, mask, used: vec![false; 1 << (mask - prefix)], next: 0 })
    }

    fn block(&self, i: usize) -> String {
        let ip = Ipv4Addr::from(self.base + ((i as u32) << (32 - u32::from(self.mask))));
        format!("{ip}/{}", self.mask)
    }

    fn index(&self, cidr: &str) -> Option<usize> {
        let (ip, len) = parse_cidr(cidr)?;
        if len != self.mask {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.base)? >> (32 - u32::from(self.mask));
        ((offset as usize) < self.used.len() && self.prefix <= self.mask).then_some(offset as usize)
    }

    pub fn occupy(&mut self, cidr: &str) {
        if let Some(i) = self.index(cidr) {
            self.used[i] = true;
        }
    }

    pub fn release(&mut self, cidr: &str) {
        if let Some(i) = self.index(cidr) {
            self.used[i] = false;
        }
    }

    pub fn allocate(&mut self) -> Option<String> {
        let n = self.used.len();
        let i = (0..n).map(|k| (self.next + k) % n).find(|i| !self.used[*i])?;
        self.used[i] = true;
        self.next = (i + 1) % n;
        Some(self.block(i))
    }
}

pub struct NodeIpamController {
    client: kube::Client,
    nodes: Store<Node>,
    cidrs: Mutex<CidrSet>,
    /// What this controller patched onto nodes whose cached copy may not show
    /// it yet: a sync in that window must not allocate a second block.
    assigned: Mutex<HashMap<String, String>>,
    queue: WorkQueue,
}

fn pod_cidr(n: &Node) -> Option<String> {
    n.spec.as_ref()?.pod_cidr.clone().filter(|c| !c.is_empty())
}

impl NodeIpamController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue, cidrs: CidrSet) -> Arc<Self> {
        let inf = factory.nodes();
        let this = Arc::new(NodeIpamController {
            client,
            nodes: inf.store(),
            cidrs: Mutex::new(cidrs),
            assigned: Mutex::default(),
            queue,
        });
        let me = this.clone();
        inf.add_handler(move |c| match c {
            Change::Upsert { new, .. } => me.queue.add(util::key_of(&new.metadata)),
            Change::Deleted(old) => {
                let name = old.metadata.name.clone().unwrap_or_default();
                let patched = me.assigned.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
                if let Some(c) = pod_cidr(old).or(patched) {
                    me.lock().release(&c);
                    // Nodes waiting on an exhausted range need not wait for their back-off.
                    for n in me.nodes.state().iter().filter(|n| pod_cidr(n).is_none()) {
                        me.queue.add(util::key_of(&n.metadata));
                    }
                }
            }
        });
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CidrSet> {
        self.cidrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks every CIDR already in use before allocating any, then starts the worker.
    pub fn run(self: &Arc<Self>) {
        for n in self.nodes.state() {
            if let Some(c) = pod_cidr(&n) {
                self.lock().occupy(&c);
            }
        }
        let me = self.clone();
        self.queue.run_workers(1, move |key| {
            let me = me.clone();
            async move { me.sync(&key).await }
        });
    }

    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else { return Ok(None) };
        let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(c) = pod_cidr(&node) {
            self.lock().occupy(&c);
            if assigned.is_some_and(|a| a != c) {
                // Our patch lost to another writer: its block is free again.
                if let Some(a) = self.assigned.lock().unwrap_or_else(|e| e.into_inner()).remove(name) {
                    self.lock().release(&a);
                }
            } else {
                self.assigned.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
            }
            return Ok(None);
        }
        // Patched before, and the cache has not seen it yet: send the same block again
        // (idempotent) rather than a second one.
        let resend = assigned.is_some();
        let cidr = match assigned.take() {
            Some(c) => c,
            None => self.lock().allocate().ok_or_else(|| Error::Exhausted(name.to_string()))?,
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {
                if resend {
                    tracing::debug!(node = name, %cidr, "pod CIDR sent again (not yet in the cache)");
                } else {
                    tracing::info!(node = name, %cidr, "allocated pod CIDR");
                }
                self.assigned.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), cidr);
                Ok(None)
            }
            Err(source) => {
                let gone = util::api_code(&source) == Some(404);
                // A block an earlier patch already gave the node stays its own (and is
                // sent again on the retry), unless the node is gone.
                if !resend || gone {
                    self.assigned.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
                    self.lock().release(&cidr);
                } else {
                    self.assigned.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), cidr);
                }
                if gone {
                    return Ok(None);
                }
                Err(Error::Api { node: name.to_string(), source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_distinct_and_skip_the_occupied_ones() {
        let mut s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        s.occupy("10.244.1.0/24");
        assert_eq!(s.allocate().as_deref(), Some("10.244.0.0/24"));
        assert_eq!(s.allocate().as_deref(), Some("10.244.2.0/24"));
        s.release("10.244.0.0/24");
        let mut small = CidrSet::new("10.0.0.0/23", 24).unwrap();
        assert!(small.allocate().is_some() && small.allocate().is_some());
        assert_eq!(small.allocate(), None);
        assert!(CidrSet::new("10.0.0.0/24", 16).is_err());
    }
}
