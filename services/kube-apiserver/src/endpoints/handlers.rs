//! The generic resource handler: one code path for every kind.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use apimachinery::status::{success_status, ApiError};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::negotiation::{self, BodyFormat, Output};
use super::request::RequestInfo;
use super::{error_response, value_response, ApiServer, Body};
use crate::admission::{Attributes, Operation};
use crate::cache::CachedObject;
use crate::registry::store::{DeleteOptions, FieldValidation, ListOptions, Target, WriteOptions, Written};
use crate::registry::{meta, ObjectAttrs, ResourceDescriptor, Served};

type Query = HashMap<String, String>;

/// Per-request facts the handlers pass around.
struct Ctx {
    server: Arc<ApiServer>,
    user: Arc<rbac::UserInfo>,
    /// The storage version's descriptor: what the store is called with.
    d: Arc<ResourceDescriptor>,
    /// The version the client speaks (a view with a conversion, or `d`).
    served: Served,
    info: RequestInfo,
    query: Query,
    output: Output,
}

pub async fn handle(
    server: Arc<ApiServer>,
    req: Request<hyper::body::Incoming>,
    info: RequestInfo,
    query: Query,
    user: Arc<rbac::UserInfo>,
) -> Response<Body> {
    // The body is read before anything can fail, so every error reaches a
    // client that has finished sending instead of a reset stream.
    let output = negotiation::output(req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = match read_body(server.config.max_request_body_bytes, req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let Some(served) = server.resources.lookup_served(&info.group, &info.version, &info.resource) else {
        return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    };
    let d = served.storage.clone();
    if !d.namespaced && info.namespace.is_some() {
        return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let ctx = Ctx { server, user, d, served, info, query, output };
    match dispatch(&ctx, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(ctx: &Ctx, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let sub = ctx.info.subresource.as_deref();
    let subs = ctx.d.subresources;
    let supported = match sub {
        None => true,
        Some("status") => subs.status,
        Some("scale") => subs.scale.is_some(),
        Some("binding") => subs.binding,
        Some("eviction") => subs.eviction,
        Some("finalize") => subs.finalize,
        Some("token") => subs.token,
        Some(_) => false,
    };
    if !supported {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    if let crate::registry::Backing::Review(kind) = ctx.d.backing {
        if ctx.info.verb != "create" || ctx.info.name.is_some() {
            return Err(ApiError::method_not_supported(&ctx.d.qualified(), ctx.info.verb));
        }
        let obj = decode_body(&body)?;
        let answered = crate::reviews::review(&ctx.server, &ctx.d, kind, &ctx.user, &ns, obj)?;
        return Ok(object_response(ctx, StatusCode::CREATED, &answered));
    }
    if ctx.d.namespaced && ns.is_empty() && !matches!(ctx.info.verb, "list" | "watch") {
        return Err(ApiError::bad_request("the server could not find the requested resource (namespace is required)"));
    }
    match ctx.info.verb {
        "get" => get(ctx, &ns).await,
        "list" => list(ctx).await,
        "watch" => super::watch::serve(&ctx.server, &ctx.served, &ctx.info, &ctx.query, ctx.output).await,
        "create" => match sub {
            Some("binding") => bind(ctx, &ns, body).await,
            Some("eviction") => evict(ctx, &ns, body).await,
            Some("token") => token_request(ctx, &ns, body).await,
            None if ctx.info.name.is_none() => create(ctx, &ns, body).await,
            _ => Err(ApiError::method_not_supported(&ctx.d.qualified(), "create")),
        },
        "update" => update(ctx, &ns, body).await,
        "patch" => patch(ctx, &ns, body).await,
        "delete" => delete(ctx, &ns, body).await,
        "deletecollection" => delete_collection(ctx, &ns, body).await,
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// The request body with its format; over the limit is 413.
struct RequestBody {
    format: BodyFormat,
    bytes: Bytes,
}

/// Reads the body up to the limit. Past it, the rest is drained (bounded) so
/// the client reads the 413 instead of a reset connection.
async fn read_body(limit: usize, req: Request<hyper::body::Incoming>) -> Result<RequestBody, ApiError> {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::request_entity_too_large(format!("limit is {limit}")));
    }
    let bytes = buf.freeze();
    let format = if bytes.is_empty() { BodyFormat::Json } else { negotiation::body_format(ct.as_deref())? };
    Ok(RequestBody { format, bytes })
}

fn decode_body(body: &RequestBody) -> Result<Value, ApiError> {
    if body.bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if body.format == BodyFormat::Protobuf {
        return kube_protobuf::decode(&body.bytes)
            .map_err(|e| ApiError::bad_request(format!("decoding protobuf: {e}")));
    }
    negotiation::decode_object(body.format, &body.bytes)
}

fn write_options(ctx: &Ctx) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: dry_run(&ctx.query)?,
        field_validation: FieldValidation::parse(ctx.query.get("fieldValidation").map(String::as_str).unwrap_or(""))?,
    })
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("Invalid dryRun value: {other:?}; the only supported value is \"All\"")))
        }
    }
}

