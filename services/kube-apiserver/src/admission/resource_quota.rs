//! ResourceQuota: a create is charged to every quota of its namespace before
//! it is stored (a compare-and-swap on each quota's `status.used`, so
//! concurrent creates cannot both fit), and refunded when the write does not
//! happen or the object is deleted. The accounting is in [`crate::quota`].

use futures::future::BoxFuture;

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;

pub struct ResourceQuota;

impl AdmissionPlugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn validate<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if a.operation != Operation::Create || a.subresource.is_some() || a.dry_run {
            return done(Ok(()));
        }
        Box::pin(async move {
            match a.object() {
                Some(obj) => crate::quota::charge(server, a.resource, a.namespace, obj, 1).await,
                None => Ok(()),
            }
        })
    }

    fn release<'a>(&'a self, server: &'a ApiServer, a: &'a Attributes<'_>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let obj = match a.operation {
                Operation::Create if !a.dry_run && a.subresource.is_none() => a.object(),
                Operation::Delete if !a.dry_run => a.old_object,
                _ => None,
            };
            if let Some(obj) = obj {
                if let Err(e) = crate::quota::charge(server, a.resource, a.namespace, obj, -1).await {
                    tracing::warn!(resource = a.resource.plural, name = a.name(), "refunding quota: {e}");
                }
            }
        })
    }
}
