//! The commands: which files there are, which CA signs each, and what each must say.
//!
//! Every file is ensured the same way: read it if it is there; keep it if it still fits;
//! otherwise write it, and report which of the three happened and why. CAs and keys are never
//! replaced (a CA certificate whose key survives is reissued for that key); leaf certificates
//! and kubeconfigs are reissued when they no longer fit, or all of them under `force`.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::cert::{same_public_key, Authority, CertSpec, Key, San, Usage};
use crate::fs::{self, PUBLIC_MODE, SECRET_MODE};
use crate::kubeconfig::ClientConfig;
use crate::options::{
    validate_node_name, Endpoint, InitOptions, NodeOptions, UserOptions, DEFAULT_CLUSTER_NAME, DEFAULT_PORT,
};
use crate::paths::{self, Pair};
use crate::report::{Action, Report};
use crate::Error;

/// Writes whatever of the PKI and kubeconfigs under `opts.dir` is missing or no longer fits.
pub fn init(opts: &InitOptions) -> Result<Report, Error> {
    opts.validate()?;
    let local = opts.local_endpoint();
    let cluster = opts.cluster_endpoint()?;
    let node = opts.node_name.as_str();
    let mut pki = Pki { dir: &opts.dir, force: opts.force, report: Report::default() };

    let ca = pki.ensure_ca(paths::CA, "kubernetes")?;
    pki.ensure_leaf(&ca, paths::APISERVER, &apiserver_spec(opts, &cluster)?)?;
    let kubelet_client = CertSpec::client("kube-apiserver-kubelet-client", &["system:masters"]);
    pki.ensure_leaf(&ca, paths::APISERVER_KUBELET_CLIENT, &kubelet_client)?;

    let front_proxy_ca = pki.ensure_ca(paths::FRONT_PROXY_CA, "front-proxy-ca")?;
    pki.ensure_leaf(&front_proxy_ca, paths::FRONT_PROXY_CLIENT, &CertSpec::client("front-proxy-client", &[]))?;

    let etcd_ca = pki.ensure_ca(paths::ETCD_CA, "etcd-ca")?;
    pki.ensure_leaf(&etcd_ca, paths::ETCD_SERVER, &etcd_server_spec(opts))?;
    pki.ensure_leaf(&etcd_ca, paths::APISERVER_ETCD_CLIENT, &CertSpec::client("kube-apiserver-etcd-client", &[]))?;

    pki.ensure_service_account_keys()?;

    // The scheduler and controller manager run beside this apiserver and talk to it directly,
    // as kubeadm sets them up; the rest go through the shared endpoint.
    let kubeconfigs = [
        (paths::ADMIN_CONF, &cluster, CertSpec::client("kubernetes-admin", &["system:masters"])),
        (paths::SCHEDULER_CONF, &local, CertSpec::client("system:kube-scheduler", &[])),
        (paths::CONTROLLER_MANAGER_CONF, &local, CertSpec::client("system:kube-controller-manager", &[])),
        (paths::KUBELET_CONF, &cluster, node_client_spec(node)),
        (paths::KUBE_PROXY_CONF, &cluster, CertSpec::client("system:kube-proxy", &[])),
    ];
    for (file, endpoint, spec) in kubeconfigs {
        pki.ensure_kubeconfig(&ca, &opts.dir.join(file), &opts.cluster_name, &endpoint.url(), &spec)?;
    }

    let (cert, key) = paths::kubelet_serving(node);
    pki.ensure_leaf(&ca, Pair { cert: &cert, key: &key }, &kubelet_serving_spec(node, &opts.node_ips()))?;
    Ok(pki.report)
}

