//! Built-in mutating admission run before the strategy: ServiceAccount
//! defaulting for pods and IP/port allocation for services.

use apimachinery::status::ApiError;
use serde_json::{json, Value};

use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

/// The admission plugins this server implements, by upstream's names, in
/// the order they run. A new plugin is one entry here plus its function.
pub const PLUGINS: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultTolerationSeconds",
    "Priority",
    "NodeRestriction",
    "PodSecurity",
    "ResourceQuota",
];

/// PodSecurity for a new pod: an enforced level's violations are a 403, a
/// warned level's come back as warnings.
pub fn pod_security(server: &ApiServer, ns: &str, pod: &Value) -> Result<Vec<String>, ApiError> {
    use crate::podsecurity::{forbidden_message, namespace_levels, violations, warning, Level};
    if !server.admission_enabled("PodSecurity") || ns.is_empty() {
        return Ok(Vec::new());
    }
    let Some(nsd) = server.resources.lookup("", "v1", "namespaces").cloned() else { return Ok(Vec::new()) };
    let Some(namespace) = server.store.cache(&nsd).get(&nsd.key(&server.store.root, "", ns)) else {
        return Ok(Vec::new());
    };
    let (enforce, warn) = namespace_levels(&namespace.value());
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
pub fn pod_security_template(server: &ApiServer, d: &ResourceDescriptor, ns: &str, obj: &Value) -> Vec<String> {
    use crate::podsecurity::{namespace_levels, violations, warning, Level};
    let template = match (d.group, d.plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => &obj["spec"]["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        ("", "podtemplates") => &obj["template"],
        _ => return Vec::new(),
    };
    if !server.admission_enabled("PodSecurity") || ns.is_empty() || !template.is_object() {
        return Vec::new();
    }
    let Some(nsd) = server.resources.lookup("", "v1", "namespaces").cloned() else { return Vec::new() };
    let Some(namespace) = server.store.cache(&nsd).get(&nsd.key(&server.store.root, "", ns)) else {
        return Vec::new();
    };
    let (enforce, warn) = namespace_levels(&namespace.value());
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

/// Checks `--enable-admission-plugins`/`--disable-admission-plugins`; unknown names are errors.
pub fn check_plugin_flags(enable: &[String], disable: &[String]) -> Result<(), String> {
    for name in enable.iter().chain(disable).filter(|n| !n.is_empty()) {
        if !PLUGINS.contains(&name.as_str()) {
            return Err(format!("unknown admission plugin {name:?} (this server implements: {})", PLUGINS.join(", ")));
        }
    }
    Ok(())
}

/// LimitRanger: container requests/limits default from the namespace's
/// LimitRanges and must stay within their min/max.
fn limit_ranger(server: &ApiServer, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    use apimachinery::quantity::parse_milli;
    let Some(lrd) = server.resources.lookup("", "v1", "limitranges").cloned() else { return Ok(()) };
    let (ranges, _) = server.store.cache(&lrd).snapshot(&lrd.key_prefix(&server.store.root, Some(ns)));
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    for lr in ranges {
        let lr = lr.value();
        for limit in lr["spec"]["limits"].as_array().into_iter().flatten().filter(|l| l["type"] == "Container") {
            for list in ["containers", "initContainers"] {
                let Some(containers) = pod["spec"][list].as_array_mut() else { continue };
                for c in containers {
                    for (field, source) in [("limits", "default"), ("requests", "defaultRequest")] {
                        for (res, q) in limit[source].as_object().into_iter().flatten() {
                            if c["resources"][field][res].is_null() {
                                c["resources"][field][res] = q.clone();
                            }
                        }
                    }
                    // A default limit below an explicit request would be invalid; upstream
                    // defaults requests from limits when only limits are set.
                    for (res, q) in c["resources"]["limits"].as_object().cloned().unwrap_or_default() {
                        if c["resources"]["requests"][&res].is_null() {
                            c["resources"]["requests"][&res] = q;
                        }
                    }
                    for (bound, field, word) in [("max", "limits", "maximum"), ("min", "requests", "minimum")] {
                        for (res, q) in limit[bound].as_object().into_iter().flatten() {
                            let (Some(b), Some(v)) = (
                                q.as_str().and_then(|q| parse_milli(q).ok()),
                                c["resources"][field][res].as_str().and_then(|q| parse_milli(q).ok()),
                            ) else {
                                continue;
                            };
                            let over = if bound == "max" { v > b } else { v < b };
                            if over {
                                let what = if field == "limits" { "limit" } else { "request" };
                                return Err(ApiError::forbidden(format!(
                                    "pods \"{name}\" is forbidden: {word} {res} usage per Container is {}, but {what} is {}",
                                    q.as_str().unwrap_or_default(),
                                    c["resources"][field][res].as_str().unwrap_or_default()
                                )));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Priority: `priorityClassName` resolves to `priority` and `preemptionPolicy`;
/// a pod without one gets the global default class, if any.
fn priority(server: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    let Some(pcd) = server.resources.lookup("scheduling.k8s.io", "v1", "priorityclasses").cloned() else {
        return Ok(());
    };
    let cache = server.store.cache(&pcd);
    let wanted = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_string();
    let class = if wanted.is_empty() {
        let (all, _) = cache.snapshot(&pcd.key_prefix(&server.store.root, None));
        all.iter().map(|c| c.value()).find(|c| c["globalDefault"] == true)
    } else {
        match cache.get(&pcd.key(&server.store.root, "", &wanted)) {
            Some(c) => Some(c.value()),
            None => {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: no PriorityClass with name {wanted} was found"
                )));
            }
        }
    };
    if let Some(c) = class {
        let computed = c.get("preemptionPolicy").cloned().unwrap_or(json!("PreemptLowerPriority"));
        let given = &pod["spec"]["preemptionPolicy"];
        if given.is_string() && *given != computed {
            return Err(ApiError::forbidden(format!(
                "the string value of PreemptionPolicy ({}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                given.as_str().unwrap_or_default(),
                computed.as_str().unwrap_or_default()
            )));
        }
        pod["spec"]["priorityClassName"] = c["metadata"]["name"].clone();
        pod["spec"]["priority"] = c["value"].clone();
        pod["spec"]["preemptionPolicy"] = computed;
    }
    Ok(())
}

const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// ServiceAccount: pods run as `default` unless they name an account, and get
/// the projected `kube-api-access-*` volume (a bound token, the cluster CA and
/// their namespace) mounted in every container, unless automounting is off
/// for the pod or its service account, or the path is already mounted.
fn service_account(server: &ApiServer, ns: &str, pod: &mut Value) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return;
    }
    if spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
        spec["serviceAccountName"] = json!("default");
    }
    spec["serviceAccount"] = spec["serviceAccountName"].clone();
    let mirror = pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
    let spec = &mut pod["spec"];
    let sa_name = spec["serviceAccountName"].as_str().unwrap_or_default().to_string();
    let sa_automount = server
        .resources
        .lookup("", "v1", "serviceaccounts")
        .and_then(|d| server.store.cache(d).get(&d.key(&server.store.root, ns, &sa_name)))
        .map(|o| o.value()["automountServiceAccountToken"] != false)
        .unwrap_or(true);
    let automount = match spec["automountServiceAccountToken"].as_bool() {
        Some(b) => b,
        None => sa_automount,
    };
    if mirror || !automount {
        return;
    }
    let mounted = ["containers", "initContainers"].iter().any(|l| {
        spec[*l]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == SA_MOUNT_PATH))
    });
    if mounted {
        return;
    }
    let volume = format!("kube-api-access-{}", crate::registry::meta::name_suffix());
    let projected = json!({
        "name": volume,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(v) => v.push(projected),
        None => spec["volumes"] = json!([projected]),
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            for c in cs {
                let mount = json!({"name": volume, "mountPath": SA_MOUNT_PATH, "readOnly": true});
                match c["volumeMounts"].as_array_mut() {
                    Some(m) => m.push(mount),
                    None => c["volumeMounts"] = json!([mount]),
                }
            }
        }
    }
}

/// Mutations applied to a new object before it is validated and stored.
pub async fn mutate_on_create(
    server: &ApiServer,
    d: &ResourceDescriptor,
    ns: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    match (d.group, d.plural) {
        ("", "pods") => {
            if server.admission_enabled("LimitRanger") && !ns.is_empty() {
                limit_ranger(server, ns, &mut obj)?;
            }
            if server.admission_enabled("ServiceAccount") {
                service_account(server, ns, &mut obj);
            }
            if server.admission_enabled("Priority") {
                priority(server, &mut obj)?;
            }
        }
        ("", "services") => {
            if let Some(alloc) = &server.allocator {
                alloc.allocate_for(&mut obj).await?;
            }
        }
        _ => {}
    }
    Ok(obj)
}

/// Frees what admission allocated for an object that is gone or was never stored.
pub async fn release(server: &ApiServer, d: &ResourceDescriptor, obj: &Value) {
    if let (("", "services"), Some(alloc)) = ((d.group, d.plural), &server.allocator) {
        alloc.release(obj).await;
    }
}

/// Upstream's RBAC escalation prevention: a Role/ClusterRole write may grant
/// only rules its writer holds (or the writer has `escalate`); a binding may
/// reference only a role whose rules the writer holds (or the writer has `bind`).
pub fn check_rbac_escalation(
    server: &ApiServer,
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    obj: &Value,
) -> Result<(), ApiError> {
    use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
    if d.group != "rbac.authorization.k8s.io" || !server.authorizer.uses_rbac() || rbac::escalation_allowed(user) {
        return Ok(());
    }
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let source = server.authorizer.rbac_source();
    let allowed = |attrs: &rbac::Attributes| server.authorizer.authorize(attrs).0 == rbac::Decision::Allow;
    let requested: Vec<PolicyRule> = match d.plural {
        "roles" | "clusterroles" => {
            if allowed(&rbac::escalate_attributes(user, d.plural, ns, name)) {
                return Ok(());
            }
            serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref: RoleRef = serde_json::from_value(obj["roleRef"].clone())
                .map_err(|e| ApiError::bad_request(format!("roleRef: {e}")))?;
            if rbac::bind_attributes(user, &role_ref, ns).is_some_and(|a| allowed(&a)) {
                return Ok(());
            }
            match rbac::role_ref_rules(source.as_ref(), &role_ref, ns) {
                Ok(rules) => rules,
                Err(e) => return Err(ApiError::forbidden(e.to_string())),
            }
        }
        _ => return Ok(()),
    };
    let owner = rbac::rules_for(source.as_ref(), user, ns);
    rbac::confirm_no_escalation(&owner, &requested).map_err(|missing| {
        ApiError::forbidden(format!(
            "{}.rbac.authorization.k8s.io \"{name}\" is forbidden: {}",
            d.plural,
            rbac::escalation_message(user, &missing)
        ))
    })
}

/// NodeRestriction: a kubelet writes only its own Node and Lease, and only
/// pods bound to it (creating just mirror pods); it cannot set the
/// `node-restriction.kubernetes.io/` labels.
pub fn check_node_restriction(
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(node) = crate::authz::node_name(user) else { return Ok(()) };
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let forbid = |msg: String| Err(ApiError::forbidden(format!("{} \"{name}\" is forbidden: {msg}", d.plural)));
    match (d.group, d.plural) {
        ("", "nodes") => {
            if name != node {
                return forbid(format!("node \"{node}\" is not allowed to modify node \"{name}\""));
            }
            let restricted = |v: &Value| -> Vec<(String, String)> {
                v["metadata"]["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| {
                                k.split('/').next().is_some_and(|p| p.ends_with("node-restriction.kubernetes.io"))
                            })
                            .map(|(k, v)| (k.clone(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if restricted(new) != old.map(restricted).unwrap_or_default() {
                return forbid(format!(
                    "is not allowed to modify labels: node-restriction.kubernetes.io/* (node \"{node}\")"
                ));
            }
        }
        ("", "pods") => {
            let bound = |v: &Value| v["spec"]["nodeName"].as_str() == Some(node);
            match old {
                None => {
                    let mirror = new["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
                    if !mirror {
                        return forbid(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
                    }
                    if !bound(new) {
                        return forbid(format!(
                            "node \"{node}\" can only create pods with spec.nodeName set to itself"
                        ));
                    }
                }
                Some(o) => {
                    if !bound(o) {
                        return forbid(format!(
                            "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                        ));
                    }
                }
            }
        }
        ("coordination.k8s.io", "leases") => {
            let ns = new["metadata"]["namespace"].as_str().unwrap_or_default();
            if ns == "kube-node-lease" && name != node {
                return forbid("can only access node lease with the same name as the requesting node".to_string());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Validating admission on writes, in order.
pub fn validate(
    server: &ApiServer,
    d: &ResourceDescriptor,
    user: &rbac::UserInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if server.admission_enabled("NodeRestriction") {
        check_node_restriction(d, user, new, old)?;
    }
    if let (true, Some(old)) = (d.group.is_empty() && d.plural == "pods", old) {
        if significant_pod_update(new, old) {
            let ns = new["metadata"]["namespace"].as_str().unwrap_or_default();
            pod_security(server, ns, new)?;
        }
    }
    check_rbac_escalation(server, d, user, new)
}
