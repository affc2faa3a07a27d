//! The ClusterRole aggregation controller: a ClusterRole with an
//! `aggregationRule` gets the rules of every ClusterRole its selectors match
//! (so `admin`/`edit`/`view` pick up roles labelled `aggregate-to-*`). The
//! aggregation itself is the `rbac` crate's, shared with the apiserver.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::informer::Factory;
use crate::queue::WorkQueue;
use crate::util;

#[derive(Debug, thiserror::Error)]
#[error("updating aggregated ClusterRole {role}: {source}")]
pub struct Error {
    role: String,
    #[source]
    source: kube::Error,
}

pub struct ClusterRoleAggregationController {
    client: kube::Client,
    roles: Store<ClusterRole>,
    queue: WorkQueue,
}

impl ClusterRoleAggregationController {
    pub fn register(factory: &Factory, client: kube::Client, queue: WorkQueue) -> Arc<Self> {
        let roles = factory.cluster_roles();
        let this = Arc::new(ClusterRoleAggregationController { client, roles: roles.store(), queue });
        let me = this.clone();
        // Any ClusterRole change may change what an aggregating role selects.
        roles.add_handler(move |_| {
            for role in me.roles.state().iter().filter(|r| r.aggregation_rule.is_some()) {
                me.queue.add(role.metadata.name.clone().unwrap_or_default());
            }
        });
        this
    }

    pub fn run(self: &Arc<Self>) {
        // Handlers run during the initial list before the store is readable: start with every aggregating role.
        for role in self.roles.state().iter().filter(|r| r.aggregation_rule.is_some()) {
            self.queue.add(role.metadata.name.clone().unwrap_or_default());
        }
        let me = self.clone();
        self.queue.run_workers(1, move |name| {
            let me = me.clone();
            async move { me.sync(&name).await }
        });
    }

    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(role) = self.roles.get(&ObjectRef::new(name)) else { return Ok(None) };
        let all: Vec<ClusterRole> = self.roles.state().iter().map(|r| (**r).clone()).collect();
        let rules = match rbac::aggregation::aggregate_one(&role, &all) {
            None => return Ok(None),
            Some(Err(e)) => {
                tracing::warn!(clusterrole = name, "invalid aggregation rule: {e}");
                return Ok(None);
            }
            Some(Ok(rules)) => rules,
        };
        if role.rules.clone().unwrap_or_default() == rules {
            tracing::debug!(clusterrole = name, rules = rules.len(), "aggregated rules unchanged");
            return Ok(None);
        }
        tracing::info!(clusterrole = name, rules = rules.len(), "updating aggregated rules");
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::api_code(&e), Some(404 | 409)) => Ok(Some(Duration::from_millis(100))),
            Err(source) => Err(Error { role: name.to_string(), source }),
        }
    }
}
