//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`)
//! transcoded to and from the JSON form of the same objects.
//!
//! A body is the 4 bytes `k8s\0` followed by a `runtime.Unknown` message whose
//! `typeMeta` names the apiVersion and kind and whose `raw` holds the object's
//! own message. Nothing here is written per type: the conversion is driven by
//! upstream's descriptors for Kubernetes v1.33 (embedded, see
//! `descriptors/README.md`), with a handful of rules for the types whose JSON
//! form differs from their message (Time, MicroTime, Duration, Quantity,
//! IntOrString, RawExtension, FieldsV1, the string-list wrappers and
//! `json:",inline"` fields).
//!
//! Decoding follows Go's semantics, where a value field (non-pointer) left at
//! its zero value is indistinguishable from one never set: such zeros are left
//! out of the JSON, while pointer fields keep an explicit `0`, `false` or `""`
//! (so `replicas: 0` survives). Zero times are left out (Go writes `null`).

#![forbid(unsafe_code)]

mod decode;
mod encode;
mod path;
mod registry;
mod special;
mod wire;

use serde_json::Value;

use crate::path::Path;
use crate::registry::registry;
use crate::wire::{put_bytes, Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Nesting deeper than this (fields, list items and map values) is refused.
const MAX_DEPTH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a Kubernetes protobuf body: it does not start with \"k8s\\0\"")]
    NotProtobuf,
    #[error("the protobuf envelope uses content encoding {0:?}, which is not supported")]
    UnsupportedContentEncoding(String),
    #[error("the protobuf envelope holds content type {0:?}, not protobuf")]
    UnsupportedContentType(String),
    #[error("the object has no apiVersion or kind")]
    MissingTypeMeta,
    #[error("no protobuf message is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("malformed protobuf at {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("invalid value at {path}: {reason}")]
    InvalidValue { path: String, reason: String },
    #[error("object nested deeper than {MAX_DEPTH} levels at {path}")]
    TooDeep { path: String },
}

impl Error {
    fn malformed(path: &Path<'_>, reason: impl Into<String>) -> Self {
        Self::Malformed { path: path.to_string(), reason: reason.into() }
    }

    fn invalid(path: &Path<'_>, reason: impl Into<String>) -> Self {
        Self::InvalidValue { path: path.to_string(), reason: reason.into() }
    }
}

/// Whether `body` looks like a Kubernetes protobuf body (has the `k8s\0` prefix).
pub fn is_protobuf_envelope(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// Whether objects of `api_version`/`kind` have a protobuf encoding here: a
/// built-in group version with a message named `kind` (lists included), or one
/// of the meta/v1 kinds every group serves (Status, DeleteOptions, WatchEvent,
/// ...). Custom resources and meta.k8s.io Table have none; answer those in JSON.
pub fn supports(api_version: &str, kind: &str) -> bool {
    registry().for_kind(api_version, kind).is_some()
}

/// Decodes a protobuf body into the object's JSON form, with `apiVersion` and
/// `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    decode_envelope(body, &Path::Root)
}

/// Encodes a JSON object, which must carry `apiVersion` and `kind`, as a
/// protobuf body. JSON fields the message does not know are dropped, as
/// upstream drops unknown fields.
pub fn encode(obj: &Value) -> Result<Vec<u8>, Error> {
    let type_meta = |key| obj.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(api_version), Some(kind)) = (type_meta("apiVersion"), type_meta("kind")) else {
        return Err(Error::MissingTypeMeta);
    };
    let reg = registry();
    let id = reg
        .for_kind(api_version, kind)
        .ok_or_else(|| Error::UnsupportedKind { api_version: api_version.to_owned(), kind: kind.to_owned() })?;
    let raw = encode::Encoder { reg }.message(id, obj, &Path::Root)?;

    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    // contentEncoding and contentType, empty as upstream writes them.
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(out)
}

/// The parts of a `runtime.Unknown` envelope.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

fn read_envelope<'a>(body: &'a [u8], path: &Path<'_>) -> Result<Envelope<'a>, Error> {
    let bytes = body.strip_prefix(MAGIC).ok_or(Error::NotProtobuf)?;
    let text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Error::malformed(path, "envelope text is not UTF-8"));
    let malformed = |e: wire::WireError| Error::malformed(path, e.0);
    let mut envelope = Envelope { api_version: String::new(), kind: String::new(), raw: &[] };
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field().map_err(malformed)? {
        match (number, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut reader = Reader::new(type_meta);
                while let Some((number, value)) = reader.field().map_err(malformed)? {
                    match (number, value) {
                        (1, WireValue::Bytes(b)) => envelope.api_version = text(b)?,
                        (2, WireValue::Bytes(b)) => envelope.kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(raw)) => envelope.raw = raw,
            (3, WireValue::Bytes(b)) if !b.is_empty() => {
                return Err(Error::UnsupportedContentEncoding(text(b)?));
            }
            (4, WireValue::Bytes(b)) if !b.is_empty() && b != MEDIA_TYPE.as_bytes() => {
                return Err(Error::UnsupportedContentType(text(b)?));
            }
            _ => {}
        }
    }
    Ok(envelope)
}

/// Decodes an envelope found at `path` (the top level, or a RawExtension).
fn decode_envelope(body: &[u8], path: &Path<'_>) -> Result<Value, Error> {
    let envelope = read_envelope(body, path)?;
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(Error::MissingTypeMeta);
    }
    let reg = registry();
    let id = reg.for_kind(&envelope.api_version, &envelope.kind).ok_or_else(|| Error::UnsupportedKind {
        api_version: envelope.api_version.clone(),
        kind: envelope.kind.clone(),
    })?;
    let mut object = decode::Decoder { reg }.object(id, envelope.raw, path)?;
    object.insert("apiVersion".to_owned(), envelope.api_version.into());
    object.insert("kind".to_owned(), envelope.kind.into());
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests;
