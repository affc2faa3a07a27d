//! Request info: which resource, namespace, name, subresource and verb a URL
//! and method address (upstream's `RequestInfoFactory`).

use std::collections::HashMap;

/// The parsed resource request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
}

/// Parses `/api/v1/...` and `/apis/<g>/<v>/...`; `None` for non-resource paths.
pub fn parse(method: &http::Method, path: &str, query: &HashMap<String, String>) -> Option<RequestInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let mut rest: Vec<&str> = rest.to_vec();
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest.remove(0);
    }
    let mut info = RequestInfo { group, version, ..Default::default() };
    // namespaces/<ns>/<resource>... ; but /namespaces/<name>[/status|finalize] is the namespace itself.
    let namespace_subresource = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_subresource {
        info.namespace = Some(rest[1].to_string());
        rest.drain(..2);
    }
    match rest.as_slice() {
        [resource] => info.resource = resource.to_string(),
        [resource, name] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
        }
        [resource, name, sub] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
        }
        // `.../<name>/proxy/<path...>`: the rest is the proxied path.
        [resource, name, "proxy", ..] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some("proxy".to_string());
        }
        _ => return None,
    }
    if info.resource.is_empty() || info.name.as_deref() == Some("") {
        return None;
    }
    let is_watch = watch_path || query.get("watch").is_some_and(|w| w == "true" || w == "1");
    info.verb = match (method.as_str(), info.name.is_some()) {
        ("GET" | "HEAD", false) if is_watch => "watch",
        ("GET" | "HEAD", true) if is_watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    };
    // Connecting to a pod's process or ports creates something, whichever method
    // the client upgrades with (a WebSocket upgrade is a GET): `create` as upstream requires.
    if matches!(info.subresource.as_deref(), Some("exec" | "attach" | "portforward")) {
        info.verb = "create";
    }
    Some(info)
}

/// Parses the query string (percent-decoded; last value wins).
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        out.insert(decode(k), decode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str, q: &str) -> Option<RequestInfo> {
        parse(&method.parse().unwrap(), path, &parse_query(Some(q)))
    }

    #[test]
    fn namespaced_collections_and_objects_are_recognised() {
        let r = p("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", "").unwrap();
        assert_eq!((r.group.as_str(), r.resource.as_str()), ("apps", "deployments"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(r.verb, "get");
        let r = p("GET", "/api/v1/namespaces/default/pods", "watch=true").unwrap();
        assert_eq!(r.verb, "watch");
        let r = p("GET", "/api/v1/watch/namespaces/default/pods", "").unwrap();
        assert_eq!(r.verb, "watch");
    }

    #[test]
    fn connect_subresources_need_create_and_proxy_paths_keep_their_rest() {
        let r = p("GET", "/api/v1/namespaces/default/pods/web/exec", "command=sh").unwrap();
        assert_eq!((r.subresource.as_deref(), r.verb), (Some("exec"), "create"));
        let r = p("GET", "/api/v1/namespaces/default/pods/web/log", "").unwrap();
        assert_eq!((r.subresource.as_deref(), r.verb), (Some("log"), "get"));
        let r = p("GET", "/api/v1/nodes/n1/proxy/stats/summary", "").unwrap();
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("nodes", Some("n1"), Some("proxy"))
        );
    }

    #[test]
    fn namespaces_themselves_are_cluster_scoped_objects() {
        let r = p("GET", "/api/v1/namespaces/kube-system", "").unwrap();
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.namespace, None);
        let r = p("PUT", "/api/v1/namespaces/x/finalize", "").unwrap();
        assert_eq!((r.resource.as_str(), r.name.as_deref()), ("namespaces", Some("x")));
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
    }
}