/// A request's object at the client's version into the storage version
/// (unchanged when they are the same), with warnings for fields the served
/// version does not know, as `fieldValidation` asks.
fn to_storage(ctx: &Ctx, obj: Value, opts: &WriteOptions) -> Result<(Value, Vec<String>), ApiError> {
    let Some(c) = ctx.served.conversion() else {
        return Ok((obj, Vec::new()));
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let served = ctx.served.served();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !kind.is_empty() && kind != served.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            served.kind
        )));
    }
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    if !api_version.is_empty() && api_version != served.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            served.api_version()
        )));
    }
    let n = (c.to_storage)(obj)?;
    let warnings = crate::registry::store::unknown_field_warnings(&n.unknown_fields, opts.field_validation)?;
    Ok((n.object, warnings))
}

// === responses ===

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}

/// The response for one stored object, in the client's version (Tables are
/// printed from the storage version, as upstream prints from its internal one).
fn object_response(ctx: &Ctx, code: StatusCode, obj: &Value) -> Response<Body> {
    let converted;
    let obj = match ctx.served.conversion() {
        Some(c) if ctx.output != Output::Table => {
            converted = (c.from_storage)(obj);
            &converted
        }
        _ => obj,
    };
    match ctx.output {
        Output::Table => value_response(code, &table(ctx, &[obj])),
        Output::PartialMetadata => value_response(code, &partial_metadata(obj)),
        Output::Yaml => yaml_response(code, obj),
        Output::Protobuf => match kube_protobuf::encode(obj) {
            Ok(bytes) => {
                let mut r = Response::new(Body::full(Bytes::from(bytes)));
                *r.status_mut() = code;
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
                );
                r
            }
            Err(_) => value_response(code, obj),
        },
        Output::Json => value_response(code, obj),
    }
}

