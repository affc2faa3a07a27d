//! The admission chain: upstream's built-in admission plugins behind one
//! interface, chosen by `--enable-admission-plugins` and
//! `--disable-admission-plugins`.
//!
//! A request's object passes every enabled plugin's mutating hook (in
//! upstream's plugin order), then every enabled plugin's validating hook (in
//! the same order), before it is stored. A plugin joins the chain with one line
//! in [`registry`].

mod lifecycle;
mod limit_ranger;
mod node_restriction;
mod pod_security;
mod priority;
mod resource_quota;
mod service_account;
mod tolerations;

use std::borrow::Cow;

use apimachinery::status::ApiError;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

/// The operation a request performs, as upstream's admission attributes name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// What a plugin sees of a request.
pub struct Attributes<'a> {
    pub operation: Operation,
    /// The resource (storage version).
    pub resource: &'a ResourceDescriptor,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    /// The name on the URL; empty for a create (see [`Attributes::name`]).
    pub url_name: &'a str,
    pub user: &'a rbac::UserInfo,
    /// The new object (create, update); mutating hooks change it in place.
    pub object: Option<Cow<'a, Value>>,
    /// The stored object an update replaces or a delete removes.
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    /// Warnings for the client (`Warning` headers).
    pub warnings: Vec<String>,
}

impl<'a> Attributes<'a> {
    pub fn new(
        operation: Operation,
        resource: &'a ResourceDescriptor,
        namespace: &'a str,
        user: &'a rbac::UserInfo,
    ) -> Self {
        Attributes {
            operation,
            resource,
            subresource: None,
            namespace,
            url_name: "",
            user,
            object: None,
            old_object: None,
            dry_run: false,
            warnings: Vec::new(),
        }
    }

    /// Whether the request is for `group`/`plural` itself (no subresource).
    pub fn is_main(&self, group: &str, plural: &str) -> bool {
        self.is(group, plural) && self.subresource.is_none()
    }

    /// Whether the request is for `group`/`plural` or one of its subresources.
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group && self.resource.plural == plural
    }

    pub fn object(&self) -> Option<&Value> {
        self.object.as_deref()
    }

    pub fn object_mut(&mut self) -> Option<&mut Value> {
        self.object.as_mut().map(Cow::to_mut)
    }

    /// The object's name: the URL's, else the new object's, else the old one's.
    pub fn name(&self) -> &str {
        if !self.url_name.is_empty() {
            return self.url_name;
        }
        self.object().or(self.old_object).and_then(|o| o["metadata"]["name"].as_str()).unwrap_or_default()
    }

    /// The (possibly mutated) object, owned.
    pub fn take_object(&mut self) -> Option<Value> {
        self.object.take().map(Cow::into_owned)
    }
}

/// A hook's answer; most plugins answer at once (`std::future::ready`).
pub type Hook<'a> = BoxFuture<'a, Result<(), ApiError>>;

fn done<'a>(r: Result<(), ApiError>) -> Hook<'a> {
    Box::pin(std::future::ready(r))
}

/// An admission plugin. Hooks a plugin does not need keep their defaults.
///
/// Updates are admitted inside the store's compare-and-swap, against the exact
/// object they replace, where nothing can wait: a plugin's update hooks must
/// answer from memory (the watch caches). Create and delete hooks may wait.
pub trait AdmissionPlugin: Send + Sync {
    /// Upstream's name, as the flags spell it.
    fn name(&self) -> &'static str;

    /// The mutating hook: may change `a.object`; an error rejects the request.
    fn admit<'a>(&'a self, _server: &'a ApiServer, _a: &'a mut Attributes<'_>) -> Hook<'a> {
        done(Ok(()))
    }

    /// The validating hook: runs after every mutating hook; must not change
    /// the object (it may add warnings).
    fn validate<'a>(&'a self, _server: &'a ApiServer, _a: &'a mut Attributes<'_>) -> Hook<'a> {
        done(Ok(()))
    }

