//! The three patch kinds of `PATCH` requests, applied to objects held as JSON:
//! RFC 6902 JSON patch ([`json_patch()`]), RFC 7386 merge patch ([`merge_patch`])
//! and Kubernetes strategic merge patch ([`strategic_merge_patch`]), whose list
//! handling is driven by a [`PatchMeta`] describing the object's schema.

pub mod builtin;
mod meta;
mod strategic;

pub use builtin::BuiltinPatchMeta;
pub use meta::{MergeStrategy, NoPatchMeta, PatchMeta, PatchStrategy, SchemaPatchMeta};
pub use strategic::strategic_merge_patch;

use serde_json::Value;

use crate::status::ApiError;

/// Upstream's cap on the number of operations in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The `Content-Type` of a `PATCH` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    /// The patch type for a request's media type (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        Some(match media {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. Messages follow upstream's
/// (`k8s.io/apimachinery/pkg/util/mergepatch`, evanphx/json-patch where sensible);
/// [`status_code`](Self::status_code) gives the HTTP status upstream answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The object or the strategic merge patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// The JSON patch is not a list of valid operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },
    /// A JSON patch operation failed (missing path, failed test, ...).
    #[error("{0}")]
    JsonPatchFailed(String),
    /// A `$patch` directive other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective { directive: String, map: String },
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// An element of a merging list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A list of maps declared `merge` without a merge key.
    #[error("cannot merge lists without merge key for {0}")]
    MissingMergeKey(String),
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("list element types are not identical: {0}")]
    MixedListElements(String),
    /// A value had the wrong JSON type for its position; names are Go's.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType { expected: &'static str, actual: &'static str },
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The patch sets a field its `$retainKeys` list does not keep.
    #[error("patch content doesn't match retainKeys list")]
    RetainKeysMismatch,
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
    /// A `x-kubernetes-patch-strategy` that is not `merge`, `replace`, `retainKeys` or a pair with `retainKeys`.
    #[error("unexpected patch strategy: {0}")]
    UnexpectedStrategy(String),
}

impl PatchError {
    /// The HTTP status upstream's patch handler answers with: 400 for a
    /// malformed patch, 422 for one that cannot apply, 413 for too many
    /// operations, 500 for the rest (upstream passes those through unwrapped).
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadJsonDoc
            | PatchError::InvalidJsonPatch(_)
            | PatchError::BadPrimitiveListFormat
            | PatchError::BadRetainKeysFormat
            | PatchError::BadSetElementOrderFormat => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::JsonPatchFailed(_) | PatchError::ListOfLists | PatchError::RetainKeysMismatch => 422,
            _ => 500,
        }
    }

    /// This error as the API error the apiserver returns.
    pub fn to_api_error(&self) -> ApiError {
        match self.status_code() {
            400 => ApiError::bad_request(self.to_string()),
            413 => ApiError::request_entity_too_large(self.to_string()),
            422 => ApiError::new(422, "Invalid", self.to_string()),
            _ => ApiError::internal(self.to_string()),
        }
    }
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        e.to_api_error()
    }
}

/// Applies an RFC 6902 JSON patch (a list of `add`/`remove`/`replace`/`move`/
/// `copy`/`test` operations) to a copy of `doc`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::InvalidJsonPatch("the patch must be a JSON array of operations".into()));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { max: MAX_JSON_PATCH_OPERATIONS, got: ops.len() });
    }
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// removes a key, everything else (lists included) replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(doc) => doc.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in patch {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_applies_operations_in_order() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1, "list": [1, 2]}});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "test", "path": "/spec/replicas", "value": 3},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
            {"op": "move", "from": "/spec/copied", "path": "/spec/moved"}
        ]);
        let out = json_patch(&doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3, "list": [1, 2, 3], "moved": 3}})
        );
    }

    #[test]
    fn json_patch_on_a_missing_path_is_an_unprocessable_error() {
        let err = json_patch(&json!({"a": {}}), &json!([{"op": "replace", "path": "/a/b/c", "value": 1}])).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed(_)), "{err:?}");
        assert_eq!(err.status_code(), 422);
        let err = json_patch(&json!({"a": 1}), &json!([{"op": "remove", "path": "/nope"}])).unwrap_err();
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn json_patch_with_a_failed_test_leaves_an_error() {
        let err = json_patch(&json!({"a": 1}), &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert!(err.to_string().contains("value did not match"), "{err}");
    }

    #[test]
    fn malformed_json_patches_are_bad_requests() {
        let err = json_patch(&json!({}), &json!({"op": "add"})).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(&json!({}), &json!([{"op": "frobnicate", "path": "/a"}])).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
        let err = json_patch(&json!({}), &json!([{"op": "add", "path": "/a"}])).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)));
        let err = json_patch(&json!({}), &json!([{"op": "add", "path": "a", "value": 1}])).unwrap_err();
        assert_eq!(err.status_code(), 400, "{err}");
    }

    #[test]
    fn merge_patch_merges_objects_and_replaces_lists() {
        let doc = json!({"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": true});
        let patch = json!({"a": {"b": null, "d": {"e": null, "f": 1}}, "list": [3], "gone": null});
        assert_eq!(merge_patch(&doc, &patch), json!({"a": {"c": 2, "d": {"f": 1}}, "list": [3]}));
        assert_eq!(merge_patch(&json!({"a": 1}), &json!([1])), json!([1]));
        assert_eq!(merge_patch(&json!("x"), &json!({"a": null, "b": 1})), json!({"b": 1}));
    }

    #[test]
    fn patch_types_follow_content_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(PatchType::Json.content_type(), "application/json-patch+json");
    }
}
