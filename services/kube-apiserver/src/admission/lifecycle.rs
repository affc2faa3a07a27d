//! NamespaceLifecycle: nothing new in a missing or terminating namespace, and
//! the system namespaces cannot be deleted.

use apimachinery::status::{ApiError, Qualified};

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;
use crate::registry::meta;

pub struct NamespaceLifecycle;

/// Namespaces upstream never lets go.
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn admit<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if a.operation == Operation::Delete && a.is_main("", "namespaces") && IMMORTAL.contains(&a.url_name) {
            return done(Err(ApiError::forbidden(format!(
                "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                a.url_name
            ))));
        }
        // Subresource creates (a TokenRequest, say) concern an object that already exists.
        if a.operation != Operation::Create
            || a.subresource.is_some()
            || !a.resource.namespaced
            || a.namespace.is_empty()
        {
            return done(Ok(()));
        }
        Box::pin(async move { check_create(server, a).await })
    }
}

async fn check_create(server: &ApiServer, a: &Attributes<'_>) -> Result<(), ApiError> {
    let ns = a.namespace;
    let nsd = server
        .resources
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    // A deleted namespace is marked Terminating in status.phase, a selectable
    // field the cache keeps: no JSON parse on this per-create path. A namespace
    // the cache has not seen yet (just created, maybe through another server)
    // is read from etcd.
    let terminating = match server.store.cache(nsd).get(&nsd.key(&server.store.root, "", ns)) {
        Some(o) => o.attrs.field("status.phase") == Some("Terminating"),
        None => {
            let obj = server.store.get(nsd, "", ns).await.map_err(|e| {
                if e.is_not_found() {
                    ApiError::not_found(&Qualified::new("", "namespaces"), ns)
                } else {
                    e
                }
            })?;
            meta::is_terminating(&obj) || obj["status"]["phase"] == "Terminating"
        }
    };
    if terminating {
        return Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            a.resource.plural,
            a.name()
        )));
    }
    Ok(())
}
