//! Who is asking: upstream's `user.Info`, its well-known names and groups,
//! and the service-account username scheme.

use std::collections::BTreeMap;

/// The group of superusers; `cluster-admin` is bound to it.
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
/// The group of kubelets (the Node authorizer grants them access).
pub const NODES_GROUP: &str = "system:nodes";
/// The group allowed to read health and metrics endpoints.
pub const MONITORING_GROUP: &str = "system:monitoring";
/// Every request that presented no credentials.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Every request that authenticated.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// The user of requests that presented no credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// The apiserver's own loopback identity.
pub const API_SERVER_USER: &str = "system:apiserver";
pub const KUBE_PROXY: &str = "system:kube-proxy";
pub const KUBE_CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "system:kube-scheduler";

/// Prefix of a service account's username: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USERNAME_PREFIX: &str = "system:serviceaccount:";
/// The group of every service account.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of the per-namespace service-account group: `system:serviceaccounts:<ns>`.
pub const SERVICE_ACCOUNT_GROUP_PREFIX: &str = "system:serviceaccounts:";

/// An authenticated (or anonymous) user, upstream's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups, nothing else.
    pub fn new<G: Into<String>>(name: impl Into<String>, groups: impl IntoIterator<Item = G>) -> Self {
        UserInfo { name: name.into(), groups: groups.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    /// `system:anonymous` in `system:unauthenticated`, as the anonymous authenticator makes it.
    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, [ALL_UNAUTHENTICATED])
    }

    /// A service account as the token authenticator makes it, after the
    /// `system:authenticated` group was added: `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>`, `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        let mut groups = service_account_groups(namespace);
        groups.push(ALL_AUTHENTICATED.to_string());
        UserInfo::new(service_account_username(namespace, name), groups)
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USERNAME_PREFIX}{namespace}:{name}")
}

/// The groups a service account of `namespace` belongs to.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![ALL_SERVICE_ACCOUNTS_GROUP.to_string(), format!("{SERVICE_ACCOUNT_GROUP_PREFIX}{namespace}")]
}

/// Splits `system:serviceaccount:<ns>:<name>` into `(ns, name)`; `None` for
/// any other username or when either part is empty or the name holds a `:`.
pub fn split_service_account_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USERNAME_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((namespace, name))
}

/// Whether `username` is the service account `namespace/name`, without
/// building the username (upstream's `serviceaccount.MatchesUsername`).
pub fn service_account_matches(namespace: &str, name: &str, username: &str) -> bool {
    username
        .strip_prefix(SERVICE_ACCOUNT_USERNAME_PREFIX)
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_users_carry_their_namespace_groups() {
        let user = UserInfo::service_account("kube-system", "job-controller");
        assert_eq!(user.name, "system:serviceaccount:kube-system:job-controller");
        assert!(user.in_group("system:serviceaccounts"));
        assert!(user.in_group("system:serviceaccounts:kube-system"));
        assert!(user.in_group("system:authenticated"));
    }

    #[test]
    fn service_account_usernames_split_and_match_exactly() {
        assert_eq!(split_service_account_username("system:serviceaccount:ns:sa"), Some(("ns", "sa")));
        assert_eq!(split_service_account_username("system:serviceaccount:ns:"), None);
        assert_eq!(split_service_account_username("system:serviceaccount:ns:a:b"), None);
        assert_eq!(split_service_account_username("alice"), None);
        assert!(service_account_matches("ns", "sa", "system:serviceaccount:ns:sa"));
        assert!(!service_account_matches("ns", "sa", "system:serviceaccount:ns:sa2"));
        assert!(!service_account_matches("n", "s:sa", "system:serviceaccount:ns:sa"));
        assert!(!service_account_matches("ns", "sa", "system:serviceaccount:nss:sa"));
    }

    #[test]
    fn anonymous_is_unauthenticated() {
        let user = UserInfo::anonymous();
        assert_eq!(user.name, "system:anonymous");
        assert_eq!(user.groups, vec!["system:unauthenticated"]);
    }
}
