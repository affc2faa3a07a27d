//! Where each file goes, relative to the directory: kubeadm's names, so flags written for a
//! kubeadm cluster (`--tls-cert-file=/etc/kubernetes/pki/apiserver.crt`, ...) work unchanged.

/// A certificate and its private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

/// The cluster CA (CN `kubernetes`): signs the apiserver's certificates and every client of the API.
pub const CA: Pair<'static> = Pair { cert: "pki/ca.crt", key: "pki/ca.key" };
/// The apiserver's serving certificate.
pub const APISERVER: Pair<'static> = Pair { cert: "pki/apiserver.crt", key: "pki/apiserver.key" };
/// The apiserver's client certificate towards kubelets.
pub const APISERVER_KUBELET_CLIENT: Pair<'static> =
    Pair { cert: "pki/apiserver-kubelet-client.crt", key: "pki/apiserver-kubelet-client.key" };
/// The CA behind `--requestheader-client-ca-file` (the aggregation layer).
pub const FRONT_PROXY_CA: Pair<'static> = Pair { cert: "pki/front-proxy-ca.crt", key: "pki/front-proxy-ca.key" };
/// The apiserver's client certificate towards extension apiservers.
pub const FRONT_PROXY_CLIENT: Pair<'static> =
    Pair { cert: "pki/front-proxy-client.crt", key: "pki/front-proxy-client.key" };
/// etcd's own CA: signs etcd's serving certificate and its clients.
pub const ETCD_CA: Pair<'static> = Pair { cert: "pki/etcd/ca.crt", key: "pki/etcd/ca.key" };
/// etcd's serving certificate (also valid as a client, as etcd dials itself).
pub const ETCD_SERVER: Pair<'static> = Pair { cert: "pki/etcd/server.crt", key: "pki/etcd/server.key" };
/// The apiserver's client certificate towards etcd.
pub const APISERVER_ETCD_CLIENT: Pair<'static> =
    Pair { cert: "pki/apiserver-etcd-client.crt", key: "pki/apiserver-etcd-client.key" };

/// The service-account token signing key (ECDSA P-256, PKCS#8).
pub const SA_KEY: &str = "pki/sa.key";
/// Its public half (`PUBLIC KEY` PEM), for `--service-account-key-file`.
pub const SA_PUB: &str = "pki/sa.pub";

/// `kubernetes-admin` in `system:masters`.
pub const ADMIN_CONF: &str = "admin.conf";
/// `system:kube-scheduler`.
pub const SCHEDULER_CONF: &str = "scheduler.conf";
/// `system:kube-controller-manager`.
pub const CONTROLLER_MANAGER_CONF: &str = "controller-manager.conf";
/// `system:node:<name>` in `system:nodes`, for the node `init` ran for.
pub const KUBELET_CONF: &str = "kubelet.conf";
/// `system:kube-proxy`.
pub const KUBE_PROXY_CONF: &str = "kube-proxy.conf";

/// A node's kubelet serving certificate and key: `pki/kubelet/<node>.crt` and `.key`.
pub fn kubelet_serving(node_name: &str) -> (String, String) {
    (format!("pki/kubelet/{node_name}.crt"), format!("pki/kubelet/{node_name}.key"))
}

/// Where `node` writes another node's kubelet kubeconfig unless told otherwise.
pub fn node_kubelet_conf(node_name: &str) -> String {
    format!("kubelet-{node_name}.conf")
}
