//! The generic registry: one descriptor per resource and one store that serves
//! every kind through the descriptor's strategy hooks.
//!
//! The HTTP layer never branches on kind: it looks up a [`ResourceDescriptor`]
//! and calls the generic [`store::Store`].

pub mod meta;
pub mod store;
pub mod strategy;

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::status::{ApiError, Qualified};
use serde_json::Value;

pub use strategy::{Normalized, Strategy};

/// How a served version that is not the storage version maps onto it. A
/// descriptor with a conversion is a view of its storage version's descriptor
/// (same group, plural, kind, strategy and storage): requests at its version
/// convert on the way in and out, objects are stored once.
#[derive(Clone, Copy)]
pub struct Conversion {
    /// The version objects are stored in (a descriptor of the same group and plural).
    pub storage_version: &'static str,
    /// A request's object at the served version into the storage version;
    /// fields the served version does not know are reported as paths.
    pub to_storage: fn(Value) -> Result<Normalized, ApiError>,
    /// A stored object into the served version.
    pub from_storage: fn(&Value) -> Value,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion").field("storage_version", &self.storage_version).finish()
    }
}

/// How a resource's `scale` subresource maps onto its object.
#[derive(Clone, Copy, Debug)]
pub struct ScaleSpec {
    /// JSON pointer to the desired replicas, e.g. `/spec/replicas`.
    pub spec_replicas: &'static str,
    pub status_replicas: &'static str,
    /// JSON pointer to the label selector (an object or a string).
    pub selector: &'static str,
}

/// Which subresources a resource serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subresources {
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// `pods/binding`.
    pub binding: bool,
    /// `pods/eviction`.
    pub eviction: bool,
    /// `namespaces/finalize`.
    pub finalize: bool,
    /// `serviceaccounts/token` (TokenRequest).
    pub token: bool,
}

/// Where a resource's objects live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Stored in etcd, cached, watchable.
    Etcd,
    /// Create-only and never stored: the server answers from the request
    /// (access and token reviews).
    Review(ReviewKind),
}

/// The review kinds of authentication.k8s.io and authorization.k8s.io.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewKind {
    SelfSubject,
    Token,
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    LocalSubjectAccess,
}

/// Everything the server knows about one resource: identity, scope, discovery
/// names and the strategy that shapes its objects.
pub struct ResourceDescriptor {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub backing: Backing,
    pub subresources: Subresources,
    /// Whether `metadata.generation` is tracked (bumped on spec changes).
    pub tracks_generation: bool,
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: &'static str,
    /// Field selectors supported beyond `metadata.name`/`metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    pub strategy: Arc<dyn Strategy>,
    /// Adds this kind's JSON schema (and those it references) to a generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Set on an additional served version: how it converts to its storage version.
    pub conversion: Option<Conversion>,
}

impl std::fmt::Debug for ResourceDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceDescriptor")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("plural", &self.plural)
            .finish()
    }
}

impl ResourceDescriptor {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-resource used in storage keys and error messages.
    pub fn qualified(&self) -> Qualified {
        Qualified::new(self.group, self.plural)
    }

    /// `deployments.apps` or `pods`: the storage key segment, as upstream.
    pub fn group_resource(&self) -> String {
        self.qualified().to_string_qualified()
    }

    pub fn is_stored(&self) -> bool {
        self.backing == Backing::Etcd
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Storage key prefix for a namespace (or the whole resource with `None`).
    pub fn key_prefix(&self, root: &str, namespace: Option<&str>) -> String {
        let base = storage_segment(self);
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/{base}/{ns}/"),
            _ => format!("{root}/{base}/"),
        }
    }

    pub fn key(&self, root: &str, namespace: &str, name: &str) -> String {
        let base = storage_segment(self);
        if self.namespaced {
            format!("{root}/{base}/{namespace}/{name}")
        } else {
            format!("{root}/{base}/{name}")
        }
    }
}

/// Upstream keys core resources by plural and other groups by their resource
/// name too (`/registry/deployments/ns/x`); we keep the group-qualified name for
/// groups so two groups' resources of one plural cannot collide
/// (`events` and `events.events.k8s.io` share storage upstream; here they are distinct kinds).
fn storage_segment(d: &ResourceDescriptor) -> String {
    d.group_resource()
}

