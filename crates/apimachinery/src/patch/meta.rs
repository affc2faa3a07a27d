//! What strategic merge patch needs to know about a schema position: each
//! field's patch strategy and merge key, and the type of each field.

use serde_json::{Map, Value};

use super::PatchError;

/// How a field's value combines with a patch (`x-kubernetes-patch-strategy`
/// without `retainKeys`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MergeStrategy {
    /// No strategy: maps merge, lists are replaced.
    #[default]
    Default,
    /// Lists merge: by merge key for lists of maps, as a set for primitives.
    Merge,
    /// The patch value replaces the field's value, maps included.
    Replace,
}

/// A field's `patchStrategy`/`patchMergeKey` struct tags, as published in
/// OpenAPI as `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PatchStrategy {
    pub strategy: MergeStrategy,
    /// `retainKeys`: clients send a `$retainKeys` list (the server applies any it gets).
    pub retain_keys: bool,
    pub merge_key: Option<String>,
}

impl PatchStrategy {
    /// A list merged by `merge_key` (or, without one, a set of primitives).
    pub fn merge(merge_key: Option<&str>) -> Self {
        PatchStrategy { strategy: MergeStrategy::Merge, retain_keys: false, merge_key: merge_key.map(str::to_string) }
    }

    /// Parses a struct tag pair such as (`"merge,retainKeys"`, `"name"`), as
    /// upstream's `extractRetainKeysPatchStrategy` does. An empty merge key means none.
    pub fn parse(strategy: &str, merge_key: &str) -> Result<Self, PatchError> {
        let mut out = PatchStrategy {
            merge_key: (!merge_key.is_empty()).then(|| merge_key.to_string()),
            ..PatchStrategy::default()
        };
        let parts: Vec<&str> = strategy.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let mut other = None;
        match parts.as_slice() {
            [] => {}
            [one] if *one == "retainKeys" => out.retain_keys = true,
            [one] => other = Some(*one),
            [a, b] if *a == "retainKeys" => (out.retain_keys, other) = (true, Some(*b)),
            [a, b] if *b == "retainKeys" => (out.retain_keys, other) = (true, Some(*a)),
            _ => return Err(PatchError::UnexpectedStrategy(format!("[{}]", parts.join(" ")))),
        }
        out.strategy = match other {
            Some("merge") => MergeStrategy::Merge,
            Some("replace") => MergeStrategy::Replace,
            // Upstream passes unknown words through, where they act as no strategy.
            _ => MergeStrategy::Default,
        };
        Ok(out)
    }

    /// The struct tag form: `merge`, `replace`, `retainKeys`, `merge,retainKeys`, or empty.
    pub fn tag(&self) -> String {
        let base = match self.strategy {
            MergeStrategy::Default => "",
            MergeStrategy::Merge => "merge",
            MergeStrategy::Replace => "replace",
        };
        match (base.is_empty(), self.retain_keys) {
            (_, false) => base.to_string(),
            (true, true) => "retainKeys".to_string(),
            (false, true) => format!("{base},retainKeys"),
        }
    }
}

/// The schema at one position of an object, for strategic merge patch.
///
/// Implementations describe a type (a struct with named fields): the patch
/// strategy of each field, and the type found under each field — for a list
/// field, the type of its elements; for a map of values, the value type. An
/// unknown field has no strategy and no type, and patches as [`NoPatchMeta`]
/// does (maps merge, lists are replaced).
pub trait PatchMeta {
    /// The strategy declared for field `name`, if any.
    fn strategy(&self, name: &str) -> Option<PatchStrategy>;

    /// The type under field `name` (list element type for lists).
    fn field(&self, name: &str) -> Option<Box<dyn PatchMeta + '_>>;
}

/// No schema: every field has the default strategy, so maps merge
/// recursively and lists are replaced. Used for types without OpenAPI.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPatchMeta;

impl PatchMeta for NoPatchMeta {
    fn strategy(&self, _name: &str) -> Option<PatchStrategy> {
        None
    }

    fn field(&self, _name: &str) -> Option<Box<dyn PatchMeta + '_>> {
        Some(Box::new(NoPatchMeta))
    }
}

