//! core/v1 strategies: namespaces, pods, services, nodes.

use apimachinery::status::{FieldError, FieldErrors};
use k8s_openapi::api::core::v1::{
    Container, Namespace, NamespaceSpec, NamespaceStatus, Node, Pod, PodSecurityContext, PodSpec, PodStatus, Service,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::registry::strategy::KindStrategy;

// === impl NamespaceStrategy ===

pub struct NamespaceStrategy;

impl KindStrategy for NamespaceStrategy {
    type Object = Namespace;

    fn default(&self, ns: &mut Namespace) {
        let status = ns.status.get_or_insert_with(NamespaceStatus::default);
        if status.phase.is_none() {
            status.phase = Some("Active".into());
        }
    }

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.spec = Some(NamespaceSpec { finalizers: Some(vec!["kubernetes".into()]) });
        ns.status = Some(NamespaceStatus { phase: Some("Active".into()), ..Default::default() });
        // Upstream labels every namespace with its own name.
        let name = ns.metadata.name.clone().unwrap_or_default();
        ns.metadata.labels.get_or_insert_with(Default::default).insert("kubernetes.io/metadata.name".into(), name);
    }

    fn prepare_for_update(&self, new: &mut Namespace, old: &Namespace) {
        // spec.finalizers change only through /finalize.
        new.spec = old.spec.clone();
        let name = new.metadata.name.clone().unwrap_or_default();
        new.metadata.labels.get_or_insert_with(Default::default).insert("kubernetes.io/metadata.name".into(), name);
    }

    fn pending_finalization(&self, ns: &Namespace) -> bool {
        ns.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| !f.is_empty())
    }

    fn mark_terminating(&self, ns: &mut Namespace) {
        ns.status.get_or_insert_with(NamespaceStatus::default).phase = Some("Terminating".into());
    }
}

// === impl PodStrategy ===

pub struct PodStrategy;

/// Upstream's container defaults (`SetDefaults_Container`).
fn default_container(c: &mut Container) {
    if c.termination_message_path.is_none() {
        c.termination_message_path = Some("/dev/termination-log".into());
    }
    if c.termination_message_policy.is_none() {
        c.termination_message_policy = Some("File".into());
    }
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or_default();
        let last = image.rsplit('/').next().unwrap_or_default();
        let tag = if last.contains('@') { None } else { last.split_once(':').map(|(_, t)| t) };
        let latest = !last.contains('@') && tag.is_none_or(|t| t == "latest");
        c.image_pull_policy = Some(if latest { "Always" } else { "IfNotPresent" }.into());
    }
    for p in c.ports.iter_mut().flatten() {
        if p.protocol.is_none() {
            p.protocol = Some("TCP".into());
        }
    }
    for probe in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        probe.timeout_seconds.get_or_insert(1);
        probe.period_seconds.get_or_insert(10);
        probe.success_threshold.get_or_insert(1);
        probe.failure_threshold.get_or_insert(3);
        if let Some(h) = &mut probe.http_get {
            h.path.get_or_insert_with(|| "/".into());
            h.scheme.get_or_insert_with(|| "HTTP".into());
        }
    }
}

/// Upstream's pod spec defaults (`SetDefaults_PodSpec` and friends).
pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    if spec.service_account_name.is_none() {
        if let Some(sa) = &spec.service_account {
            spec.service_account_name = Some(sa.clone());
        }
    }
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        default_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(s) = &mut v.secret {
            s.default_mode.get_or_insert(0o644);
        }
        if let Some(c) = &mut v.config_map {
            c.default_mode.get_or_insert(0o644);
        }
        if v.empty_dir.is_none()
            && v.secret.is_none()
            && v.config_map.is_none()
            && v.host_path.is_none()
            && v.persistent_volume_claim.is_none()
            && v.projected.is_none()
            && v.downward_api.is_none()
            && v.nfs.is_none()
            && v.csi.is_none()
            && v.ephemeral.is_none()
            && v.image.is_none()
        {
            v.empty_dir = Some(Default::default());
        }
    }
}