/// A predicate over object attributes: a list's or watch's selectors.
pub type ObjectFilter = Arc<dyn Fn(&ObjectAttrs) -> bool + Send + Sync>;

/// The attributes a list or watch filters on, computed once per object version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectAttrs {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Selectable fields (`metadata.name`, `spec.nodeName`, ...).
    pub fields: Vec<(&'static str, String)>,
}

impl ObjectAttrs {
    pub fn field(&self, name: &str) -> Option<&str> {
        match name {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(&self.namespace),
            _ => self.fields.iter().find(|(f, _)| *f == name).map(|(_, v)| v.as_str()),
        }
    }

    pub fn from_object(d: &ResourceDescriptor, obj: &Value) -> ObjectAttrs {
        let m = &obj["metadata"];
        let labels = m["labels"]
            .as_object()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let fields = d.selectable_fields.iter().map(|f| (*f, field_value(obj, f))).collect();
        ObjectAttrs {
            namespace: m["namespace"].as_str().unwrap_or_default().to_string(),
            name: m["name"].as_str().unwrap_or_default().to_string(),
            labels,
            fields,
        }
    }
}

/// Reads a dotted field path (`spec.nodeName`) as the string upstream's field
/// selectors compare against (missing = empty, booleans and numbers as text).
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// A request's resource: the descriptor it is stored under and, for an
/// additional served version, the view it is served as.
#[derive(Clone, Debug)]
pub struct Served {
    pub storage: Arc<ResourceDescriptor>,
    pub view: Option<Arc<ResourceDescriptor>>,
}

impl Served {
    /// The descriptor of the version the client speaks.
    pub fn served(&self) -> &Arc<ResourceDescriptor> {
        self.view.as_ref().unwrap_or(&self.storage)
    }

    pub fn conversion(&self) -> Option<Conversion> {
        self.view.as_ref().and_then(|v| v.conversion)
    }

    /// A stored object as the client's version shows it.
    pub fn to_served(&self, obj: &Value) -> Value {
        match self.conversion() {
            Some(c) => (c.from_storage)(obj),
            None => obj.clone(),
        }
    }
}

/// All resources the server serves, indexed for routing.
#[derive(Debug, Default)]
pub struct ResourceTable {
    /// One descriptor per stored resource, in its storage version.
    pub resources: Vec<Arc<ResourceDescriptor>>,
    /// Every served version (storage versions and views), in discovery order.
    pub served: Vec<Arc<ResourceDescriptor>>,
    by_path: BTreeMap<(String, String, String), usize>,
}

impl ResourceTable {
    /// Takes the descriptors in discovery order; those with a conversion are
    /// additional served versions of a storage descriptor in the same list.
    pub fn new(descriptors: Vec<ResourceDescriptor>) -> Self {
        let served: Vec<Arc<ResourceDescriptor>> = descriptors.into_iter().map(Arc::new).collect();
        let resources = served.iter().filter(|d| d.conversion.is_none()).cloned().collect();
        let by_path = served
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.group.to_string(), r.version.to_string(), r.plural.to_string()), i))
            .collect();
        ResourceTable { resources, served, by_path }
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDescriptor>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string())).map(|i| &self.served[*i])
    }

    /// The storage descriptor of a resource at its storage version.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDescriptor>> {
        self.find(group, version, plural).filter(|d| d.conversion.is_none())
    }

    /// A resource at any served version, with its storage descriptor.
    pub fn lookup_served(&self, group: &str, version: &str, plural: &str) -> Option<Served> {
        let d = self.find(group, version, plural)?;
        match d.conversion {
            None => Some(Served { storage: d.clone(), view: None }),
            Some(c) => {
                let storage = self.lookup(group, c.storage_version, plural)?.clone();
                Some(Served { storage, view: Some(d.clone()) })
            }
        }
    }

    /// Group versions in discovery order (core first, then groups in table
    /// order; a group's storage version before its other versions, so it is
    /// the preferred one).
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for r in &self.served {
            if !out.contains(&(r.group, r.version)) {
                out.push((r.group, r.version));
            }
        }
        out
    }

    /// The resources served at a group version (views included).
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceDescriptor>> + 'a {
        self.served.iter().filter(move |r| r.group == group && r.version == version)
    }
}