fn yaml_response(code: StatusCode, obj: &Value) -> Response<Body> {
    let text = serde_yaml::to_string(obj).unwrap_or_default();
    let mut r = Response::new(Body::full(Bytes::from(text)));
    *r.status_mut() = code;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    r
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A `meta.k8s.io/v1` Table for these objects with the kind's columns.
fn table(ctx: &Ctx, objects: &[&Value]) -> Value {
    let include = ctx.query.get("includeObject").map(String::as_str).unwrap_or("Metadata");
    table_for(&ctx.d, objects, include, true)
}

pub fn table_for(d: &ResourceDescriptor, objects: &[&Value], include: &str, with_columns: bool) -> Value {
    let mut t = printers::table(
        d.group,
        d.kind,
        objects,
        Value::Null,
        |o: &Value| match include {
            "None" => Value::Null,
            "Object" => o.clone(),
            _ => partial_metadata(o),
        },
        jiff::Timestamp::now(),
    );
    if !with_columns {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

// === get ===

async fn get(ctx: &Ctx, ns: &str) -> Result<Response<Body>, ApiError> {
    let name = ctx.info.name.as_deref().unwrap_or_default();
    let store = &ctx.server.store;
    if ctx.info.subresource.as_deref() == Some("scale") {
        let obj = store.get(&ctx.d, ns, name).await?;
        return Ok(value_response(StatusCode::OK, &scale_of(&ctx.d, &obj)));
    }
    let rv = ctx.query.get("resourceVersion").map(String::as_str).unwrap_or("");
    // The stored bytes are the answer when the client speaks the storage version.
    let as_stored = ctx.output == Output::Json && ctx.served.conversion().is_none();
    if rv == "0" && as_stored {
        let bytes = store.get_cached(&ctx.d, ns, name).await?;
        return Ok(super::json_response(StatusCode::OK, bytes));
    }
    let bytes = store.get_consistent(&ctx.d, ns, name).await?;
    if as_stored {
        return Ok(super::json_response(StatusCode::OK, bytes));
    }
    let obj: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(object_response(ctx, StatusCode::OK, &obj))
}

// === list ===

/// Builds the list filter from label and field selectors.
pub fn list_filter(
    d: &ResourceDescriptor,
    query: &Query,
    name: Option<&str>,
) -> Result<Option<crate::registry::ObjectFilter>, ApiError> {
    use apimachinery::selector::{field::FieldSelector, label::LabelSelector};
    let labels = match query.get("labelSelector").map(String::as_str).unwrap_or("") {
        "" => None,
        s => Some(
            LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
    };
    let fields = match query.get("fieldSelector").map(String::as_str).unwrap_or("") {
        "" => None,
        s => {
            let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            for field in f.field_names() {
                let ok = field == "metadata.name"
                    || (field == "metadata.namespace" && d.namespaced)
                    || d.selectable_fields.contains(&field);
                if !ok {
                    return Err(ApiError::bad_request(format!(
                        "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )));
                }
            }
            Some(f)
        }
    };
    let name = name.map(String::from);
    if labels.is_none() && fields.is_none() && name.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(move |a: &ObjectAttrs| {
        if let Some(n) = &name {
            if &a.name != n {
                return false;
            }
        }
        if let Some(l) = &labels {
            if !l.matches(&a.labels) {
                return false;
            }
        }
        if let Some(f) = &fields {
            if !f.matches(|field| a.field(field)) {
                return false;
            }
        }
        true
    })))
}

async fn list(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let opts = ListOptions {
        resource_version: ctx.query.get("resourceVersion").cloned(),
        resource_version_match: ctx.query.get("resourceVersionMatch").cloned(),
        limit: match ctx.query.get("limit").map(String::as_str) {
            None | Some("") => 0,
            Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        },
        continue_token: ctx.query.get("continue").filter(|c| !c.is_empty()).cloned(),
        filter: list_filter(&ctx.d, &ctx.query, None)?,
    };
    let result = ctx.server.store.list(&ctx.d, ctx.info.namespace.as_deref(), &opts).await?;
    let mut meta = json!({"resourceVersion": result.resource_version.to_string()});
    if let Some(c) = &result.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = result.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let served = ctx.served.served();
    match ctx.output {
        Output::Json | Output::Protobuf if ctx.served.conversion().is_none() => {
            Ok(super::json_response(StatusCode::OK, list_bytes(&ctx.d, &meta, &result.items)))
        }
        Output::Json | Output::Protobuf => {
            let items: Vec<Value> = result.items.iter().map(|o| ctx.served.to_served(&o.value())).collect();
            let list = json!({"kind": served.list_kind(), "apiVersion": served.api_version(), "metadata": meta, "items": items});
            Ok(value_response(StatusCode::OK, &list))
        }
        Output::Yaml | Output::Table | Output::PartialMetadata => {
            let mut items: Vec<Value> = result.items.iter().map(|o| o.value()).collect();
            if ctx.output == Output::Table {
                let refs: Vec<&Value> = items.iter().collect();
                let mut t = table(ctx, &refs);
                t["metadata"] = meta;
                return Ok(value_response(StatusCode::OK, &t));
            }
            if ctx.served.conversion().is_some() {
                items = items.iter().map(|o| ctx.served.to_served(o)).collect();
            }
            if ctx.output == Output::PartialMetadata {
                let list = json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
                });
                return Ok(value_response(StatusCode::OK, &list));
            }
            let list = json!({"kind": served.list_kind(), "apiVersion": served.api_version(), "metadata": meta, "items": items});
            Ok(yaml_response(StatusCode::OK, &list))
        }
    }
}

/// Concatenates the cached item bytes into a list body: no re-encoding.
fn list_bytes(d: &ResourceDescriptor, meta: &Value, items: &[Arc<CachedObject>]) -> Bytes {
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        d.list_kind(),
        d.api_version(),
        meta
    );
    let size = head.len() + items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 2;
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&item.json);
    }
    buf.extend_from_slice(b"]}");
    Bytes::from(buf)
}

// === admission ===

/// This request's admission attributes.
fn attributes<'a>(ctx: &'a Ctx, ns: &'a str, operation: Operation, dry_run: bool) -> Attributes<'a> {
    let mut a = Attributes::new(operation, &ctx.d, ns, &ctx.user);
    a.subresource = ctx.info.subresource.as_deref();
    a.url_name = ctx.info.name.as_deref().unwrap_or_default();
    a.dry_run = dry_run;
    a
}

