//! Kubernetes strategic merge patch, applied server-side.
//!
//! Semantics follow upstream's `strategicpatch.StrategicMergeMapPatch`
//! (`MergeParallelList` and `IgnoreUnmatchedNulls` on):
//! - maps merge recursively and `null` deletes a key;
//! - lists whose field has strategy `merge` merge: lists of maps by the merge
//!   key (matching elements merge, new ones are appended), lists of primitives
//!   as a set; every other list is replaced;
//! - a field with strategy `replace` is replaced whole, even a map;
//! - directives: `$patch: replace|delete` on a map, `{$patch: replace}` and
//!   `{<key>: v, $patch: delete}` elements in merging lists, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`.
//!
//! Departures from upstream, all about directives leaking: values the
//! original lacks are cleaned of directives and nulls recursively (upstream
//! drops any map carrying `$patch` there, even `replace`, where we keep the
//! content), `$patch: merge` on a map is accepted as the no-op it names, and
//! `$deleteFromPrimitiveList` on a non-merging list deletes instead of
//! replacing the list with the deletion list.

use serde_json::{Map, Value};

use super::meta::{MergeStrategy, NoPatchMeta, PatchMeta, PatchStrategy};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies a strategic merge patch to `original` (an object, or null for
/// none) and returns the patched object. `meta` describes the object's type;
/// use [`NoPatchMeta`] for types without a schema.
pub fn strategic_merge_patch(original: &Value, patch: &Value, meta: &dyn PatchMeta) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::BadJsonDoc),
    };
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadJsonDoc);
    };
    merge_map(original, patch.clone(), meta).map(Value::Object)
}

/// The meta of the type under `name`, or no schema.
fn child<'m>(meta: &'m dyn PatchMeta, name: &str) -> Box<dyn PatchMeta + 'm> {
    meta.field(name).unwrap_or_else(|| Box::new(NoPatchMeta))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                return merge_map(Map::new(), patch, meta);
            }
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {
                patch.remove(DIRECTIVE);
            }
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: display_scalar(directive),
                    map: Value::Object(patch.clone()).to_string(),
                })
            }
        }
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, meta)?;

    // Plain keys first, then the parallel deletion lists, so that a list
    // changed and pruned in one patch ends up without the deleted items.
    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let field = rest.strip_prefix('/').ok_or(PatchError::BadPrimitiveListFormat)?;
            deletions.push((field.to_string(), patch_value));
            continue;
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(original_value) = original.get_mut(&key) else {
            let value = clean(patch_value, meta, &key)?;
            if let Some(value) = value {
                original.insert(key, value);
            }
            continue;
        };
        let strategy = meta.strategy(&key).unwrap_or_default();
        match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if strategy.strategy == MergeStrategy::Replace {
                    let replaced = merge_map(Map::new(), p, &*child(meta, &key))?;
                    *o = replaced;
                } else {
                    let merged = merge_map(std::mem::take(o), p, &*child(meta, &key))?;
                    *o = merged;
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let merged = merge_list(std::mem::take(o), p, &strategy, &*child(meta, &key), &key)?;
                *o = merged;
            }
            (slot, patch_value) => match clean(patch_value, meta, &key)? {
                Some(value) => *slot = value,
                None => {
                    original.remove(&key);
                }
            },
        }
    }

    for (key, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(PatchError::BadPrimitiveListFormat);
        };
        let Some(current) = original.get_mut(&key) else {
            continue;
        };
        let Value::Array(items) = current else {
            continue;
        };
        if to_delete.iter().any(|v| v.is_array()) || items.iter().any(|v| v.is_array()) {
            return Err(PatchError::ListOfLists);
        }
        items.retain(|item| !to_delete.contains(item));
    }
    Ok(original)
}

