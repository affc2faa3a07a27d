//! Per-kind strategy hooks, the only place kind-specific behaviour lives.
//!
//! A kind implements [`KindStrategy`] over its typed k8s-openapi struct; the
//! blanket [`Typed`] adapter turns it into the object-safe [`Strategy`] the
//! generic store calls with JSON values.

use std::marker::PhantomData;

use apimachinery::status::{ApiError, FieldErrors};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// What the generic store asks of a kind. All hooks work on JSON values.
pub trait Strategy: Send + Sync {
    /// Decodes the object into its typed form and back: unknown fields are
    /// dropped and reported as paths (for `fieldValidation`), defaults applied.
    fn normalize(&self, obj: Value) -> Result<Normalized, ApiError>;
    /// Clears what a client may not set on create (status, ...).
    fn prepare_for_create(&self, obj: &mut Value);
    /// Carries over what a client may not change on update.
    fn prepare_for_update(&self, new: &mut Value, old: &Value);
    fn validate(&self, obj: &Value) -> FieldErrors;
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors;
    /// Warnings returned to the client (the `Warning` header).
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }
    /// Whether a PUT without `metadata.resourceVersion` is allowed.
    fn allow_unconditional_update(&self) -> bool {
        true
    }
    /// Whether a PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }
    /// Grace period for a delete (`requested` from DeleteOptions); 0 deletes at once.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }
    /// Whether kind-specific finalization (namespace `spec.finalizers`) is pending.
    fn pending_finalization(&self, _obj: &Value) -> bool {
        false
    }
    /// Marks the object as terminating (namespace `status.phase`).
    fn mark_terminating(&self, _obj: &mut Value) {}
    /// Whether a create keeps the client's status (nodes register with theirs);
    /// otherwise kinds with a status subresource start without one.
    fn keeps_status_on_create(&self) -> bool {
        false
    }
}

/// The result of [`Strategy::normalize`].
#[derive(Debug)]
pub struct Normalized {
    pub object: Value,
    /// Paths of fields that the kind does not know, e.g. `spec.foo`.
    pub unknown_fields: Vec<String>,
}

/// Kind-specific hooks over the typed object.
pub trait KindStrategy: Send + Sync + 'static {
    type Object: DeserializeOwned + Serialize + Send;

    /// Upstream's defaulting (`SetDefaults_*`).
    fn default(&self, _obj: &mut Self::Object) {}
    fn prepare_for_create(&self, _obj: &mut Self::Object) {}
    fn prepare_for_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}
    fn validate(&self, _obj: &Self::Object) -> FieldErrors {
        Vec::new()
    }
    fn validate_update(&self, _new: &Self::Object, _old: &Self::Object) -> FieldErrors {
        Vec::new()
    }
    fn allow_create_on_update(&self) -> bool {
        false
    }
    fn grace_period(&self, _obj: &Self::Object, _requested: Option<i64>) -> i64 {
        0
    }
    fn pending_finalization(&self, _obj: &Self::Object) -> bool {
        false
    }
    fn mark_terminating(&self, _obj: &mut Self::Object) {}
    fn keeps_status_on_create(&self) -> bool {
        false
    }
}

/// Adapts a [`KindStrategy`] to the object-safe [`Strategy`].
pub struct Typed<S: KindStrategy> {
    pub kind: S,
    _object: PhantomData<fn() -> S::Object>,
}

impl<S: KindStrategy> Typed<S> {
    pub fn new(kind: S) -> Self {
        Typed { kind, _object: PhantomData }
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("error decoding object: {e}")))
}

fn encode<T: Serialize>(t: &T) -> Value {
    // Serializing a k8s-openapi struct to a JSON value cannot fail: its maps
    // have string keys and it holds no non-finite floats.
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// Lists the paths present in `input` but not in `known` (what decoding dropped).
pub fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &child, out),
                    // null, empty lists/maps and false serialize away; they are not unknown.
                    None if is_emptyish(v) => {}
                    None => {
                        if !(path.is_empty() && (key == "apiVersion" || key == "kind")) {
                            out.push(child)
                        }
                    }
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

fn is_emptyish(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_emptyish),
        _ => false,
    }
}

impl<S: KindStrategy> Strategy for Typed<S> {
    fn normalize(&self, obj: Value) -> Result<Normalized, ApiError> {
        let api_version = obj.get("apiVersion").cloned();
        let kind = obj.get("kind").cloned();
        let mut typed: S::Object = decode(obj.clone())?;
        let mut unknown = Vec::new();
        unknown_fields(&obj, &encode(&typed), "", &mut unknown);
        self.kind.default(&mut typed);
        let mut object = encode(&typed);
        if let Value::Object(m) = &mut object {
            if let Some(v) = api_version {
                m.insert("apiVersion".into(), v);
            }
            if let Some(k) = kind {
                m.insert("kind".into(), k);
            }
        }
        Ok(Normalized { object, unknown_fields: unknown })
    }

    fn keeps_status_on_create(&self) -> bool {
        self.kind.keeps_status_on_create()
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Ok(mut typed) = serde_json::from_value::<S::Object>(obj.clone()) {
            self.kind.prepare_for_create(&mut typed);
            *obj = keep_type_meta(obj, encode(&typed));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let (Ok(mut n), Ok(o)) =
            (serde_json::from_value::<S::Object>(new.clone()), serde_json::from_value::<S::Object>(old.clone()))
        else {
            return;
        };
        self.kind.prepare_for_update(&mut n, &o);
        *new = keep_type_meta(new, encode(&n));
    }

    fn validate(&self, obj: &Value) -> FieldErrors {
        match serde_json::from_value::<S::Object>(obj.clone()) {
            Ok(t) => self.kind.validate(&t),
            Err(e) => vec![apimachinery::status::FieldError::invalid("", "", e.to_string())],
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        match (serde_json::from_value::<S::Object>(new.clone()), serde_json::from_value::<S::Object>(old.clone())) {
            (Ok(n), Ok(o)) => self.kind.validate_update(&n, &o),
            (Err(e), _) | (_, Err(e)) => vec![apimachinery::status::FieldError::invalid("", "", e.to_string())],
        }
    }

    fn allow_create_on_update(&self) -> bool {
        self.kind.allow_create_on_update()
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        serde_json::from_value::<S::Object>(obj.clone()).map(|t| self.kind.grace_period(&t, requested)).unwrap_or(0)
    }

    fn pending_finalization(&self, obj: &Value) -> bool {
        serde_json::from_value::<S::Object>(obj.clone()).map(|t| self.kind.pending_finalization(&t)).unwrap_or(false)
    }

    fn mark_terminating(&self, obj: &mut Value) {
        if let Ok(mut typed) = serde_json::from_value::<S::Object>(obj.clone()) {
            self.kind.mark_terminating(&mut typed);
            *obj = keep_type_meta(obj, encode(&typed));
        }
    }
}

fn keep_type_meta(from: &Value, mut to: Value) -> Value {
    if let Value::Object(m) = &mut to {
        for k in ["apiVersion", "kind"] {
            if let Some(v) = from.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_reports_paths_dropped_by_decoding() {
        let input =
            json!({"apiVersion":"v1","kind":"Pod","spec":{"foo":1,"containers":[{"name":"a","bar":true}]},"x":null});
        let known = json!({"spec":{"containers":[{"name":"a"}]}});
        let mut out = Vec::new();
        unknown_fields(&input, &known, "", &mut out);
        assert_eq!(out, vec!["spec.containers[0].bar".to_string(), "spec.foo".to_string()]);
    }
}