/// What a store write checks against the final object (after the strategy's
/// defaulting and validation, inside its compare-and-swap): the admission
/// chain's validating hooks for an update (a create's ran before the write), and
/// the RBAC registry's escalation prevention for both.
fn validate_in_store(ctx: &Ctx, ns: &str, dry_run: bool, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if let Some(old) = old {
        let mut a = attributes(ctx, ns, Operation::Update, dry_run);
        a.object = Some(Cow::Borrowed(new));
        a.old_object = Some(old);
        ctx.server.admission.validate_now(&ctx.server, &mut a)?;
    }
    crate::escalation::check_rbac_escalation(&ctx.server, &ctx.d, &ctx.user, new)
}

/// A new Service's cluster IPs and node ports (the Service registry's, not admission).
async fn allocate(ctx: &Ctx, obj: Option<&mut Value>) -> Result<(), ApiError> {
    if let (("", "services"), Some(alloc), Some(obj)) = ((ctx.d.group, ctx.d.plural), &ctx.server.allocator, obj) {
        alloc.allocate_for(obj).await?;
    }
    Ok(())
}

/// Frees what [`allocate`] took for an object that is gone or was never stored.
async fn release_allocation(ctx: &Ctx, obj: Option<&Value>) {
    if let (("", "services"), Some(alloc), Some(obj)) = ((ctx.d.group, ctx.d.plural), &ctx.server.allocator, obj) {
        alloc.release(obj).await;
    }
}

/// A create: the admission chain's mutating hooks, the registry's
/// allocations, the chain's validating hooks, then the write; what was
/// allocated or charged is given back when the write does not happen.
async fn admit_and_create(
    ctx: &Ctx,
    ns: &str,
    obj: Value,
    opts: &WriteOptions,
    conversion_warnings: Vec<String>,
) -> Result<Written, ApiError> {
    let chain = &ctx.server.admission;
    let mut a = attributes(ctx, ns, Operation::Create, opts.dry_run);
    a.object = Some(Cow::Owned(obj));
    chain.admit(&ctx.server, &mut a).await?;
    allocate(ctx, a.object_mut()).await?;
    if let Err(e) = chain.validate(&ctx.server, &mut a).await {
        release_allocation(ctx, a.object()).await;
        return Err(e);
    }
    let admission_warnings = std::mem::take(&mut a.warnings);
    let obj = a.take_object().unwrap_or(Value::Null);
    let result = ctx
        .server
        .store
        .create(&ctx.d, ns, obj.clone(), opts, |o| validate_in_store(ctx, ns, opts.dry_run, o, None))
        .await;
    if result.is_err() || opts.dry_run {
        release_allocation(ctx, Some(&obj)).await;
        a.object = Some(Cow::Owned(obj));
        chain.release(&ctx.server, &a).await;
    }
    let mut w = result?;
    w.warnings.extend(conversion_warnings);
    w.warnings.extend(admission_warnings);
    Ok(w)
}

// === create ===

async fn create(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let obj = decode_body(&body)?;
    let opts = write_options(ctx)?;
    let (obj, conversion_warnings) = to_storage(ctx, obj, &opts)?;
    let w = admit_and_create(ctx, ns, obj, &opts, conversion_warnings).await?;
    if ctx.d.group.is_empty() && ctx.d.plural == "resourcequotas" && !opts.dry_run {
        crate::quota::initialize(&ctx.server, ns, &w.object).await;
    }
    Ok(with_warnings(object_response(ctx, StatusCode::CREATED, &w.object), &w.warnings))
}

// === update ===

fn target(ctx: &Ctx) -> Target {
    match ctx.info.subresource.as_deref() {
        Some("status") => Target::Status,
        Some("finalize") => Target::All,
        _ => Target::Main,
    }
}

async fn update(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let name = ctx.info.name.clone().ok_or_else(|| ApiError::method_not_supported(&ctx.d.qualified(), "update"))?;
    let input = decode_body(&body)?;
    let opts = write_options(ctx)?;
    if ctx.info.subresource.as_deref() == Some("scale") {
        let replicas = input["spec"]["replicas"].as_i64().unwrap_or(0);
        let pinned = meta::resource_version(&input).map(String::from);
        return scale_to(ctx, ns, &name, replicas, pinned, &opts).await;
    }
    let finalize = ctx.info.subresource.as_deref() == Some("finalize");
    let (input, conversion_warnings) = if finalize { (input, Vec::new()) } else { to_storage(ctx, input, &opts)? };
    let mut w = write_update(ctx, ns, &name, target(ctx), &opts, |current: Option<&Value>| {
        if finalize {
            // Only spec.finalizers changes through /finalize.
            let mut next = current.cloned().unwrap_or(Value::Null);
            next["spec"]["finalizers"] = input["spec"]["finalizers"].clone();
            if let Some(rv) = meta::resource_version(&input) {
                meta::metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv));
            }
            return Ok(next);
        }
        Ok(input.clone())
    })
    .await?;
    w.warnings.extend(conversion_warnings);
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_warnings(object_response(ctx, code, &w.object), &w.warnings))
}