/// Another node's kubelet credentials, signed by the CA `init` wrote: its serving certificate
/// (`pki/kubelet/<node>.crt`) and its client kubeconfig (`opts.out`, by default
/// `<dir>/kubelet-<node>.conf`).
pub fn node(opts: &NodeOptions) -> Result<Report, Error> {
    validate_node_name(&opts.node_name)?;
    let ca = load_ca(&opts.dir, paths::CA)?;
    let (server, cluster_name) = cluster_of(&opts.dir, opts.server.as_deref(), opts.cluster_name.as_deref())?;
    let mut pki = Pki { dir: &opts.dir, force: opts.force, report: Report::default() };

    let (cert, key) = paths::kubelet_serving(&opts.node_name);
    let serving = kubelet_serving_spec(&opts.node_name, &opts.node_ips);
    pki.ensure_leaf(&ca, Pair { cert: &cert, key: &key }, &serving)?;
    let out = opts.out.clone().unwrap_or_else(|| opts.dir.join(paths::node_kubelet_conf(&opts.node_name)));
    pki.ensure_kubeconfig(&ca, &out, &cluster_name, &server, &node_client_spec(&opts.node_name))?;
    Ok(pki.report)
}

/// A kubeconfig for `opts.user` in `opts.groups`, with a new key and a client certificate signed
/// by the CA under `dir`. Nothing is written; the caller decides where the secret goes.
pub fn user_kubeconfig(dir: &Path, opts: &UserOptions) -> Result<String, Error> {
    if opts.user.trim().is_empty() {
        return Err(Error::InvalidOption { option: "--user", reason: "must not be empty".into() });
    }
    if opts.groups.iter().any(|g| g.trim().is_empty()) {
        return Err(Error::InvalidOption { option: "--groups", reason: "a group name is empty".into() });
    }
    let ca = load_ca(dir, paths::CA)?;
    let (server, cluster_name) = cluster_of(dir, opts.server.as_deref(), opts.cluster_name.as_deref())?;
    let groups: Vec<&str> = opts.groups.iter().map(String::as_str).collect();
    let spec = CertSpec::client(opts.user.as_str(), &groups);
    let key = generate_key(&opts.user)?;
    let cert_pem = ca.issue(&spec, &key).map_err(sign(&opts.user))?;
    let config = ClientConfig {
        cluster_name,
        server,
        ca_pem: ca.cert_pem().to_owned(),
        user: opts.user.clone(),
        cert_pem,
        key_pem: key.pem().to_owned(),
    };
    Ok(config.to_yaml())
}

// === specs ===

fn apiserver_spec(opts: &InitOptions, cluster: &Endpoint) -> Result<CertSpec, Error> {
    let service_ip =
        opts.service_cidr.first_host().map_err(|reason| Error::InvalidOption { option: "--service-cidr", reason })?;
    let mut sans = vec![
        San::Dns(opts.node_name.clone()),
        San::Dns("kubernetes".into()),
        San::Dns("kubernetes.default".into()),
        San::Dns("kubernetes.default.svc".into()),
        San::Dns(format!("kubernetes.default.svc.{}", opts.dns_domain)),
        San::Dns("localhost".into()),
        San::Ip(service_ip),
        San::Ip(opts.advertise_address),
        San::Ip(Ipv4Addr::LOCALHOST.into()),
        cluster.san(),
    ];
    sans.extend(opts.extra_sans()?);
    Ok(CertSpec::server("kube-apiserver", sans))
}

/// etcd serves clients on loopback and the host's addresses, and dials itself as a client.
fn etcd_server_spec(opts: &InitOptions) -> CertSpec {
    let mut sans = vec![
        San::Dns(opts.node_name.clone()),
        San::Dns("localhost".into()),
        San::Ip(Ipv4Addr::LOCALHOST.into()),
        San::Ip(Ipv6Addr::LOCALHOST.into()),
        San::Ip(opts.advertise_address),
    ];
    sans.extend(opts.node_ips().into_iter().map(San::Ip));
    CertSpec { usage: Usage::ServerAndClient, ..CertSpec::server(opts.node_name.as_str(), sans) }
}

/// The Node authorizer's identity for a kubelet.
fn node_client_spec(node: &str) -> CertSpec {
    CertSpec::client(format!("system:node:{node}"), &["system:nodes"])
}

/// The subject the kubelet-serving signer issues: the node's identity, its name and addresses.
fn kubelet_serving_spec(node: &str, ips: &[IpAddr]) -> CertSpec {
    let sans = std::iter::once(San::Dns(node.to_owned())).chain(ips.iter().copied().map(San::Ip));
    CertSpec { organizations: vec!["system:nodes".into()], ..CertSpec::server(format!("system:node:{node}"), sans) }
}

// === impl Pki ===