/// A patch value for a key the original lacks (or holds with another type):
/// the value with directives and nulls removed, or `None` when it deletes itself.
fn clean(value: Value, meta: &dyn PatchMeta, key: &str) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(m) => {
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            merge_map(Map::new(), m, &*child(meta, key)).map(|m| Some(Value::Object(m)))
        }
        Value::Array(items) => {
            let strategy = meta.strategy(key).unwrap_or_default();
            clean_list(items, &strategy, &*child(meta, key), key).map(|l| Some(Value::Array(l)))
        }
        other => Ok(Some(other)),
    }
}

/// A list that replaces or starts a field: elements that are directives go,
/// maps inside are cleaned, and a merging list keeps one element per merge key.
fn clean_list(
    items: Vec<Value>,
    strategy: &PatchStrategy,
    elem: &dyn PatchMeta,
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    if strategy.strategy == MergeStrategy::Merge {
        return merge_list(Vec::new(), items, strategy, elem, key);
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(m) if m.contains_key(DIRECTIVE) => {}
            Value::Object(m) => out.push(Value::Object(merge_map(Map::new(), m, elem)?)),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Merges a list field by its strategy; `elem` describes the elements.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: &PatchStrategy,
    elem: &dyn PatchMeta,
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    if strategy.strategy != MergeStrategy::Merge {
        return clean_list(patch, strategy, elem, key);
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&original, &patch)?;
    let merge_key = strategy.merge_key.as_deref();
    let (server_order, patch, merged) = if kind != Kind::Object {
        let mut merged = original.clone();
        for item in &patch {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        (original, patch, merged)
    } else {
        let Some(merge_key) = merge_key else {
            return Err(PatchError::MissingMergeKey(key.to_string()));
        };
        let (original, patch) = apply_list_directives(original, patch, merge_key)?;
        let merged = merge_by_key(original.clone(), &patch, merge_key, elem)?;
        (original, patch, merged)
    };
    let (patch_items, server_only) = partition(merged, &patch, merge_key.filter(|_| kind == Kind::Object))?;
    order_elements(patch_items, server_only, &patch, &server_order, merge_key.filter(|_| kind == Kind::Object))
}

/// Handles `$patch` elements of a merging list of maps: deletes by merge key,
/// and `{$patch: replace}` makes the rest of the patch the whole list.
/// Returns the original and the patch without those elements.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = item.get(merge_key) else {
                    return Err(no_merge_key(&item, merge_key));
                };
                original.retain(|o| o.get(merge_key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: display_scalar(directive),
                    map: item.to_string(),
                })
            }
        }
    }
    if replace {
        Ok((Vec::new(), plain))
    } else {
        Ok((original, plain))
    }
}

/// Merges each patch element into the original element with the same merge
/// key value, appending those without one.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    elem: &dyn PatchMeta,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(item) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        let Some(value) = item.get(merge_key) else {
            return Err(no_merge_key(&Value::Object(item.clone()), merge_key));
        };
        match original.iter_mut().find(|o| o.get(merge_key) == Some(value)) {
            Some(Value::Object(existing)) => {
                let merged = merge_map(std::mem::take(existing), item.clone(), elem)?;
                *existing = merged;
            }
            Some(other) => return Err(bad_arg_type("map[string]interface {}", other)),
            None => original.push(Value::Object(merge_map(Map::new(), item.clone(), elem)?)),
        }
    }
    Ok(original)
}