/// The generic update. For Services, node ports that a type change needs are
/// claimed before the write and filled in atomically with it; ports the new
/// version no longer uses are freed after it.
async fn write_update<F>(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    target: Target,
    opts: &WriteOptions,
    mut mutate: F,
) -> Result<Written, ApiError>
where
    F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
{
    use crate::allocator::{fill_node_ports, missing_node_ports, node_ports};
    let store = &ctx.server.store;
    // The admission chain's mutating hooks run on every attempt, against the
    // object the attempt replaces.
    let mut mutate = |cur: Option<&Value>| -> Result<Value, ApiError> {
        let new = mutate(cur)?;
        let Some(old) = cur else { return Ok(new) };
        let mut a = attributes(ctx, ns, Operation::Update, opts.dry_run);
        a.object = Some(Cow::Owned(new));
        a.old_object = Some(old);
        ctx.server.admission.admit_now(&ctx.server, &mut a)?;
        Ok(a.take_object().unwrap_or(Value::Null))
    };
    let validate = |o: &Value, old: Option<&Value>| validate_in_store(ctx, ns, opts.dry_run, o, old);
    let is_service = ctx.d.group.is_empty() && ctx.d.plural == "services" && target == Target::Main;
    let Some(alloc) = ctx.server.allocator.as_ref().filter(|_| is_service) else {
        return store.update(&ctx.d, ns, name, target, opts, mutate, validate).await;
    };
    let before = store.get(&ctx.d, ns, name).await.ok();
    let mut pool = Vec::new();
    if let Some(cur) = &before {
        let needed = missing_node_ports(&mutate(Some(cur))?, cur);
        if needed > 0 && !opts.dry_run {
            pool = alloc.claim_node_ports(needed, &format!("{ns}/{name}")).await?;
        }
    }
    let result = store
        .update(
            &ctx.d,
            ns,
            name,
            target,
            opts,
            |cur| {
                let mut new = mutate(cur)?;
                if let Some(old) = cur {
                    fill_node_ports(&mut new, old, &mut pool.clone());
                }
                Ok(new)
            },
            validate,
        )
        .await;
    let release: Vec<u16> = match &result {
        Err(_) => pool,
        Ok(_) if opts.dry_run => pool,
        Ok(w) => {
            let in_use = node_ports(&w.object);
            let before_ports = before.as_ref().map(node_ports).unwrap_or_default();
            pool.into_iter().chain(before_ports).filter(|p| !in_use.contains(p)).collect()
        }
    };
    for p in release {
        alloc.release_node_port(p).await;
    }
    result
}

// === patch ===