struct Pki<'a> {
    dir: &'a Path,
    force: bool,
    report: Report,
}

impl Pki<'_> {
    /// How a path shows in the report: relative to the directory when under it.
    fn shown(&self, path: &Path) -> PathBuf {
        path.strip_prefix(self.dir).unwrap_or(path).to_owned()
    }

    fn kept_secret(&mut self, path: &Path) -> Result<(), Error> {
        let action = match fs::restrict(path)? {
            Some(from) => Action::Restricted { from },
            None => Action::Kept,
        };
        self.report.push(self.shown(path), action);
        Ok(())
    }

    /// The key at `rel`, read, or generated and written.
    fn ensure_key(&mut self, rel: &str) -> Result<Key, Error> {
        let path = self.dir.join(rel);
        match fs::read_optional(&path)? {
            Some(pem) => {
                let key = Key::from_pem(&pem).map_err(|source| Error::Key { path: path.clone(), source })?;
                self.kept_secret(&path)?;
                Ok(key)
            }
            None => {
                let key = generate_key(rel)?;
                fs::write(&path, key.pem().as_bytes(), SECRET_MODE)?;
                self.report.push(rel, Action::Created);
                Ok(key)
            }
        }
    }

    fn ensure_ca(&mut self, pair: Pair<'_>, common_name: &str) -> Result<Authority, Error> {
        let cert_path = self.dir.join(pair.cert);
        if cert_path.exists() {
            let ca = load_ca(self.dir, pair)?;
            self.kept_secret(&self.dir.join(pair.key))?;
            self.report.push(pair.cert, Action::Kept);
            return Ok(ca);
        }
        let key = self.ensure_key(pair.key)?;
        let pem = Authority::self_signed(common_name, &key).map_err(sign(pair.cert))?;
        let ca = Authority::load(&pem, key).map_err(|unfit| Error::Ca { path: cert_path.clone(), reason: unfit.0 })?;
        fs::write(&cert_path, pem.as_bytes(), PUBLIC_MODE)?;
        self.report.push(pair.cert, Action::Created);
        Ok(ca)
    }

    fn ensure_leaf(&mut self, ca: &Authority, pair: Pair<'_>, spec: &CertSpec) -> Result<(), Error> {
        let key = self.ensure_key(pair.key)?;
        let path = self.dir.join(pair.cert);
        let action = match fs::read_optional(&path)? {
            None => Action::Created,
            Some(_) if self.force => Action::Replaced { reason: "--force".into() },
            Some(pem) => match ca.check(spec, &pem, &key) {
                Ok(()) => {
                    self.report.push(pair.cert, Action::Kept);
                    return Ok(());
                }
                Err(unfit) => Action::Replaced { reason: unfit.0 },
            },
        };
        let pem = ca.issue(spec, &key).map_err(sign(pair.cert))?;
        fs::write(&path, pem.as_bytes(), PUBLIC_MODE)?;
        self.report.push(pair.cert, action);
        Ok(())
    }

    fn ensure_service_account_keys(&mut self) -> Result<(), Error> {
        let key = self.ensure_key(paths::SA_KEY)?;
        let path = self.dir.join(paths::SA_PUB);
        let action = match fs::read_optional(&path)? {
            None => Action::Created,
            Some(pem) if same_public_key(&pem, &key) => {
                self.report.push(paths::SA_PUB, Action::Kept);
                return Ok(());
            }
            Some(_) => Action::Replaced { reason: format!("not the public half of {}", paths::SA_KEY) },
        };
        fs::write(&path, key.public_pem().as_bytes(), PUBLIC_MODE)?;
        self.report.push(paths::SA_PUB, action);
        Ok(())
    }

    /// A kubeconfig is a leaf certificate and key with the CA and server beside them: its key is
    /// kept when it reads, its certificate when it fits, and the file when nothing changed.
    fn ensure_kubeconfig(
        &mut self,
        ca: &Authority,
        path: &Path,
        cluster_name: &str,
        server: &str,
        spec: &CertSpec,
    ) -> Result<(), Error> {
        let shown = self.shown(path);
        let existing = fs::read_optional(path)?.map(|text| ClientConfig::from_yaml(&text));
        let old = existing.as_ref().and_then(|parsed| parsed.as_ref().ok());
        let mut reasons = Vec::new();

        let key = match old.map(|old| Key::from_pem(&old.key_pem)) {
            Some(Ok(key)) => key,
            Some(Err(_)) => {
                reasons.push("client-key-data is not a private key".to_owned());
                generate_key(shown.display())?
            }
            None => generate_key(shown.display())?,
        };
        let kept_cert = match old {
            None => None,
            Some(_) if self.force => {
                reasons.push("--force".to_owned());
                None
            }
            Some(old) => match ca.check(spec, &old.cert_pem, &key) {
                Ok(()) => Some(old.cert_pem.clone()),
                Err(unfit) => {
                    reasons.push(format!("client certificate: {unfit}"));
                    None
                }
            },
        };
        let cert_pem = match kept_cert {
            Some(pem) => pem,
            None => ca.issue(spec, &key).map_err(sign(shown.display()))?,
        };
        let want = ClientConfig {
            cluster_name: cluster_name.to_owned(),
            server: server.to_owned(),
            ca_pem: ca.cert_pem().to_owned(),
            user: spec.common_name.clone(),
            cert_pem,
            key_pem: key.pem().to_owned(),
        };

        let action = match existing {
            None => Action::Created,
            Some(Err(e)) => Action::Replaced { reason: format!("unreadable: {e}") },
            Some(Ok(old)) if old == want => return self.kept_secret(path),
            Some(Ok(old)) => {
                if old.server != want.server {
                    reasons.push(format!("server was {}", old.server));
                }
                if old.ca_pem != want.ca_pem {
                    reasons.push("certificate-authority-data is not the CA's".into());
                }
                if old.cluster_name != want.cluster_name || old.user != want.user {
                    reasons.push(format!("context was {}", old.context_name()));
                }
                if reasons.is_empty() {
                    reasons.push("contents differ".into());
                }
                Action::Replaced { reason: reasons.join("; ") }
            }
        };
        fs::write(path, want.to_yaml().as_bytes(), SECRET_MODE)?;
        self.report.push(shown, action);
        Ok(())
    }
}