/// Applies `$retainKeys`: the original keeps only the listed keys, and the
/// patch may set only listed keys.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeysFormat);
    };
    let keeps = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !keeps(k) {
            return Err(PatchError::RetainKeysMismatch);
        }
    }
    original.retain(|k, _| keeps(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>`: merges the field's list with
/// its patch (removing both from further processing) and orders the result:
/// the order list first, then the patch list, then the original.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive_key in keys {
        let order = patch.remove(&directive_key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let field = directive_key
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or(PatchError::BadSetElementOrderFormat)?
            .to_string();
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let strategy = meta.strategy(&field).unwrap_or_default();
        let merge_key = strategy.merge_key.as_deref();
        validate_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let elem = child(meta, &field);
        let merged = match (&original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o.clone(),
            (None, Some(p)) => merge_list(Vec::new(), p, &strategy, &*elem, &field)?,
            (Some(o), Some(p)) => merge_list(o.clone(), p, &strategy, &*elem, &field)?,
        };
        patch.remove(&field);
        let server_order = original_list.unwrap_or_default();
        let by_key = match element_kind(&merged, &[]) {
            Ok(Kind::Object) => match merge_key {
                Some(k) => Some(k),
                // Maps without a merge key have no identity to order by.
                None => {
                    original.insert(field, Value::Array(merged));
                    continue;
                }
            },
            _ => None,
        };
        let (in_order, server_only) = partition(merged, &order, by_key)?;
        let ordered = order_elements(in_order, server_only, &order, &server_order, by_key)?;
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: the patch list must follow the
/// order list (deletions and directive elements aside).
fn validate_order(patch: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let candidates: Vec<&Value> = match merge_key {
        Some(_) => patch.iter().filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete")).collect(),
        None => patch.iter().collect(),
    };
    let (mut p, mut o) = (0, 0);
    while p < candidates.len() && o < order.len() {
        if candidates[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same_identity(candidates[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < candidates.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

/// Whether two elements are the same list entry: equal merge key values, or equal values.
fn same_identity(a: &Value, b: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    let Some(k) = merge_key else {
        return Ok(a == b);
    };
    let ka = a.as_object().ok_or_else(|| bad_arg_type("map[string]interface {}", a))?.get(k);
    let kb = b.as_object().ok_or_else(|| bad_arg_type("map[string]interface {}", b))?.get(k);
    match (ka, kb) {
        (Some(ka), Some(kb)) => Ok(ka == kb),
        (None, _) => Err(no_merge_key(a, k)),
        (_, None) => Err(no_merge_key(b, k)),
    }
}

/// The identity used for ordering: the merge key value for maps, else the value.
fn identity<'v>(item: &'v Value, merge_key: Option<&str>) -> Option<&'v Value> {
    match merge_key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let id = identity(item, merge_key);
    list.iter().position(|v| identity(v, merge_key) == id)
}

/// Splits `merged` into the elements present in `by` and the rest.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut rest = Vec::new();
    for item in merged {
        if let Some(k) = merge_key {
            if !item.is_object() {
                return Err(bad_arg_type("map[string]interface {}", &item));
            }
            if item.get(k).is_none() {
                return Err(no_merge_key(&item, k));
            }
        }
        if position(by, &item, merge_key).is_some() {
            present.push(item);
        } else {
            rest.push(item);
        }
    }
    Ok((present, rest))
}

/// Upstream's `normalizeElementOrder`: sorts the patch items by the patch
/// order and the server-only items by the original order, then interleaves
/// them, keeping each side's relative order and placing a server-only item
/// before a patch item when the original had it first.
fn order_elements(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    if let Some(k) = merge_key {
        for item in patch_items.iter().chain(&server_only).chain(patch_order) {
            if item.get(k).is_none() {
                return Err(no_merge_key(item, k));
            }
        }
    }
    patch_items.sort_by_key(|v| position(patch_order, v, merge_key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| position(server_order, v, merge_key).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (position(server_order, l, merge_key), position(server_order, r, merge_key)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The one element type of the given lists; lists of lists and mixed lists are errors.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Kind, PatchError> {
    let mut kind = None;
    for item in a.iter().chain(b) {
        let k = match item {
            Value::Array(_) => return Err(PatchError::ListOfLists),
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::MixedListElements(format!(
                    "{} {}",
                    Value::Array(a.to_vec()),
                    Value::Array(b.to_vec())
                )))
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| PatchError::MixedListElements("no elements in any of the given slices".into()))
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey { map: item.to_string(), key: key.to_string() }
}

/// Go's name for the type a JSON value decodes to.
fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn bad_arg_type(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::BadArgType { expected, actual: go_type_name(actual) }
}

fn display_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
