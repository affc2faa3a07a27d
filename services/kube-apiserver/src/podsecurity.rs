//! PodSecurity admission: the Pod Security Standards `baseline` and
//! `restricted` levels, chosen per namespace by the
//! `pod-security.kubernetes.io/enforce` and `.../warn` labels.

use serde_json::Value;

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// The levels a namespace's labels ask for: (enforce, warn).
pub fn namespace_levels(ns: &Value) -> (Level, Level) {
    let label = |mode: &str| {
        ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")]
            .as_str()
            .and_then(Level::parse)
            .unwrap_or(Level::Privileged)
    };
    (label("enforce"), label("warn"))
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const RESTRICTED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .collect()
}

fn names(cs: &[&Value]) -> String {
    cs.iter().map(|c| format!("{:?}", c["name"].as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
}

fn plural(cs: &[&Value]) -> &'static str {
    if cs.len() == 1 {
        "container"
    } else {
        "containers"
    }
}

/// The violations of `level` in a pod (or pod template spec), worded as upstream.
pub fn violations(pod: &Value, level: Level) -> Vec<String> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let spec = &pod["spec"];
    let cs = containers(pod);
    // --- baseline ---
    let hosts: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"].into_iter().filter(|f| spec[*f] == true).collect();
    if !hosts.is_empty() {
        out.push(format!(
            "host namespaces ({})",
            hosts.iter().map(|h| format!("{h}=true")).collect::<Vec<_>>().join(", ")
        ));
    }
    let privileged: Vec<&Value> = cs.iter().copied().filter(|c| c["securityContext"]["privileged"] == true).collect();
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} {} must not set securityContext.privileged=true)",
            plural(&privileged),
            names(&privileged)
        ));
    }
    let mut added = Vec::new();
    let with_caps: Vec<&Value> = cs
        .iter()
        .copied()
        .filter(|c| {
            let bad: Vec<String> = c["securityContext"]["capabilities"]["add"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .filter(|a| !BASELINE_CAPABILITIES.contains(a))
                .map(|a| format!("{a:?}"))
                .collect();
            let any = !bad.is_empty();
            added.extend(bad);
            any
        })
        .collect();
    if !with_caps.is_empty() {
        added.sort();
        added.dedup();
        out.push(format!(
            "non-default capabilities ({} {} must not include {} in securityContext.capabilities.add)",
            plural(&with_caps),
            names(&with_caps),
            added.join(", ")
        ));
    }
    let host_paths: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or_default()))
        .collect();
    if !host_paths.is_empty() {
        out.push(format!("hostPath volumes (volume {})", host_paths.join(", ")));
    }
    let with_ports: Vec<&Value> = cs
        .iter()
        .copied()
        .filter(|c| c["ports"].as_array().into_iter().flatten().any(|p| p["hostPort"].as_i64().unwrap_or(0) != 0))
        .collect();
    if !with_ports.is_empty() {
        out.push(format!("hostPort ({} {} must not use hostPort)", plural(&with_ports), names(&with_ports)));
    }
    let bad_sysctls: Vec<String> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(String::from)
        .collect();
    if !bad_sysctls.is_empty() {
        out.push(format!("forbidden sysctls ({})", bad_sysctls.join(", ")));
    }
    if level == Level::Baseline {
        return out;
    }
    // --- restricted ---
    let bad_volumes: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v.as_object()
                .is_some_and(|m| m.keys().filter(|k| *k != "name").any(|k| !RESTRICTED_VOLUMES.contains(&k.as_str())))
        })
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or_default()))
        .collect();
    if !bad_volumes.is_empty() {
        out.push(format!("restricted volume types (volume {} uses a restricted volume type)", bad_volumes.join(", ")));
    }
    let escalating: Vec<&Value> =
        cs.iter().copied().filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != false).collect();
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} {} must set securityContext.allowPrivilegeEscalation=false)",
            plural(&escalating),
            names(&escalating)
        ));
    }
    let drops_all =
        |c: &Value| c["securityContext"]["capabilities"]["drop"].as_array().into_iter().flatten().any(|d| d == "ALL");
    let not_dropping: Vec<&Value> = cs.iter().copied().filter(|c| !drops_all(c)).collect();
    if !not_dropping.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} {} must set securityContext.capabilities.drop=[\"ALL\"])",
            plural(&not_dropping),
            names(&not_dropping)
        ));
    }
    let pod_non_root = spec["securityContext"]["runAsNonRoot"] == true;
    let root: Vec<&Value> = cs
        .iter()
        .copied()
        .filter(|c| match &c["securityContext"]["runAsNonRoot"] {
            Value::Bool(b) => !b,
            _ => !pod_non_root,
        })
        .collect();
    if !root.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} {} must set securityContext.runAsNonRoot=true)",
            plural(&root),
            names(&root)
        ));
    }
    let seccomp_ok =
        |v: &Value| matches!(v["seccompProfile"]["type"].as_str(), Some("RuntimeDefault") | Some("Localhost"));
    let pod_seccomp = seccomp_ok(&spec["securityContext"]);
    let no_seccomp: Vec<&Value> =
        cs.iter().copied().filter(|c| !seccomp_ok(&c["securityContext"]) && !pod_seccomp).collect();
    if !no_seccomp.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            plural(&no_seccomp),
            names(&no_seccomp)
        ));
    }
    out
}

/// The upstream message for an enforced level.
pub fn forbidden_message(name: &str, level: Level, violations: &[String]) -> String {
    format!(
        "pods \"{name}\" is forbidden: violates PodSecurity \"{}:latest\": {}",
        level.as_str(),
        violations.join(", ")
    )
}

/// The upstream warning for a warned level.
pub fn warning(level: Level, violations: &[String]) -> String {
    format!("would violate PodSecurity \"{}:latest\": {}", level.as_str(), violations.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn baseline_rejects_host_namespaces_privileged_and_host_paths() {
        let pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "securityContext": {"privileged": true}}],
                                  "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}});
        let v = violations(&pod, Level::Baseline);
        assert_eq!(v[0], "host namespaces (hostNetwork=true)");
        assert_eq!(v[1], "privileged (container \"c\" must not set securityContext.privileged=true)");
        assert_eq!(v[2], "hostPath volumes (volume \"h\")");
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let pod = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        }});
        assert!(violations(&pod, Level::Restricted).is_empty());
        let plain = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(violations(&plain, Level::Restricted).len(), 4);
        assert!(violations(&plain, Level::Baseline).is_empty());
    }
}
