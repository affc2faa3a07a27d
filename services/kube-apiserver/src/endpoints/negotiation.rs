//! Content negotiation: what the client sent and what it accepts.

use apimachinery::status::ApiError;
use serde_json::Value;

/// The response shape a client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Table,
    PartialMetadata,
    /// `application/vnd.kubernetes.protobuf` only.
    Protobuf,
}

/// Picks the first acceptable media type from `Accept`.
pub fn output(accept: Option<&str>) -> Output {
    let Some(accept) = accept else {
        return Output::Json;
    };
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let mut as_ = "";
        let mut group = "";
        for p in params {
            if let Some(v) = p.strip_prefix("as=") {
                as_ = v;
            } else if let Some(v) = p.strip_prefix("g=") {
                group = v;
            }
        }
        match (media, as_, group) {
            ("application/json", "Table", "meta.k8s.io") => return Output::Table,
            ("application/json", "PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io") => {
                return Output::PartialMetadata
            }
            ("application/json", "", _) | ("*/*", _, _) | ("application/*", _, _) => return Output::Json,
            ("application/yaml", "", _) => return Output::Yaml,
            ("application/vnd.kubernetes.protobuf", "", _) => {
                // Answer JSON if a later alternative allows it.
                if accept.contains("application/json") || accept.contains("*/*") {
                    continue;
                }
                return Output::Protobuf;
            }
            _ => continue,
        }
    }
    Output::Json
}

/// Request body formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    Protobuf,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
}

pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    let ct = content_type.unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    Ok(match media {
        "application/json" | "" => BodyFormat::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyFormat::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyFormat::Protobuf,
        "application/json-patch+json" => BodyFormat::JsonPatch,
        "application/merge-patch+json" => BodyFormat::MergePatch,
        "application/strategic-merge-patch+json" => BodyFormat::StrategicMergePatch,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => BodyFormat::ApplyPatch,
        _ => return Err(ApiError::unsupported_media_type(ct)),
    })
}

/// Decodes a JSON or YAML object body; malformed input is a 400 that names the problem.
pub fn decode_object(format: BodyFormat, body: &[u8]) -> Result<Value, ApiError> {
    match format {
        BodyFormat::Yaml | BodyFormat::ApplyPatch => {
            let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("invalid UTF-8: {e}")))?;
            serde_yaml::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
        }
        BodyFormat::Protobuf => Err(ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf")),
        _ => decode_json_strict(body),
    }
}

/// Parses JSON, rejecting duplicate keys (serde_json would keep the last one).
pub fn decode_json_strict(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?;
    if let Some(path) = duplicate_key(body) {
        return Err(ApiError::bad_request(format!("strict decoding error: json: duplicate field \"{path}\"")));
    }
    Ok(v)
}

/// Finds a duplicated key in a JSON text (the first, as a dotted path).
fn duplicate_key(body: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    struct Dup<'a>(&'a mut Option<String>, String);
    impl<'de> Visitor<'de> for Dup<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("json")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                let path = if self.1.is_empty() { k.clone() } else { format!("{}.{k}", self.1) };
                if !seen.insert(k) && self.0.is_none() {
                    *self.0 = Some(path.clone());
                }
                map.next_value_seed(DupSeed(self.0, path))?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq.next_element_seed(DupSeed(self.0, format!("{}[{i}]", self.1)))?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    struct DupSeed<'a>(&'a mut Option<String>, String);
    impl<'de> serde::de::DeserializeSeed<'de> for DupSeed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(Dup(self.0, self.1))
        }
    }
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::de::DeserializeSeed::deserialize(DupSeed(&mut found, String::new()), &mut de);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_header_selects_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(Some(a)), Output::Table);
        assert_eq!(output(Some("application/vnd.kubernetes.protobuf, */*")), Output::Json);
        assert_eq!(output(None), Output::Json);
    }

    #[test]
    fn duplicate_fields_are_found_with_their_path() {
        assert_eq!(duplicate_key(br#"{"a":1,"b":{"c":1,"c":2}}"#), Some("b.c".into()));
        assert_eq!(duplicate_key(br#"{"a":[{"x":1},{"x":2}]}"#), None);
    }
}