    /// Gives back what a successful `validate` reserved for `a.object` when
    /// the write did not happen (failed, dry run), or what `a.old_object`
    /// held once a delete removed it.
    fn release<'a>(&'a self, _server: &'a ApiServer, _a: &'a Attributes<'_>) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Settings plugins take from flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable_toleration_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { not_ready_toleration_seconds: 300, unreachable_toleration_seconds: 300 }
    }
}

/// Whether a plugin runs when the flags do not name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // every plugin implemented so far is on by default
enum Enabled {
    ByDefault,
    OnRequest,
}

/// Every plugin this server implements, in upstream's order (the order they
/// run in, whatever the flags' order), with whether it is on by default.
/// A new plugin joins the chain with one line here.
fn registry(c: &Config) -> Vec<(Enabled, Box<dyn AdmissionPlugin>)> {
    vec![
        (Enabled::ByDefault, Box::new(lifecycle::NamespaceLifecycle)),
        (Enabled::ByDefault, Box::new(limit_ranger::LimitRanger)),
        (Enabled::ByDefault, Box::new(service_account::ServiceAccount)),
        // Off by default, as upstream; init-cluster.sh enables it, as kubeadm does.
        (Enabled::OnRequest, Box::new(node_restriction::NodeRestriction)),
        (Enabled::ByDefault, Box::new(pod_security::PodSecurity)),
        (Enabled::ByDefault, Box::new(priority::Priority)),
        (Enabled::ByDefault, Box::new(tolerations::DefaultTolerationSeconds::new(c))),
        (Enabled::ByDefault, Box::new(resource_quota::ResourceQuota)),
    ]
}

/// Plugin names this server implements, in chain order.
pub fn known_plugins() -> Vec<&'static str> {
    registry(&Config::default()).iter().map(|(_, p)| p.name()).collect()
}

/// Flags that name plugins wrongly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("{flag} plugin(s) {names:?} unknown (this server implements: {known})")]
    Unknown { flag: &'static str, names: Vec<String>, known: String },
    #[error("{0:?} in enable-admission-plugins and disable-admission-plugins overlapped")]
    Overlap(Vec<String>),
}

/// The enabled plugins, in order.
pub struct AdmissionChain {
    plugins: Vec<Box<dyn AdmissionPlugin>>,
}

impl AdmissionChain {
    /// Upstream's semantics: the default set, plus `enable`, minus `disable`;
    /// a name in neither list keeps its default; unknown names are errors.
    pub fn new(enable: &[String], disable: &[String], config: &Config) -> Result<AdmissionChain, FlagError> {
        let all = registry(config);
        let known: Vec<&str> = all.iter().map(|(_, p)| p.name()).collect();
        let clean = |l: &[String]| -> Vec<String> {
            l.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect()
        };
        let (enable, disable) = (clean(enable), clean(disable));
        for (flag, list) in [("enable-admission-plugins", &enable), ("disable-admission-plugins", &disable)] {
            let unknown: Vec<String> = list.iter().filter(|n| !known.contains(&n.as_str())).cloned().collect();
            if !unknown.is_empty() {
                return Err(FlagError::Unknown { flag, names: unknown, known: known.join(", ") });
            }
        }
        let overlap: Vec<String> = enable.iter().filter(|n| disable.contains(n)).cloned().collect();
        if !overlap.is_empty() {
            return Err(FlagError::Overlap(overlap));
        }
        let plugins = all
            .into_iter()
            .filter(|(default, p)| {
                let name = p.name().to_string();
                (*default == Enabled::ByDefault || enable.contains(&name)) && !disable.contains(&name)
            })
            .map(|(_, p)| p)
            .collect();
        Ok(AdmissionChain { plugins })
    }

