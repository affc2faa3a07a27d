//! Object metadata handled the same way for every kind: system fields on
//! create and update, generated names, and ObjectMeta validation.

use apimachinery::status::{FieldError, FieldErrors};
use serde_json::{json, Map, Value};

/// `2006-01-02T15:04:05Z`, as upstream serializes `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn rfc3339_after(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random 5-character suffix from upstream's alphabet (no vowels, no look-alikes).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub fn is_terminating(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Fills a name from `generateName` when the name is empty.
pub fn generate_name(obj: &mut Value) {
    let m = metadata_mut(obj);
    let empty = m.get("name").and_then(Value::as_str).unwrap_or_default().is_empty();
    if empty {
        if let Some(prefix) = m.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            let mut prefix = prefix.to_string();
            // upstream truncates so the result stays within 63 characters.
            prefix.truncate(58);
            m.insert("name".into(), Value::String(format!("{prefix}{}", name_suffix())));
        }
    }
}

/// System metadata on create: uid, creationTimestamp, generation; clears what
/// clients may not set.
pub fn fill_on_create(obj: &mut Value, tracks_generation: bool) {
    let m = metadata_mut(obj);
    m.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        m.remove(k);
    }
    if tracks_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
}

/// System metadata on update: what clients may not change is carried over.
pub fn carry_on_update(new: &mut Value, old: &Value, tracks_generation: bool) {
    let old_meta = &old["metadata"];
    let m = metadata_mut(new);
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match old_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    m.remove("selfLink");
    if tracks_generation {
        let old_gen = old_meta["generation"].as_i64().unwrap_or(1);
        m.insert("generation".into(), json!(old_gen));
        if spec_changed(new, old) {
            metadata_mut(new).insert("generation".into(), json!(old_gen + 1));
        }
    } else {
        m.remove("generation");
    }
}

/// Whether anything outside metadata and status changed.
fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(new) != strip(old)
}

/// How a kind's names are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces, nodes? no: namespaces, statefulsets' pods...).
    Label,
    /// RFC 1035 label (services).
    Rfc1035Label,
    /// Any path segment (RBAC kinds).
    PathSegment,
}

/// Validates ObjectMeta: name, generateName, namespace, labels, annotations, finalizers.
pub fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule) -> FieldErrors {
    use apimachinery::validation as v;
    let mut errs = Vec::new();
    let m = &obj["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    let generate = m["generateName"].as_str().unwrap_or_default();
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        let msgs = match rule {
            NameRule::Subdomain => v::is_dns1123_subdomain(name),
            NameRule::Label => v::is_dns1123_label(name),
            NameRule::Rfc1035Label => v::is_dns1035_label(name),
            NameRule::PathSegment => path_segment_errors(name),
        };
        for msg in msgs {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    let ns = m["namespace"].as_str().unwrap_or_default();
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in v::is_dns1123_label(ns) {
                errs.push(FieldError::invalid("metadata.namespace", ns, msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(labels) = m["labels"].as_object() {
        for (k, val) in labels {
            for msg in v::is_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", k, msg));
            }
            let s = val.as_str().unwrap_or_default();
            for msg in v::is_valid_label_value(s) {
                errs.push(FieldError::invalid("metadata.labels", s, msg));
            }
        }
    }
    if let Some(ann) = m["annotations"].as_object() {
        let mut total = 0usize;
        for (k, val) in ann {
            for msg in v::is_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k, msg));
            }
            total += k.len() + val.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError {
                kind: apimachinery::status::FieldErrorKind::TooLong,
                field: "metadata.annotations".into(),
                value: None,
                detail: "must have at most 262144 bytes".into(),
            });
        }
    }
    if let Some(fins) = m["finalizers"].as_array() {
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or_default();
            for msg in v::is_qualified_name(f) {
                errs.push(FieldError::invalid(format!("metadata.finalizers[{i}]"), f, msg));
            }
        }
    }
    errs
}

/// Validates what may not change between two versions' metadata.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, path) in [("name", "metadata.name"), ("namespace", "metadata.namespace")] {
        if new["metadata"][field] != old["metadata"][field] {
            errs.push(FieldError::invalid_json(path, &new["metadata"][field], "field is immutable"));
        }
    }
    errs
}

fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut out = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_prefix_and_add_five_characters() {
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        generate_name(&mut obj);
        let n = name(&obj);
        assert!(n.starts_with("web-"));
        assert_eq!(n.len(), 9);
    }

    #[test]
    fn generation_is_bumped_only_when_the_spec_changes() {
        let old = json!({"metadata": {"generation": 3, "uid": "u"}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let mut same = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"x": 2}});
        carry_on_update(&mut same, &old, true);
        assert_eq!(same["metadata"]["generation"], 3);
        let mut changed = json!({"metadata": {}, "spec": {"replicas": 2}});
        carry_on_update(&mut changed, &old, true);
        assert_eq!(changed["metadata"]["generation"], 4);
        assert_eq!(changed["metadata"]["uid"], "u");
    }

    #[test]
    fn meta_validation_rejects_bad_names_and_missing_namespace() {
        let obj = json!({"metadata": {"name": "Bad_Name"}});
        let errs = validate_object_meta(&obj, true, NameRule::Subdomain);
        assert!(errs.iter().any(|e| e.field == "metadata.name"));
        assert!(errs.iter().any(|e| e.field == "metadata.namespace"));
    }
}
