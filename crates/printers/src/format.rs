//! Reading fields out of JSON objects and the cell formats shared by many
//! kinds: ages, label maps, label selectors, container lists.

use jiff::Timestamp;
use serde_json::Value;

use crate::duration::human_signed_duration;

// === field access ===

/// The value at `path`, treating JSON `null` as absent.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// The string at `path`, or `""` when absent (Go's zero value).
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str(v, path).unwrap_or("")
}

pub(crate) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The integer at `path`, or `0` when absent.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

/// The boolean at `path`, or `false` when absent.
pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

pub(crate) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The array at `path`, or an empty slice when absent.
pub(crate) fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The number of entries of the map (or array) at `path`.
pub(crate) fn len_at(v: &Value, path: &[&str]) -> usize {
    match get(v, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// `metadata.name` as a cell.
pub(crate) fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, &["metadata", "name"]))
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    get(obj, &["metadata", "deletionTimestamp"]).is_some()
}

/// A `resource.Quantity` as text. Quantities are serialized in canonical
/// form already, so the string is shown as stored; absent reads `"0"`.
pub(crate) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// An `IntOrString` as text (`"50%"`, `"1"`).
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// === time ===

/// Go's zero `time.Time`, what an unset `metav1.Time` serializes as.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Parses a `metav1.Time` or `metav1.MicroTime`; absent, unparsable and
/// Go's zero time all read as unset.
pub(crate) fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let ts: Timestamp = opt_str(v, path)?.parse().ok()?;
    (ts.as_second() != GO_ZERO_TIME_SECONDS || ts.subsec_nanosecond() != 0).then_some(ts)
}

/// Elapsed time from `t` to `now`, or `"<unknown>"` when unset.
pub(crate) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_signed_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(crate) fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

// === labels and selectors ===

/// A label map as `k1=v1,k2=v2` sorted by key, or `"<none>"` when empty.
pub(crate) fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<(&str, &str)> = labels
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A `metav1.LabelSelector` in selector syntax (`app=web,tier in (a,b)`);
/// `""` for a nil or empty selector; `Err` for a malformed one.
pub(crate) fn label_selector_string(selector: Option<&Value>) -> Result<String, ()> {
    let Some(selector) = selector else {
        return Ok(String::new());
    };
    // (key, rendered requirement); matchLabels first, then expressions.
    let mut requirements: Vec<(&str, String)> = Vec::new();
    if let Some(labels) = get(selector, &["matchLabels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            requirements.push((k, format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in array_at(selector, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        let mut values: Vec<&str> = array_at(expr, &["values"]).iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let rendered = match str_at(expr, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key, rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// A label selector for display: `"<none>"` when it selects by nothing,
/// `"<error>"` when malformed.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

// === lists ===

/// Container names and images, each comma-joined.
pub(crate) fn layout_containers(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// The CONTAINERS and IMAGES cells for a pod template at `template_path`.
pub(crate) fn container_cells(obj: &Value, template_path: &[&str]) -> [Value; 2] {
    let mut path = template_path.to_vec();
    path.extend(["spec", "containers"]);
    let (names, images) = layout_containers(array_at(obj, &path));
    [Value::from(names), Value::from(images)]
}

/// The first `max` items joined with commas, then `" + N more..."`; `"<unset>"`
/// when there is nothing at all.
pub(crate) fn list_with_more(items: &[String], max: usize) -> String {
    let shown = items.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if items.len() > max {
        return format!("{shown} + {} more...", items.len() - max);
    }
    if shown.is_empty() {
        return "<unset>".to_string();
    }
    shown
}

/// `host:port`, bracketing IPv6 hosts.
pub(crate) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `fmt` rendering of a `*bool` cell: `"True"`, `"False"` or `"<unset>"`.
pub(crate) fn bool_ptr(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// Whether the first condition of `condition_type` has status `"True"`.
pub(crate) fn condition_true(obj: &Value, path: &[&str], condition_type: &str) -> bool {
    array_at(obj, path)
        .iter()
        .find(|c| str_at(c, &["type"]) == condition_type)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_are_sorted_and_empty_maps_read_none() {
        let labels = json!({"tier": "web", "app": "shop", "flag": ""});
        assert_eq!(format_labels(Some(&labels)), "app=shop,flag=,tier=web");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn selectors_render_like_label_selector_strings() {
        let selector = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "env", "operator": "Exists"}
            ]
        });
        assert_eq!(format_label_selector(Some(&selector)), "app=web,!canary,env,tier in (back,front),zone notin (b)");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
    }

    #[test]
    fn go_zero_time_and_null_read_as_unset() {
        let obj = json!({"a": "0001-01-01T00:00:00Z", "b": null, "c": "2024-05-01T10:00:00Z"});
        assert_eq!(time_at(&obj, &["a"]), None);
        assert_eq!(time_at(&obj, &["b"]), None);
        assert!(time_at(&obj, &["c"]).is_some());
        let now: Timestamp = "2024-05-01T10:05:00Z".parse().unwrap();
        assert_eq!(since(time_at(&obj, &["c"]), now), "5m");
        assert_eq!(since(None, now), "<unknown>");
    }

    #[test]
    fn long_lists_are_clipped_with_a_count() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(list_with_more(&items, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..2], 3), "a,b");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 443), "[fd00::1]:443");
    }
}