async fn patch(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    use apimachinery::patch;
    let name = ctx.info.name.clone().ok_or_else(|| ApiError::method_not_supported(&ctx.d.qualified(), "patch"))?;
    if body.bytes.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let format = body.format;
    let patch_doc: Value = match format {
        BodyFormat::ApplyPatch => negotiation::decode_object(format, &body.bytes)?,
        BodyFormat::JsonPatch | BodyFormat::MergePatch | BodyFormat::StrategicMergePatch => {
            serde_json::from_slice(&body.bytes)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
        }
        _ => {
            return Err(ApiError::unsupported_media_type(match format {
                BodyFormat::Yaml => "application/yaml",
                BodyFormat::Protobuf => "application/vnd.kubernetes.protobuf",
                _ => "application/json",
            }))
        }
    };
    let opts = write_options(ctx)?;
    // Patches apply to the object as the client's version shows it.
    let definition = ctx.served.served().definition;
    let apply = |doc: &Value| -> Result<Value, ApiError> {
        let out = match format {
            BodyFormat::JsonPatch => patch::json_patch(doc, &patch_doc),
            BodyFormat::MergePatch | BodyFormat::ApplyPatch => Ok(patch::merge_patch(doc, &patch_doc)),
            _ => match patch::BuiltinPatchMeta::new(definition) {
                Some(m) => patch::strategic_merge_patch(doc, &patch_doc, &m),
                None => patch::strategic_merge_patch(doc, &patch_doc, &patch::NoPatchMeta),
            },
        };
        out.map_err(|e| ApiError::new(422, "Invalid", format!("the patch could not be applied: {e}")))
    };
    if ctx.info.subresource.as_deref() == Some("scale") {
        let obj = ctx.server.store.get(&ctx.d, ns, &name).await?;
        let scale = apply(&scale_of(&ctx.d, &obj))?;
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        return scale_to(ctx, ns, &name, replicas, None, &opts).await;
    }
    let is_apply = format == BodyFormat::ApplyPatch;
    if is_apply && ctx.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
        ));
    }
    let mut conversion_warnings = Vec::new();
    let result = write_update(ctx, ns, &name, target(ctx), &opts, |current: Option<&Value>| match current {
        Some(cur) => {
            let mut patched = apply(&ctx.served.to_served(cur))?;
            // A patch without a resourceVersion must not pin one.
            let patch_rv = patch_doc["metadata"]["resourceVersion"].as_str();
            if patch_rv.is_none() {
                meta::metadata_mut(&mut patched).remove("resourceVersion");
            }
            let (patched, warnings) = to_storage(ctx, patched, &opts)?;
            conversion_warnings = warnings;
            Ok(patched)
        }
        None => Err(ApiError::not_found(&ctx.d.qualified(), &name)),
    })
    .await;
    let w: Written = match result {
        Err(e) if e.is_not_found() && is_apply => {
            // Server-side apply of a missing object creates it.
            let mut obj = patch_doc.clone();
            meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
            let (obj, warnings) = to_storage(ctx, obj, &opts)?;
            admit_and_create(ctx, ns, obj, &opts, warnings).await?
        }
        other => other?,
    };
    let mut w = w;
    w.warnings.extend(conversion_warnings);
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_warnings(object_response(ctx, code, &w.object), &w.warnings))
}

// === scale ===

fn scale_of(d: &ResourceDescriptor, obj: &Value) -> Value {
    let Some(s) = d.subresources.scale else {
        return Value::Null;
    };
    let selector = obj.pointer(s.selector).cloned().unwrap_or(Value::Null);
    let selector_str = match &selector {
        Value::Object(m) if m.contains_key("matchLabels") || m.contains_key("matchExpressions") => {
            apimachinery::selector::label::LabelSelector::from_json(&selector)
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        // ReplicationController selectors are plain maps.
        Value::Object(m) => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer(s.spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(s.status_replicas).cloned().unwrap_or(json!(0)),
            "selector": selector_str,
        },
    })
}

async fn scale_to(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    replicas: i64,
    pinned: Option<String>,
    opts: &WriteOptions,
) -> Result<Response<Body>, ApiError> {
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            &[apimachinery::status::FieldError::invalid_json(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let Some(s) = ctx.d.subresources.scale else {
        return Err(ApiError::method_not_supported(&ctx.d.qualified(), "scale"));
    };
    let w = ctx
        .server
        .store
        .update(
            &ctx.d,
            ns,
            name,
            Target::Main,
            opts,
            |current| {
                let mut next = current.cloned().unwrap_or(Value::Null);
                if let Some(slot) = next.pointer_mut(s.spec_replicas) {
                    *slot = json!(replicas);
                } else {
                    next["spec"]["replicas"] = json!(replicas);
                }
                match &pinned {
                    Some(rv) => meta::metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv)),
                    None => meta::metadata_mut(&mut next).remove("resourceVersion"),
                };
                Ok(next)
            },
            |o: &Value, old: Option<&Value>| validate_in_store(ctx, ns, opts.dry_run, o, old),
        )
        .await?;
    Ok(value_response(StatusCode::OK, &scale_of(&ctx.d, &w.object)))
}

// === binding and eviction ===

