//! Resource arithmetic: what a pod requests and what a node offers, in
//! milli-CPU, bytes and counts, as upstream's `framework.Resource`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Requests assumed for scoring when a container requests nothing (upstream's non-zero defaults).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`...), in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let milli = apimachinery::quantity::parse_milli(&q.0).unwrap_or(0);
            match name.as_str() {
                "cpu" => r.milli_cpu = clamp(milli),
                "memory" => r.memory = clamp(ceil_units(milli)),
                "ephemeral-storage" => r.ephemeral_storage = clamp(ceil_units(milli)),
                "pods" => r.pods = clamp(ceil_units(milli)),
                other => {
                    r.scalar.insert(other.to_string(), clamp(ceil_units(milli)));
                }
            }
        }
        r
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each field the larger of the two.
    pub fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn ceil_units(milli: i128) -> i128 {
    (milli + 999).div_euclid(1000)
}

/// What a node offers pods: `status.allocatable`, else `status.capacity`.
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref().filter(|a| !a.is_empty()))
        .or(status.and_then(|s| s.capacity.as_ref()));
    Resources::from_list(list)
}

fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    // Limits stand in for missing requests, as defaulting does upstream.
    let mut requests = res.and_then(|r| r.limits.clone()).unwrap_or_default();
    requests.extend(res.and_then(|r| r.requests.clone()).unwrap_or_default());
    Resources::from_list(Some(&requests))
}

fn non_zero(mut r: Resources, c: &Container) -> Resources {
    let req = c.resources.as_ref();
    let has = |name: &str| {
        req.and_then(|r| r.requests.as_ref()).is_some_and(|m| m.contains_key(name))
            || req.and_then(|r| r.limits.as_ref()).is_some_and(|m| m.contains_key(name))
    };
    if !has("cpu") {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !has("memory") {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// A pod's effective requests (upstream's `resource.PodRequests`): the sum of
/// its containers and sidecars, or the largest init container (with the
/// sidecars started before it) if that is larger, plus the pod overhead; and
/// the same with upstream's non-zero defaults for scoring. `pods` is 1.
pub fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Resources { pods: 1, ..Default::default() }, Resources { pods: 1, ..Default::default() });
    };
    let mut sum = Resources::default();
    let mut sum_nz = Resources::default();
    for c in &spec.containers {
        let r = container_requests(c);
        sum_nz.add(&non_zero(r.clone(), c));
        sum.add(&r);
    }
    let mut sidecars = Resources::default();
    let mut sidecars_nz = Resources::default();
    let mut init_max = Resources::default();
    let mut init_max_nz = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let nz = non_zero(r.clone(), c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars_nz.add(&nz);
            init_max.max(&sidecars);
            init_max_nz.max(&sidecars_nz);
        } else {
            let mut a = r;
            a.add(&sidecars);
            let mut b = nz;
            b.add(&sidecars_nz);
            init_max.max(&a);
            init_max_nz.max(&b);
        }
    }
    sum.add(&sidecars);
    sum_nz.add(&sidecars_nz);
    sum.max(&init_max);
    sum_nz.max(&init_max_nz);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resources::from_list(Some(overhead));
        sum.add(&o);
        sum_nz.add(&o);
    }
    sum.pods = 1;
    sum_nz.pods = 1;
    (sum, sum_nz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn container(cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut req = BTreeMap::new();
        if let Some(c) = cpu {
            req.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = mem {
            req.insert("memory".to_string(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { requests: Some(req), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_containers_and_takes_the_largest_init_container() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container(Some("250m"), Some("64Mi")), container(Some("250m"), None)],
                init_containers: Some(vec![container(Some("2"), Some("1Mi"))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (r, nz) = pod_requests(&pod);
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 64 * 1024 * 1024);
        assert_eq!(nz.memory, 64 * 1024 * 1024 + DEFAULT_MEMORY_REQUEST);
        assert_eq!(r.pods, 1);
    }
}