/// Reads patch metadata from OpenAPI schemas: a map from definition name
/// (`io.k8s.api.core.v1.PodSpec`) to schema, as found under `components.schemas`
/// (v3) or `definitions` (v2). Properties are followed through `$ref`,
/// `allOf: [{$ref}]`, `items` and `additionalProperties`; each property's
/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` give its strategy.
#[derive(Clone, Copy, Debug)]
pub struct SchemaPatchMeta<'a> {
    schemas: &'a Map<String, Value>,
    node: &'a Value,
}

/// How many `$ref`s to follow before giving up on a cycle.
const MAX_REF_DEPTH: usize = 32;

impl<'a> SchemaPatchMeta<'a> {
    /// The meta of definition `name` in `schemas` (the `components.schemas` map).
    pub fn new(schemas: &'a Map<String, Value>, name: &str) -> Option<Self> {
        schemas.get(name).map(|node| SchemaPatchMeta { schemas, node })
    }

    /// The meta of definition `name` in a whole OpenAPI document, v3
    /// (`components.schemas`) or v2 (`definitions`).
    pub fn from_document(document: &'a Value, name: &str) -> Option<Self> {
        let schemas = document
            .pointer("/components/schemas")
            .or_else(|| document.get("definitions"))
            .and_then(Value::as_object)?;
        Self::new(schemas, name)
    }

    /// The meta at an arbitrary schema node whose `$ref`s point into `schemas`.
    pub fn at(schemas: &'a Map<String, Value>, node: &'a Value) -> Self {
        SchemaPatchMeta { schemas, node }
    }

    /// Follows `$ref` and single-entry `allOf` wrappers to the schema they name.
    fn resolve(&self, mut node: &'a Value) -> &'a Value {
        for _ in 0..MAX_REF_DEPTH {
            if let Some(target) = node.get("$ref").and_then(Value::as_str) {
                let name = target
                    .strip_prefix("#/components/schemas/")
                    .or_else(|| target.strip_prefix("#/definitions/"))
                    .unwrap_or(target);
                match self.schemas.get(name) {
                    Some(next) => node = next,
                    None => return node,
                }
                continue;
            }
            match node.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                Some([only]) if node.get("properties").is_none() => node = only,
                _ => return node,
            }
        }
        node
    }

    /// The raw schema of property `name`, where the patch extensions live.
    fn property(&self, name: &str) -> Option<&'a Value> {
        let resolved = self.resolve(self.node);
        if let Some(prop) = resolved.get("properties").and_then(|p| p.get(name)) {
            return Some(prop);
        }
        // A map type: every key has the value schema.
        resolved.get("additionalProperties").filter(|v| v.is_object())
    }
}

impl PatchMeta for SchemaPatchMeta<'_> {
    fn strategy(&self, name: &str) -> Option<PatchStrategy> {
        let prop = self.property(name)?;
        let strategy = prop.get("x-kubernetes-patch-strategy").and_then(Value::as_str).unwrap_or("");
        let merge_key = prop.get("x-kubernetes-patch-merge-key").and_then(Value::as_str).unwrap_or("");
        if strategy.is_empty() && merge_key.is_empty() {
            return None;
        }
        PatchStrategy::parse(strategy, merge_key).ok()
    }

    fn field(&self, name: &str) -> Option<Box<dyn PatchMeta + '_>> {
        let prop = self.resolve(self.property(name)?);
        let node = match prop.get("items") {
            Some(items) => self.resolve(items),
            None => prop,
        };
        Some(Box::new(SchemaPatchMeta { schemas: self.schemas, node }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategy_tags_parse_like_upstream() {
        let s = PatchStrategy::parse("merge,retainKeys", "name").unwrap();
        assert_eq!(s.strategy, MergeStrategy::Merge);
        assert!(s.retain_keys);
        assert_eq!(s.merge_key.as_deref(), Some("name"));
        assert_eq!(s.tag(), "merge,retainKeys");
        let s = PatchStrategy::parse("retainKeys", "").unwrap();
        assert_eq!((s.strategy, s.retain_keys, s.merge_key), (MergeStrategy::Default, true, None));
        assert_eq!(PatchStrategy::parse("replace", "").unwrap().strategy, MergeStrategy::Replace);
        assert!(PatchStrategy::parse("merge,replace", "").is_err());
        assert!(PatchStrategy::parse("a,b,c", "").is_err());
    }

    #[test]
    fn schema_meta_follows_refs_items_and_all_of() {
        let doc = json!({"components": {"schemas": {
            "A": {"properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/B"}], "default": {}},
                "tags": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/B"}}
            }},
            "B": {"properties": {
                "items": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/C"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"
                }
            }},
            "C": {"properties": {"name": {"type": "string"}}}
        }}});
        let a = SchemaPatchMeta::from_document(&doc, "A").unwrap();
        assert_eq!(a.strategy("spec"), None);
        let b = a.field("spec").unwrap();
        assert_eq!(b.strategy("items"), Some(PatchStrategy::merge(Some("name"))));
        let c = b.field("items").unwrap();
        assert_eq!(c.strategy("name"), None);
        assert!(c.field("name").is_some());
        let tags = a.field("tags").unwrap();
        let via_map = tags.field("anykey").unwrap();
        assert_eq!(via_map.strategy("items"), Some(PatchStrategy::merge(Some("name"))));
        assert!(a.field("unknown").is_none());
    }

    #[test]
    fn reference_cycles_do_not_hang() {
        let schemas = json!({"A": {"$ref": "#/definitions/A"}});
        let schemas = schemas.as_object().unwrap();
        let a = SchemaPatchMeta::new(schemas, "A").unwrap();
        assert!(a.strategy("x").is_none());
    }
}