async fn bind(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let binding = decode_body(&body)?;
    let name = ctx.info.name.clone().unwrap_or_default();
    let node = binding["target"]["name"].as_str().unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &name,
            &[apimachinery::status::FieldError::required("target.name", "")],
        ));
    }
    let opts = write_options(ctx)?;
    let d = &ctx.d;
    ctx.server
        .store
        .update(d, ns, &name, Target::All, &opts, |current| {
            let mut pod = current.cloned().unwrap_or(Value::Null);
            if meta::is_terminating(&pod) {
                return Err(ApiError::conflict(&d.qualified(), &name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(
                    &d.qualified(),
                    &name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            if let Some(uid) = binding["metadata"]["uid"].as_str() {
                if pod["metadata"]["uid"].as_str() != Some(uid) {
                    return Err(ApiError::conflict(&d.qualified(), &name, "Precondition failed: UID mismatch"));
                }
            }
            pod["spec"]["nodeName"] = json!(node);
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
            pod["status"]["conditions"] = json!(conditions);
            meta::metadata_mut(&mut pod).remove("resourceVersion");
            Ok(pod)
        }, |_, _| Ok(()))
        .await?;
    Ok(value_response(StatusCode::CREATED, &success_status(json!({"name": name, "kind": "pods"}))))
}

async fn evict(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let eviction = decode_body(&body)?;
    let name = ctx.info.name.clone().unwrap_or_default();
    {
        let mut a = attributes(ctx, ns, Operation::Create, dry_run(&ctx.query)?);
        a.object = Some(Cow::Borrowed(&eviction));
        ctx.server.admission.admit(&ctx.server, &mut a).await?;
        ctx.server.admission.validate(&ctx.server, &mut a).await?;
    }
    let pod = ctx.server.store.get(&ctx.d, ns, &name).await?;
    let labels: std::collections::BTreeMap<String, String> = pod["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    // Finished or terminating pods may always go.
    if phase != "Succeeded" && phase != "Failed" && !meta::is_terminating(&pod) {
        if let Some(pdbs) = ctx.server.resources.lookup("policy", "v1", "poddisruptionbudgets").cloned() {
            let (items, _) = ctx.server.store.cache(&pdbs).snapshot(&pdbs.key_prefix(&ctx.server.store.root, Some(ns)));
            for pdb in items {
                let pdb = pdb.value();
                let Ok(sel) = apimachinery::selector::label::LabelSelector::from_json(&pdb["spec"]["selector"]) else {
                    continue;
                };
                if sel.is_empty() || !sel.matches(&labels) {
                    continue;
                }
                if pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1 {
                    return Err(ApiError::too_many_requests(
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        10,
                    ));
                }
            }
        }
    }
    let opts = delete_options(&eviction["deleteOptions"], &ctx.query)?;
    ctx.server.store.delete(&ctx.d, ns, &name, &opts).await?;
    Ok(value_response(StatusCode::CREATED, &success_status(json!({"name": name, "kind": "pods"}))))
}

// === token requests ===

/// `serviceaccounts/<name>/token`: a signed token for the service account,
/// optionally bound to a pod or secret, with audiences and an expiry.
async fn token_request(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    use apimachinery::status::FieldError;
    let server = &ctx.server;
    let Some(signer) = server.sa_signer.as_ref() else {
        return Err(ApiError::internal(
            "service account token signing is not configured (--service-account-signing-key-file)",
        ));
    };
    let name = ctx.info.name.clone().unwrap_or_default();
    let mut req = decode_body(&body)?;
    {
        let mut a = attributes(ctx, ns, Operation::Create, dry_run(&ctx.query)?);
        a.object = Some(Cow::Borrowed(&req));
        server.admission.admit(server, &mut a).await?;
        server.admission.validate(server, &mut a).await?;
    }
    let sa = server.store.get(&ctx.d, ns, &name).await?;
    let spec = req["spec"].clone();
    let exp = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if exp < 600 {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &name,
            &[FieldError::invalid_json(
                "spec.expirationSeconds",
                &json!(exp),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let exp = exp.min(server.max_token_expiration);
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => server.sa_verifier.audiences.clone(),
    };
    let mut bound = None;
    let mut node = None;
    if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()) {
        let kind = r["kind"].as_str().unwrap_or_default().to_string();
        let obj_name = r["name"].as_str().unwrap_or_default().to_string();
        let plural = match kind.as_str() {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(ApiError::invalid(
                    "authentication.k8s.io",
                    "TokenRequest",
                    &name,
                    &[FieldError::not_supported("spec.boundObjectRef.kind", other, &["Pod", "Secret"])],
                ))
            }
        };
        let d =
            server.resources.lookup("", "v1", plural).cloned().ok_or_else(|| ApiError::internal("no such resource"))?;
        let obj = server.store.get(&d, ns, &obj_name).await?;
        // Upstream's TokenRequest storage: a token is bound only to a pod running as its account.
        if kind == "Pod" && obj["spec"]["serviceAccountName"].as_str().unwrap_or_default() != name {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
            )));
        }
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if let Some(want) = r["uid"].as_str().filter(|u| !u.is_empty()) {
            if want != uid {
                return Err(ApiError::conflict(
                    &d.qualified(),
                    &obj_name,
                    "the UID in the bound object reference does not match",
                ));
            }
        }
        if kind == "Pod" {
            if let Some(n) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                let nd = server.resources.lookup("", "v1", "nodes").cloned();
                let node_uid = match nd {
                    Some(nd) => server
                        .store
                        .get(&nd, "", n)
                        .await
                        .ok()
                        .and_then(|o| o["metadata"]["uid"].as_str().map(String::from)),
                    None => None,
                };
                node = Some((n.to_string(), node_uid.unwrap_or_default()));
            }
        }
        bound = Some((kind, obj_name, uid));
    }
    let claims = crate::serviceaccount::TokenClaims {
        namespace: ns.to_string(),
        service_account: name.clone(),
        service_account_uid: sa["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        audiences: audiences.clone(),
        expiration_seconds: exp,
        bound_object: bound,
        node,
    };
    let now = jiff::Timestamp::now().as_second();
    let (token, expires) = signer.issue(&claims, now).map_err(|e| ApiError::internal(e.to_string()))?;
    let expires =
        jiff::Timestamp::from_second(expires).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(exp);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(value_response(StatusCode::CREATED, &req))
}

// === delete ===

fn delete_options(body: &Value, q: &Query) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions {
        grace_period_seconds: body["gracePeriodSeconds"].as_i64(),
        propagation_policy: body["propagationPolicy"].as_str().map(String::from),
        orphan_dependents: body["orphanDependents"].as_bool(),
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_resource_version: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run: body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All")),
    };
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace_period_seconds =
            Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?);
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation_policy = Some(p.clone());
    }
    if let Some(p) = q.get("orphanDependents") {
        o.orphan_dependents = Some(p == "true");
    }
    o.dry_run |= dry_run(q)?;
    Ok(o)
}

