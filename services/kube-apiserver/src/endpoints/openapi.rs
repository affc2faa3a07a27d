//! OpenAPI v3, generated from the k8s-openapi types through schemars: the
//! index at `/openapi/v3` and one document per group version, with the
//! extensions kubectl relies on (`x-kubernetes-group-version-kind`, the
//! `fieldValidation` parameter on PATCH, patch strategies and merge keys).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use apimachinery::status::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{error_response, json_response, ApiServer, Body};
use crate::registry::ResourceTable;

/// Lazily built OpenAPI documents, encoded once.
#[derive(Default)]
pub struct OpenApi {
    docs: OnceLock<Docs>,
}

struct Docs {
    /// `api/v1` → (hash, document bytes).
    by_group_version: BTreeMap<String, (String, Bytes)>,
    index: Bytes,
}

fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn generator() -> schemars::SchemaGenerator {
    schemars::generate::SchemaSettings::openapi3().into_generator()
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, location: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn build(resources: &ResourceTable) -> Docs {
    let mut by_group_version = BTreeMap::new();
    let mut index = Map::new();
    for (group, version) in resources.group_versions() {
        let mut g = generator();
        let mut paths = Map::new();
        let mut kinds = Vec::new();
        for d in resources.in_group_version(group, version) {
            (d.schema)(&mut g);
            kinds.push((d.definition, d.kind));
            let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
            let reference = json!({"$ref": format!("#/components/schemas/{}", d.definition)});
            let base = if d.namespaced {
                format!("/{}/namespaces/{{namespace}}/{}", gv_path(group, version), d.plural)
            } else {
                format!("/{}/{}", gv_path(group, version), d.plural)
            };
            let mut common = vec![param("pretty", "query", "If 'true', then the output is pretty printed.", "string")];
            if d.namespaced {
                common.push(json!({"name": "namespace", "in": "path", "required": true, "description": "object name and auth scope, such as for teams and projects", "schema": {"type": "string", "uniqueItems": true}}));
            }
            let write_params = vec![
                param("dryRun", "query", "When present, indicates that modifications should not be persisted.", "string"),
                param("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes.", "string"),
                param("fieldValidation", "query", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.", "string"),
            ];
            let body = |types: &[&str]| {
                let content: Map<String, Value> =
                    types.iter().map(|t| (t.to_string(), json!({"schema": reference.clone()}))).collect();
                json!({"content": content, "required": true})
            };
            let ok =
                json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference.clone()}}}});
            let op = |action: &str, id: &str, extra: Vec<Value>, req: Option<Value>| {
                let mut o = json!({
                    "operationId": format!("{action}{}{}", id, d.kind),
                    "parameters": extra,
                    "responses": ok.clone(),
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk.clone(),
                });
                if let Some(r) = req {
                    o["requestBody"] = r;
                }
                o
            };
            let patch_body = json!({"content": {
                "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/strategic-merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            }, "required": true});
            let mut item_params = common.clone();
            item_params.push(json!({"name": "name", "in": "path", "required": true, "description": format!("name of the {}", d.kind), "schema": {"type": "string", "uniqueItems": true}}));
            let mut item = json!({
                "parameters": item_params,
                "get": op("get", "", vec![], None),
                "put": op("put", "", write_params.clone(), Some(body(&["application/json", "application/yaml"]))),
                "patch": op("patch", "", {
                    let mut p = write_params.clone();
                    p.push(param("force", "query", "Force is going to \"force\" Apply requests.", "boolean"));
                    p
                }, Some(patch_body)),
                "delete": op("delete", "", vec![], None),
            });
            item["delete"]["parameters"] = json!([
                param(
                    "dryRun",
                    "query",
                    "When present, indicates that modifications should not be persisted.",
                    "string"
                ),
                param(
                    "gracePeriodSeconds",
                    "query",
                    "The duration in seconds before the object should be deleted.",
                    "integer"
                ),
                param("propagationPolicy", "query", "Whether and how garbage collection will be performed.", "string"),
            ]);
            let collection = json!({
                "parameters": common,
                "get": op("list", "", vec![
                    param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels.", "string"),
                    param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields.", "string"),
                    param("limit", "query", "limit is a maximum number of responses to return for a list call.", "integer"),
                    param("continue", "query", "The continue option should be set when retrieving more results from the server.", "string"),
                    param("resourceVersion", "query", "resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
                    param("watch", "query", "Watch for changes to the described resources.", "boolean"),
                ], None),
                "post": op("post", "", write_params.clone(), Some(body(&["application/json", "application/yaml"]))),
            });
            paths.insert(format!("{base}/{{name}}"), item);
            paths.insert(base, collection);
        }
        // meta types used by every document.
        g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
        g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
        let mut schemas = g.take_definitions(true);
        schemas.insert(
            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
            json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
        );
        for (definition, kind) in &kinds {
            if let Some(Value::Object(s)) = schemas.get_mut(*definition) {
                s.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "version": version, "kind": kind}]),
                );
            }
        }
        apimachinery::patch::builtin::annotate_openapi_schemas(&mut schemas);
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": super::GIT_VERSION},
            "paths": paths,
            "components": {"schemas": schemas},
        });
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = format!("{:016X}", fnv64(&bytes));
        let path = gv_path(group, version);
        index.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
        by_group_version.insert(path, (hash, Bytes::from(bytes)));
    }
    // metrics.k8s.io, served by crate::metrics_api.
    let bytes = serde_json::to_vec(&crate::metrics_api::openapi_document(super::GIT_VERSION)).unwrap_or_default();
    let hash = format!("{:016X}", fnv64(&bytes));
    let path = gv_path(crate::metrics_api::GROUP, crate::metrics_api::VERSION);
    index.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
    by_group_version.insert(path, (hash, Bytes::from(bytes)));
    let index = Bytes::from(serde_json::to_vec(&json!({"paths": index})).unwrap_or_default());
    Docs { by_group_version, index }
}

impl OpenApi {
    fn docs(&self, server: &ApiServer) -> &Docs {
        self.docs.get_or_init(|| build(&server.resources))
    }

    pub fn serve(&self, server: &ApiServer, req: &Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/');
        if path == "/openapi/v2" {
            // kubectl asks for v2 only as protobuf and copes with a 404 when v3 works.
            return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        let docs = self.docs(server);
        if path == "/openapi/v3" {
            return json_response(StatusCode::OK, docs.index.clone());
        }
        let Some(gv) = path.strip_prefix("/openapi/v3/") else {
            return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        };
        match docs.by_group_version.get(gv) {
            Some((hash, bytes)) => {
                let mut r = json_response(StatusCode::OK, bytes.clone());
                let hashed = req.uri().query().is_some_and(|q| q.contains(&format!("hash={hash}")));
                let cache = if hashed { "public, immutable" } else { "no-cache, private" };
                r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cache));
                if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                    r.headers_mut().insert(http::header::ETAG, v);
                }
                r
            }
            None => error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        }
    }
}
