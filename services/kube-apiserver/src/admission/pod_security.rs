//! PodSecurity: the Pod Security Standards level a namespace's
//! `pod-security.kubernetes.io/enforce` label names rejects pods that violate
//! it; its `warn` level (and, for workloads' pod templates, the enforce level)
//! only warns. The levels themselves are in [`crate::podsecurity`].

use apimachinery::status::ApiError;
use serde_json::{json, Value};

use super::{cached_namespace, done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

pub struct PodSecurity;

impl AdmissionPlugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn validate<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        // Status and the other subresources cannot weaken a pod's security.
        if a.subresource.is_some() {
            return done(Ok(()));
        }
        let result = match (a.operation, a.object(), a.old_object) {
            (Operation::Create, Some(pod), _) if a.is("", "pods") => pod_security(server, a.namespace, pod),
            (Operation::Create, Some(obj), _) => Ok(pod_security_template(server, a.resource, a.namespace, obj)),
            // Upstream re-evaluates a pod update only when a container image or
            // a seccomp annotation changes; warnings on updates are not sent.
            (Operation::Update, Some(new), Some(old)) if a.is("", "pods") && significant_pod_update(new, old) => {
                pod_security(server, a.namespace, new).map(|_| Vec::new())
            }
            _ => Ok(Vec::new()),
        };
        done(result.map(|w| a.warnings.extend(w)))
    }
}

/// PodSecurity for a new pod: an enforced level's violations are a 403, a
/// warned level's come back as warnings.
fn pod_security(server: &ApiServer, ns: &str, pod: &Value) -> Result<Vec<String>, ApiError> {
    use crate::podsecurity::{forbidden_message, namespace_levels, violations, warning, Level};
    if ns.is_empty() {
        return Ok(Vec::new());
    }
    let Some(namespace) = cached_namespace(server, ns) else { return Ok(Vec::new()) };
    let (enforce, warn) = namespace_levels(&namespace);
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if enforce > Level::Privileged {
        let v = violations(pod, enforce);
        if !v.is_empty() {
            return Err(ApiError::forbidden(forbidden_message(name, enforce, &v)));
        }
    }
    if warn > Level::Privileged {
        let v = violations(pod, warn);
        if !v.is_empty() {
            return Ok(vec![warning(warn, &v)]);
        }
    }
    Ok(Vec::new())
}

/// PodSecurity for a workload (Deployment, ReplicaSet, StatefulSet, DaemonSet,
/// Job, CronJob, ReplicationController, PodTemplate): its pod template is
/// checked against the namespace's warn level (or its enforce level when no
/// warn level is set) and violations come back as warnings, as upstream
/// does; only pods themselves are rejected.
fn pod_security_template(server: &ApiServer, d: &ResourceDescriptor, ns: &str, obj: &Value) -> Vec<String> {
    use crate::podsecurity::{namespace_levels, violations, warning, Level};
    let template = match (d.group, d.plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => &obj["spec"]["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        ("", "podtemplates") => &obj["template"],
        _ => return Vec::new(),
    };
    if ns.is_empty() || !template.is_object() {
        return Vec::new();
    }
    let Some(namespace) = cached_namespace(server, ns) else { return Vec::new() };
    let (enforce, warn) = namespace_levels(&namespace);
    let level = if warn > Level::Privileged { warn } else { enforce };
    if level == Level::Privileged {
        return Vec::new();
    }
    let pod = json!({"metadata": template["metadata"], "spec": template["spec"]});
    let v = violations(&pod, level);
    if v.is_empty() {
        Vec::new()
    } else {
        vec![warning(level, &v)]
    }
}

/// Whether a pod update needs PodSecurity again: upstream re-evaluates only
/// when a container image or a seccomp annotation changes (the other
/// mutable fields cannot weaken the pod's security).
fn significant_pod_update(new: &Value, old: &Value) -> bool {
    let images = |p: &Value| -> Vec<Value> {
        ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| p["spec"][k].as_array().cloned().unwrap_or_default())
            .map(|c| c["image"].clone())
            .collect()
    };
    let seccomp = |p: &Value| -> Vec<(String, Value)> {
        p["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                k.starts_with("seccomp.security.alpha.kubernetes.io/")
                    || k.starts_with("container.seccomp.security.alpha.kubernetes.io/")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    images(new) != images(old) || seccomp(new) != seccomp(old)
}