/// Validates a pod spec at `path` (used by pods and pod templates).
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> FieldErrors {
    use apimachinery::validation::is_dns1123_label;
    let mut errs = Vec::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = std::collections::HashSet::new();
    let lists =
        [("containers", &spec.containers), ("initContainers", &spec.init_containers.clone().unwrap_or_default())];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let p = format!("{path}.{list}[{i}]");
            if c.name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else {
                for msg in is_dns1123_label(&c.name) {
                    errs.push(FieldError::invalid(format!("{p}.name"), &c.name, msg));
                }
                if !names.insert(c.name.clone()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), &c.name));
                }
            }
            if c.image.as_deref().unwrap_or_default().trim().is_empty() {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            if let Some(policy) = &c.image_pull_policy {
                if !["Always", "IfNotPresent", "Never"].contains(&policy.as_str()) {
                    errs.push(FieldError::not_supported(
                        format!("{p}.imagePullPolicy"),
                        policy,
                        &["Always", "IfNotPresent", "Never"],
                    ));
                }
            }
            for (j, port) in c.ports.iter().flatten().enumerate() {
                if !(1..=65535).contains(&port.container_port) {
                    errs.push(FieldError::invalid_json(
                        format!("{p}.ports[{j}].containerPort"),
                        &serde_json::json!(port.container_port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = &port.protocol {
                    if !["TCP", "UDP", "SCTP"].contains(&proto.as_str()) {
                        errs.push(FieldError::not_supported(
                            format!("{p}.ports[{j}].protocol"),
                            proto,
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
        }
    }
    if let Some(policy) = &spec.restart_policy {
        if !["Always", "OnFailure", "Never"].contains(&policy.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                policy,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(policy) = &spec.dns_policy {
        if !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&policy.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                policy,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ));
        }
    }
    let mut vol_names = std::collections::HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !vol_names.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(format!("{path}.volumes[{i}].name"), &v.name));
        }
    }
    errs
}

/// The pod's QoS class, as upstream computes it.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let rq = req.and_then(|m| m.get(res)).or_else(|| lim.and_then(|m| m.get(res)));
            let lm = lim.and_then(|m| m.get(res));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            if lm.is_none() || rq != lm {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

impl KindStrategy for PodStrategy {
    type Object = Pod;

    fn default(&self, pod: &mut Pod) {
        if let Some(spec) = &mut pod.spec {
            default_pod_spec(spec);
            // The not-ready/unreachable tolerations are the DefaultTolerationSeconds
            // admission plugin's (crate::admission), which can be disabled.
            spec.priority.get_or_insert(0);
            spec.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".into());
        }
    }

    fn prepare_for_create(&self, pod: &mut Pod) {
        let qos = pod.spec.as_ref().map(qos_class).unwrap_or("BestEffort");
        pod.status =
            Some(PodStatus { phase: Some("Pending".into()), qos_class: Some(qos.into()), ..Default::default() });
    }

    fn validate(&self, pod: &Pod) -> FieldErrors {
        match &pod.spec {
            Some(spec) => validate_pod_spec(spec, "spec"),
            None => vec![FieldError::required("spec", "")],
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod) -> FieldErrors {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return Vec::new();
        };
        // Only images, activeDeadlineSeconds, tolerations (additions) and
        // terminationGracePeriodSeconds may change; everything else is fixed.
        let mut masked = n.clone();
        for (c, oc) in masked.containers.iter_mut().zip(o.containers.iter()) {
            c.image = oc.image.clone();
            c.resources = oc.resources.clone();
        }
        for (c, oc) in masked.init_containers.iter_mut().flatten().zip(o.init_containers.iter().flatten()) {
            c.image = oc.image.clone();
        }
        masked.active_deadline_seconds = o.active_deadline_seconds;
        masked.tolerations = o.tolerations.clone();
        masked.termination_grace_period_seconds = o.termination_grace_period_seconds;
        if o.node_name.is_none() {
            masked.node_name = o.node_name.clone();
        }
        masked.scheduling_gates = o.scheduling_gates.clone();
        if &masked != o {
            return vec![FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )];
        }
        Vec::new()
    }

    fn grace_period(&self, pod: &Pod, requested: Option<i64>) -> i64 {
        let spec = pod.spec.as_ref();
        // An unscheduled or finished pod has nothing to stop: delete at once.
        let scheduled = spec.and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if !scheduled || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        requested.unwrap_or_else(|| spec.and_then(|s| s.termination_grace_period_seconds).unwrap_or(30))
    }
}

// === impl ServiceStrategy ===

pub struct ServiceStrategy;

impl KindStrategy for ServiceStrategy {
    type Object = Service;

    fn default(&self, svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        spec.type_.get_or_insert_with(|| "ClusterIP".into());
        spec.session_affinity.get_or_insert_with(|| "None".into());
        let external = spec.type_.as_deref() != Some("ClusterIP") && spec.type_.as_deref() != Some("ExternalName");
        if external {
            spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
        }
        if spec.type_.as_deref() != Some("ExternalName") {
            spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
        }
        for p in spec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            if p.target_port.is_none() {
                p.target_port = Some(IntOrString::Int(p.port));
            }
        }
    }

    fn prepare_for_create(&self, svc: &mut Service) {
        svc.status = Some(Default::default());
    }

    fn prepare_for_update(&self, new: &mut Service, old: &Service) {
        // Allocated addresses stay unless the client sets them explicitly.
        if let (Some(n), Some(o)) = (&mut new.spec, &old.spec) {
            if n.cluster_ip.as_deref().unwrap_or_default().is_empty() {
                n.cluster_ip = o.cluster_ip.clone();
                n.cluster_ips = o.cluster_ips.clone();
                n.ip_families = o.ip_families.clone();
                n.ip_family_policy = o.ip_family_policy.clone();
            }
        }
    }

    fn validate(&self, svc: &Service) -> FieldErrors {
        let mut errs = Vec::new();
        let Some(spec) = &svc.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let t = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&t) {
            errs.push(FieldError::not_supported(
                "spec.type",
                t,
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let ports = spec.ports.clone().unwrap_or_default();
        if ports.is_empty() && t != "ExternalName" && spec.cluster_ip.as_deref() != Some("None") {
            errs.push(FieldError::required("spec.ports", ""));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            if !(1..=65535).contains(&p.port) {
                errs.push(FieldError::invalid_json(
                    format!("spec.ports[{i}].port"),
                    &serde_json::json!(p.port),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if ports.len() > 1 && p.name.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
            }
            if let Some(n) = &p.name {
                if !n.is_empty() && !names.insert(n.clone()) {
                    errs.push(FieldError::duplicate(format!("spec.ports[{i}].name"), n));
                }
            }
            if let Some(np) = p.node_port {
                if t == "ClusterIP" && np != 0 {
                    errs.push(FieldError::forbidden(
                        format!("spec.ports[{i}].nodePort"),
                        "may not be used when `type` is 'ClusterIP'",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Service, old: &Service) -> FieldErrors {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return Vec::new();
        };
        let old_ip = o.cluster_ip.as_deref().unwrap_or_default();
        let new_ip = n.cluster_ip.as_deref().unwrap_or_default();
        if !old_ip.is_empty() && old_ip != new_ip && o.type_ == n.type_ {
            return vec![FieldError::invalid("spec.clusterIPs[0]", new_ip, "may not change once set")];
        }
        Vec::new()
    }
}

// === impl SecretStrategy ===

/// `stringData` is a write-only convenience: folded into `data` (overriding
/// keys there) and never stored, as upstream's secret strategy does.
pub struct SecretStrategy;

fn fold_string_data(secret: &mut k8s_openapi::api::core::v1::Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in strings {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

impl KindStrategy for SecretStrategy {
    type Object = k8s_openapi::api::core::v1::Secret;

    fn default(&self, secret: &mut Self::Object) {
        if secret.type_.is_none() {
            secret.type_ = Some("Opaque".into());
        }
    }

    fn prepare_for_create(&self, secret: &mut Self::Object) {
        fold_string_data(secret);
    }

    fn prepare_for_update(&self, secret: &mut Self::Object, _old: &Self::Object) {
        fold_string_data(secret);
    }

    fn validate_update(&self, new: &Self::Object, old: &Self::Object) -> FieldErrors {
        if old.immutable == Some(true) && (new.data != old.data || new.immutable != old.immutable) {
            return vec![FieldError::forbidden("data", "field is immutable when `immutable` is set")];
        }
        if new.type_ != old.type_ {
            return vec![FieldError::invalid("type", new.type_.as_deref().unwrap_or(""), "field is immutable")];
        }
        Vec::new()
    }
}

// === impl NodeStrategy ===

pub struct NodeStrategy;

impl KindStrategy for NodeStrategy {
    type Object = Node;

    /// Nodes register with their status (capacity, conditions), as the kubelet does.
    fn keeps_status_on_create(&self) -> bool {
        true
    }

    /// A node's pod CIDRs are given once (by node IPAM) and never changed, as
    /// upstream validates: two allocators racing cannot both win.
    fn validate_update(&self, new: &Node, old: &Node) -> FieldErrors {
        let cidrs = |n: &Node| -> Vec<String> {
            let Some(spec) = &n.spec else { return Vec::new() };
            match (&spec.pod_cidrs, &spec.pod_cidr) {
                (Some(list), _) if !list.is_empty() => list.clone(),
                (_, Some(one)) if !one.is_empty() => vec![one.clone()],
                _ => Vec::new(),
            }
        };
        let was = cidrs(old);
        if !was.is_empty() && cidrs(new) != was {
            return vec![FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            )];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_defaults_follow_the_tag() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("reg:5000/app", "Always"),
            ("reg:5000/app:v1", "IfNotPresent"),
            ("app@sha256:abc", "IfNotPresent"),
        ] {
            let mut c = Container { name: "c".into(), image: Some(image.into()), ..Default::default() };
            default_container(&mut c);
            assert_eq!(c.image_pull_policy.as_deref(), Some(want), "{image}");
        }
    }

    #[test]
    fn pods_need_containers_with_unique_names() {
        let spec = PodSpec {
            containers: vec![
                Container { name: "a".into(), image: Some("x".into()), ..Default::default() },
                Container { name: "a".into(), image: Some("x".into()), ..Default::default() },
            ],
            ..Default::default()
        };
        let errs = validate_pod_spec(&spec, "spec");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.containers[1].name");
    }
}