    /// The enabled plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p.name() == name)
    }

    /// Runs every mutating hook, in order.
    pub async fn admit(&self, server: &ApiServer, a: &mut Attributes<'_>) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.admit(server, a).await.inspect_err(|e| rejected(p.name(), a, e))?;
        }
        Ok(())
    }

    /// Runs every validating hook, in order; when one rejects, what the
    /// earlier ones reserved is given back.
    pub async fn validate(&self, server: &ApiServer, a: &mut Attributes<'_>) -> Result<(), ApiError> {
        for (i, p) in self.plugins.iter().enumerate() {
            if let Err(e) = p.validate(server, a).await {
                rejected(p.name(), a, &e);
                for q in self.plugins[..i].iter().rev() {
                    q.release(server, a).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Gives back what the validating hooks reserved (see [`AdmissionPlugin::release`]).
    pub async fn release(&self, server: &ApiServer, a: &Attributes<'_>) {
        for p in self.plugins.iter().rev() {
            p.release(server, a).await;
        }
    }

    /// [`AdmissionChain::admit`] where nothing can wait (inside an update's compare-and-swap).
    pub fn admit_now(&self, server: &ApiServer, a: &mut Attributes<'_>) -> Result<(), ApiError> {
        for p in &self.plugins {
            match p.admit(server, a).now_or_never() {
                Some(r) => r.inspect_err(|e| rejected(p.name(), a, e))?,
                None => return Err(would_wait(p.name())),
            }
        }
        Ok(())
    }

    /// [`AdmissionChain::validate`] where nothing can wait (inside an update's compare-and-swap).
    pub fn validate_now(&self, server: &ApiServer, a: &mut Attributes<'_>) -> Result<(), ApiError> {
        for p in &self.plugins {
            match p.validate(server, a).now_or_never() {
                Some(r) => r.inspect_err(|e| rejected(p.name(), a, e))?,
                None => return Err(would_wait(p.name())),
            }
        }
        Ok(())
    }
}

fn would_wait(plugin: &str) -> ApiError {
    ApiError::internal(format!("admission plugin {plugin} cannot admit this request without waiting"))
}

fn rejected(plugin: &str, a: &Attributes<'_>, e: &ApiError) {
    tracing::debug!(
        plugin,
        operation = ?a.operation,
        resource = a.resource.plural,
        namespace = a.namespace,
        name = a.name(),
        user = %a.user.name,
        code = e.code,
        "admission rejected the request"
    );
}

/// The namespace object, from the watch cache.
fn cached_namespace(server: &ApiServer, ns: &str) -> Option<Value> {
    let nsd = server.resources.lookup("", "v1", "namespaces")?;
    server.store.cache(nsd).get(&nsd.key(&server.store.root, "", ns)).map(|o| o.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(enable: &[&str], disable: &[&str]) -> Result<Vec<&'static str>, FlagError> {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        AdmissionChain::new(&s(enable), &s(disable), &Config::default()).map(|c| c.names())
    }

    #[test]
    fn the_default_chain_runs_in_upstream_order() {
        assert_eq!(
            names(&[], &[]).unwrap(),
            [
                "NamespaceLifecycle",
                "LimitRanger",
                "ServiceAccount",
                "PodSecurity",
                "Priority",
                "DefaultTolerationSeconds",
                "ResourceQuota"
            ]
        );
    }

    #[test]
    fn disable_removes_and_flag_order_does_not_change_chain_order() {
        let n = names(&["ResourceQuota", "NodeRestriction"], &["DefaultTolerationSeconds", "LimitRanger"]).unwrap();
        assert_eq!(
            n,
            ["NamespaceLifecycle", "ServiceAccount", "NodeRestriction", "PodSecurity", "Priority", "ResourceQuota"]
        );
    }

    #[test]
    fn unknown_and_overlapping_names_are_errors_naming_them() {
        let e = names(&["NoSuchPlugin", "LimitRanger"], &[]).unwrap_err();
        assert!(e.to_string().contains("NoSuchPlugin") && e.to_string().contains("enable-admission-plugins"), "{e}");
        let e = names(&[], &["Bogus"]).unwrap_err();
        assert!(e.to_string().contains("Bogus") && e.to_string().contains("disable-admission-plugins"), "{e}");
        let e = names(&["Priority"], &["Priority"]).unwrap_err();
        assert_eq!(e, FlagError::Overlap(vec!["Priority".into()]));
        // Empty entries (a trailing comma) are ignored.
        assert_eq!(names(&[""], &[""]).unwrap().len(), 7);
    }
}
