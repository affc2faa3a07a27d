//! API errors as `metav1.Status`, with upstream's reasons, codes and wording.
//!
//! Everything that leaves a registry is an [`ApiError`]; the HTTP edge turns it
//! into a `Status` body once.

use serde::Serialize;
use serde_json::{json, Value};

/// A `metav1.StatusCause`: one field-level reason for a failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    #[serde(rename = "type")]
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// One validation failure at a field path, as upstream's `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    /// The offending value rendered for the message, when upstream shows one.
    pub value: Option<String>,
    pub detail: String,
}

/// Upstream's `field.ErrorType`; the string is the `StatusCause.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
}

impl FieldErrorKind {
    pub fn cause_type(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
        }
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind: FieldErrorKind::Required, field: field.into(), value: None, detail: detail.into() }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display + std::fmt::Debug,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(format!("{value:?}").replace("\\\"", "\"")),
            detail: detail.into(),
        }
    }

    /// An invalid value shown as a JSON value (numbers unquoted, as upstream prints ints).
    pub fn invalid_json(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        FieldError { kind: FieldErrorKind::Invalid, field: field.into(), value: Some(shown), detail: detail.into() }
    }

    pub fn duplicate(field: impl Into<String>, value: impl std::fmt::Display + std::fmt::Debug) -> Self {
        FieldError {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: String::new(),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl std::fmt::Display + std::fmt::Debug,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(format!("{value:?}")),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind: FieldErrorKind::Forbidden, field: field.into(), value: None, detail: detail.into() }
    }

    /// Upstream's `field.Error.Error()`: `spec.x: Invalid value: "v": detail`.
    pub fn message(&self) -> String {
        let mut s = format!("{}: {}", self.field, self.kind.phrase());
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The `StatusCause.message`: the error without the field prefix.
    fn cause_message(&self) -> String {
        let mut s = self.kind.phrase().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// A list of field errors that prefixes paths as it descends, like `field.Path`.
pub type FieldErrors = Vec<FieldError>;

/// Identifies the resource an error is about (`StatusDetails.group/kind`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qualified {
    pub group: String,
    /// The resource plural (upstream puts the resource in `details.kind` for NotFound).
    pub resource: String,
}

impl Qualified {
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        Qualified { group: group.into(), resource: resource.into() }
    }

    /// `deployments.apps` or `pods`.
    pub fn to_string_qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// An API error, ready to be rendered as a `metav1.Status`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds a client should wait before retrying (429, 504 and some 500s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(what: &Qualified, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{} \"{}\" not found", what.to_string_qualified(), name))
            .with_details(json!({"name": name, "group": what.group, "kind": what.resource}))
    }

    pub fn already_exists(what: &Qualified, name: &str) -> Self {
        ApiError::new(409, "AlreadyExists", format!("{} \"{}\" already exists", what.to_string_qualified(), name))
            .with_details(json!({"name": name, "group": what.group, "kind": what.resource}))
    }

    /// The optimistic-concurrency conflict every client retries on.
    pub fn conflict(what: &Qualified, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {}", what.to_string_qualified(), name, why),
        )
        .with_details(json!({"name": name, "group": what.group, "kind": what.resource}))
    }

    pub fn stale_object(what: &Qualified, name: &str) -> Self {
        Self::conflict(
            what,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error; `kind` is the object's Kind.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        let summary = if messages.len() == 1 { messages[0].clone() } else { format!("[{}]", messages.join(", ")) };
        let causes: Vec<StatusCause> = errors
            .iter()
            .map(|e| StatusCause {
                reason: e.kind.cause_type().to_string(),
                message: e.cause_message(),
                field: e.field.clone(),
            })
            .collect();
        ApiError::new(422, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {summary}"))
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, "Unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_supported(what: &Qualified, action: &str) -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{action} is not supported on resources of kind {:?}", what.to_string_qualified()),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Gone", message)
    }

    /// The watch error for a resourceVersion older than the cache window.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn is_not_found(&self) -> bool {
        self.reason == "NotFound"
    }

    pub fn is_conflict(&self) -> bool {
        self.reason == "Conflict"
    }

    /// The `metav1.Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = self.details.clone();
        if let Some(secs) = self.retry_after {
            let d = details.get_or_insert_with(|| json!({}));
            d["retryAfterSeconds"] = json!(secs);
        }
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// A successful `Status` (delete of a resource without a body to return).
pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::not_found(&Qualified::new("apps", "deployments"), "web");
        assert_eq!(e.code, 404);
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        let s = e.to_status();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_every_cause_with_its_field() {
        let errs = vec![
            FieldError::required("spec.containers", ""),
            FieldError::invalid("metadata.name", "A_b", "a lowercase RFC 1123 subdomain"),
        ];
        let e = ApiError::invalid("", "Pod", "A_b", &errs);
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with(
            "Pod \"A_b\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A_b\""
        ));
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["type"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][1]["field"], "metadata.name");
    }

    #[test]
    fn conflict_uses_upstream_wording() {
        let e = ApiError::stale_object(&Qualified::new("", "configmaps"), "c");
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }
}