/// A CA that must already be there, certificate and key.
fn load_ca(dir: &Path, pair: Pair<'_>) -> Result<Authority, Error> {
    let cert_path = dir.join(pair.cert);
    let key_path = dir.join(pair.key);
    let cert = fs::read_optional(&cert_path)?.ok_or_else(|| Error::MissingCa { path: cert_path.clone() })?;
    let key = fs::read_optional(&key_path)?.ok_or_else(|| Error::MissingCa { path: key_path.clone() })?;
    let key = Key::from_pem(&key).map_err(|source| Error::Key { path: key_path, source })?;
    Authority::load(&cert, key).map_err(|unfit| Error::Ca { path: cert_path, reason: unfit.0 })
}

/// The server URL and cluster name for a new kubeconfig: as given, else admin.conf's.
fn cluster_of(dir: &Path, server: Option<&str>, cluster_name: Option<&str>) -> Result<(String, String), Error> {
    let admin_path = dir.join(paths::ADMIN_CONF);
    let admin = match (server, cluster_name) {
        (Some(_), Some(_)) => None,
        _ => fs::read_optional(&admin_path)?
            .map(|text| ClientConfig::from_yaml(&text))
            .transpose()
            .map_err(|source| Error::Kubeconfig { path: admin_path.clone(), source })?,
    };
    let server = match server {
        Some(server) => Endpoint::parse(server, DEFAULT_PORT)
            .map_err(|reason| Error::InvalidOption { option: "--server", reason })?
            .url(),
        None => admin.as_ref().map(|a| a.server.clone()).ok_or(Error::NoServer { path: admin_path })?,
    };
    let cluster_name = cluster_name
        .map(str::to_owned)
        .or_else(|| admin.map(|a| a.cluster_name))
        .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into());
    Ok((server, cluster_name))
}

fn generate_key(what: impl Display) -> Result<Key, Error> {
    Key::generate().map_err(|source| Error::Sign { what: format!("a key for {what}"), source })
}

fn sign(what: impl Display) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Sign { what: what.to_string(), source }
}

#[cfg(test)]
mod tests;