fn delete_body(body: &RequestBody) -> Result<Value, ApiError> {
    if body.bytes.is_empty() {
        return Ok(json!({}));
    }
    negotiation::decode_object(
        if body.format == BodyFormat::Yaml { BodyFormat::Yaml } else { BodyFormat::Json },
        &body.bytes,
    )
}

async fn delete(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let name = ctx.info.name.clone().unwrap_or_default();
    if ctx.info.subresource.is_some() {
        return Err(ApiError::method_not_supported(&ctx.d.qualified(), "delete"));
    }
    let opts = delete_options(&delete_body(&body)?, &ctx.query)?;
    let chain = &ctx.server.admission;
    let mut a = attributes(ctx, ns, Operation::Delete, opts.dry_run);
    chain.admit(&ctx.server, &mut a).await?;
    chain.validate(&ctx.server, &mut a).await?;
    let deleted = ctx.server.store.delete(&ctx.d, ns, &name, &opts).await?;
    if deleted.removed && !opts.dry_run {
        release_allocation(ctx, Some(&deleted.object)).await;
        a.old_object = Some(&deleted.object);
        chain.release(&ctx.server, &a).await;
    }
    // Removed or pending (graceful, finalizers), the answer is the object, as
    // upstream answers pods; kubectl handles both that and a Status.
    Ok(object_response(ctx, StatusCode::OK, &deleted.object))
}

async fn delete_collection(ctx: &Ctx, ns: &str, body: RequestBody) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(&delete_body(&body)?, &ctx.query)?;
    let list_opts = ListOptions { filter: list_filter(&ctx.d, &ctx.query, None)?, ..Default::default() };
    let ns_opt = if ctx.d.namespaced { Some(ns).filter(|n| !n.is_empty()) } else { None };
    let result = ctx.server.store.list(&ctx.d, ns_opt, &list_opts).await?;
    let chain = &ctx.server.admission;
    let mut items = Vec::new();
    for item in &result.items {
        // Each item is admitted as its own delete, as upstream does.
        let (item_ns, name) = (item.attrs.namespace.as_str(), item.attrs.name.as_str());
        let mut a = attributes(ctx, item_ns, Operation::Delete, opts.dry_run);
        a.url_name = name;
        chain.admit(&ctx.server, &mut a).await?;
        chain.validate(&ctx.server, &mut a).await?;
        match ctx.server.store.delete(&ctx.d, item_ns, name, &opts).await {
            Ok(d) => {
                if d.removed && !opts.dry_run {
                    release_allocation(ctx, Some(&d.object)).await;
                    a.old_object = Some(&d.object);
                    chain.release(&ctx.server, &a).await;
                }
                items.push(ctx.served.to_served(&d.object))
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": ctx.served.served().list_kind(),
        "apiVersion": ctx.served.served().api_version(),
        "metadata": {"resourceVersion": result.resource_version.to_string()},
        "items": items,
    });
    Ok(value_response(StatusCode::OK, &list))
}
