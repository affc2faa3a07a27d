//! DefaultTolerationSeconds: a pod that does not tolerate the
//! `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable`
//! NoExecute taints gets tolerations for them that expire after
//! `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`
//! (300 s each), so its node's failure evicts it after that long.

use serde_json::{json, Value};

use super::{done, AdmissionPlugin, Attributes, Config, Hook, Operation};
use crate::endpoints::ApiServer;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub struct DefaultTolerationSeconds {
    not_ready_seconds: i64,
    unreachable_seconds: i64,
}

impl DefaultTolerationSeconds {
    pub fn new(c: &Config) -> Self {
        DefaultTolerationSeconds {
            not_ready_seconds: c.not_ready_toleration_seconds,
            unreachable_seconds: c.unreachable_toleration_seconds,
        }
    }
}

impl AdmissionPlugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn admit<'a>(&'a self, _server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if matches!(a.operation, Operation::Create | Operation::Update) && a.is_main("", "pods") {
            if let Some(pod) = a.object_mut() {
                add_tolerations(pod, &[(NOT_READY, self.not_ready_seconds), (UNREACHABLE, self.unreachable_seconds)]);
            }
        }
        done(Ok(()))
    }
}

/// Adds a NoExecute toleration of each taint key the pod does not tolerate yet
/// (a toleration of that key, or of every key, with effect NoExecute or any).
fn add_tolerations(pod: &mut Value, wanted: &[(&str, i64)]) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let existing = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or_default();
            let effect = t["effect"].as_str().unwrap_or_default();
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let added: Vec<Value> = wanted
        .iter()
        .filter(|(key, _)| !tolerates(key))
        .map(|(key, secs)| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}))
        .collect();
    if added.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(added);
    spec.insert("tolerations".into(), Value::Array(all));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_tolerations_unless_already_tolerated() {
        let wanted = [(NOT_READY, 300), (UNREACHABLE, 120)];
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        add_tolerations(&mut pod, &wanted);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
            ])
        );
        // Its own not-ready toleration (any effect) stays the only one for that key.
        let mut pod = json!({"spec": {"tolerations": [{"key": NOT_READY, "operator": "Exists"}]}});
        add_tolerations(&mut pod, &wanted);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1]["key"], UNREACHABLE);
        // A toleration of every key tolerates both; a NoSchedule one of the key does not.
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_tolerations(&mut pod, &wanted);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut pod =
            json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]}});
        add_tolerations(&mut pod, &wanted);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }
}
