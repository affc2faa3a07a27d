//! What is being asked: upstream's `authorizer.Attributes` and `Decision`.

use crate::user::UserInfo;

/// The request an authorizer decides on (upstream's `authorizer.AttributesRecord`).
///
/// Resource requests fill `api_group`, `api_version`, `resource`, `subresource`,
/// `name` and `namespace` (empty for cluster-scoped requests and for lists across
/// namespaces); non-resource requests (`/healthz`, `/api`, `/version`) fill `path`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// The lowercase API verb: `get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`, or a special one (`bind`, `escalate`,
    /// `impersonate`, `use`, `approve`, `sign`); for non-resource requests the HTTP
    /// method's lowercase name.
    pub verb: String,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub is_resource_request: bool,
    /// The URL path of a non-resource request.
    pub path: String,
}

impl Attributes {
    /// A resource request for `verb` on `resource` in `api_group`, cluster-wide
    /// until [`in_namespace`](Self::in_namespace) narrows it.
    pub fn resource(
        user: UserInfo,
        verb: impl Into<String>,
        api_group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Attributes {
            user,
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            is_resource_request: true,
            ..Default::default()
        }
    }

    /// A non-resource request for `verb` on `path`.
    pub fn non_resource(user: UserInfo, verb: impl Into<String>, path: impl Into<String>) -> Self {
        Attributes { user, verb: verb.into(), path: path.into(), ..Default::default() }
    }

    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    #[must_use]
    pub fn with_subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = subresource.into();
        self
    }

    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// Upstream's `IsReadOnly`: `get`, `list` and `watch`.
    pub fn is_read_only(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// `resource/subresource`, or just `resource`: what RBAC rules match against.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// An authorizer's answer (upstream's `authorizer.Decision`). RBAC itself only
/// ever allows or has no opinion; `Deny` is for authorizers in a chain that may
/// refuse outright (a union authorizer stops at the first Allow or Deny).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_make_resource_and_non_resource_requests() {
        let attrs = Attributes::resource(UserInfo::anonymous(), "create", "", "pods")
            .in_namespace("default")
            .named("web")
            .with_subresource("exec")
            .with_api_version("v1");
        assert!(attrs.is_resource_request);
        assert_eq!(attrs.combined_resource(), "pods/exec");
        assert!(!attrs.is_read_only());

        let attrs = Attributes::non_resource(UserInfo::anonymous(), "get", "/healthz");
        assert!(!attrs.is_resource_request);
        assert!(attrs.is_read_only());
        assert_eq!(attrs.path, "/healthz");
    }
}
