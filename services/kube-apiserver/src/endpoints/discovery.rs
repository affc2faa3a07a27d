//! Discovery, classic (`/api`, `/apis`, `/apis/<g>/<v>`) and aggregated (v2),
//! all derived from the resource table.

use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{value_response, ApiServer, Body};
use crate::registry::ResourceDescriptor;

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

fn verbs(d: &ResourceDescriptor) -> Vec<&'static str> {
    if !d.is_stored() {
        return vec!["create"];
    }
    vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
}

/// Subresources as (name, kind, group, version, verbs).
fn subresources(
    d: &ResourceDescriptor,
) -> Vec<(&'static str, &'static str, &'static str, &'static str, Vec<&'static str>)> {
    let mut out = Vec::new();
    let s = d.subresources;
    if s.status {
        out.push(("status", d.kind, d.group, d.version, vec!["get", "patch", "update"]));
    }
    if s.scale.is_some() {
        out.push(("scale", "Scale", "autoscaling", "v1", vec!["get", "patch", "update"]));
    }
    if s.binding {
        out.push(("binding", "Binding", "", "v1", vec!["create"]));
    }
    if s.eviction {
        out.push(("eviction", "Eviction", "policy", "v1", vec!["create"]));
    }
    if s.token {
        out.push(("token", "TokenRequest", "authentication.k8s.io", "v1", vec!["create"]));
    }
    if s.finalize {
        out.push(("finalize", d.kind, d.group, d.version, vec!["update"]));
    }
    out.extend(connect_subresources(d));
    out.sort_by_key(|s| s.0);
    out
}

/// The connect subresources served through kubelets and backends (`endpoints::streaming`),
/// with upstream's option kinds and verbs (the proxies take every method a request may use).
fn connect_subresources(
    d: &ResourceDescriptor,
) -> Vec<(&'static str, &'static str, &'static str, &'static str, Vec<&'static str>)> {
    const PROXY: [&str; 5] = ["create", "delete", "get", "patch", "update"];
    if !d.group.is_empty() || d.version != "v1" {
        return Vec::new();
    }
    match d.plural {
        "pods" => vec![
            ("attach", "PodAttachOptions", "", "v1", vec!["create", "get"]),
            ("exec", "PodExecOptions", "", "v1", vec!["create", "get"]),
            ("log", "Pod", "", "v1", vec!["get"]),
            ("portforward", "PodPortForwardOptions", "", "v1", vec!["create", "get"]),
            ("proxy", "PodProxyOptions", "", "v1", PROXY.to_vec()),
        ],
        "nodes" => vec![("proxy", "NodeProxyOptions", "", "v1", PROXY.to_vec())],
        "services" => vec![("proxy", "ServiceProxyOptions", "", "v1", PROXY.to_vec())],
        _ => Vec::new(),
    }
}

fn aggregated_requested(req: &Request<hyper::body::Incoming>) -> Option<&'static str> {
    let accept = req.headers().get(http::header::ACCEPT)?.to_str().ok()?;
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some(AGGREGATED_V2BETA1);
            }
            if p.contains("v=v2") {
                return Some(AGGREGATED_V2);
            }
        }
    }
    None
}

/// `/api` and `/apis`, classic or aggregated as the client asks.
pub fn root(server: &ApiServer, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let core = req.uri().path().trim_end_matches('/') == "/api";
    if let Some(ct) = aggregated_requested(req) {
        let mut groups: Vec<Value> = group_names(server)
            .into_iter()
            .filter(|g| g.is_empty() == core)
            .map(|g| aggregated_group(server, g))
            .collect();
        if !core {
            groups.push(crate::metrics_api::aggregated_group());
        }
        let api_version = if ct == AGGREGATED_V2 { "apidiscovery.k8s.io/v2" } else { "apidiscovery.k8s.io/v2beta1" };
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": groups});
        let mut r = value_response(StatusCode::OK, &body);
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r.headers_mut().insert("Vary", HeaderValue::from_static("Accept"));
        return r;
    }
    let addr = format!("{}:{}", server.config.advertise_address, server.config.secure_port);
    let cidrs = json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]);
    let mut r = if core {
        value_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidrs}),
        )
    } else {
        let mut groups: Vec<Value> =
            group_names(server).into_iter().filter(|g| !g.is_empty()).map(|g| api_group(server, g)).collect();
        groups.push(crate::metrics_api::api_group());
        value_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
    };
    r.headers_mut().insert("Vary", HeaderValue::from_static("Accept"));
    r
}

fn group_names(server: &ApiServer) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (g, _) in server.resources.group_versions() {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

fn versions_of(server: &ApiServer, group: &str) -> Vec<&'static str> {
    server.resources.group_versions().into_iter().filter(|(g, _)| *g == group).map(|(_, v)| v).collect()
}

fn api_group(server: &ApiServer, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(server, group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

fn aggregated_group(server: &ApiServer, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(server, group)
        .into_iter()
        .map(|v| {
            let resources: Vec<Value> = server
                .resources
                .in_group_version(group, v)
                .map(|d| {
                    let subs: Vec<Value> = subresources(d)
                        .into_iter()
                        .map(|(name, kind, g, ver, verbs)| {
                            json!({"subresource": name, "responseKind": {"group": g, "version": ver, "kind": kind}, "verbs": verbs})
                        })
                        .collect();
                    let mut r = json!({
                        "resource": d.plural,
                        "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": d.singular,
                        "verbs": verbs(d),
                    });
                    if !d.short_names.is_empty() {
                        r["shortNames"] = json!(d.short_names);
                    }
                    if !d.categories.is_empty() {
                        r["categories"] = json!(d.categories);
                    }
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// `/apis/<group>` and `/api/v1`, `/apis/<group>/<version>`.
pub fn group_or_version(server: &ApiServer, path: &str) -> Option<Response<Body>> {
    if let Some(r) = crate::metrics_api::discovery(path) {
        return Some(r);
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g] => {
            let g = group_names(server).into_iter().find(|x| x == g)?;
            let mut body = api_group(server, g);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            return Some(value_response(StatusCode::OK, &body));
        }
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    if !versions_of(server, group).contains(&version) {
        return None;
    }
    let mut resources = Vec::new();
    for d in server.resources.in_group_version(group, version) {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": verbs(d),
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        for (name, kind, g, v, verbs) in subresources(d) {
            let mut s = json!({
                "name": format!("{}/{name}", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != d.group || v != d.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    // Upstream lists resources and their subresources in name order.
    resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(value_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}
