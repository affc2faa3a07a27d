use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

const KEYS: &[&str] = &[
    "pki/ca.key",
    "pki/apiserver.key",
    "pki/apiserver-kubelet-client.key",
    "pki/front-proxy-ca.key",
    "pki/front-proxy-client.key",
    "pki/etcd/ca.key",
    "pki/etcd/server.key",
    "pki/apiserver-etcd-client.key",
    "pki/sa.key",
    "pki/kubelet/node1.key",
];
const CERTS: &[&str] = &[
    "pki/ca.crt",
    "pki/apiserver.crt",
    "pki/apiserver-kubelet-client.crt",
    "pki/front-proxy-ca.crt",
    "pki/front-proxy-client.crt",
    "pki/etcd/ca.crt",
    "pki/etcd/server.crt",
    "pki/apiserver-etcd-client.crt",
    "pki/sa.pub",
    "pki/kubelet/node1.crt",
];
const KUBECONFIGS: &[&str] =
    &["admin.conf", "scheduler.conf", "controller-manager.conf", "kubelet.conf", "kube-proxy.conf"];

fn opts(dir: &Path) -> InitOptions {
    let mut opts = InitOptions::new(dir, "10.0.0.5".parse().unwrap(), "node1");
    opts.cert_extra_sans = vec!["host1".into(), "1.2.3.4".into()];
    opts.control_plane_endpoint = Some("https://lb.example:6443".into());
    opts
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn mode(dir: &Path, rel: &str) -> u32 {
    std::fs::metadata(dir.join(rel)).unwrap().permissions().mode() & 0o777
}

/// Every file's contents, to tell what a run changed.
fn snapshot(dir: &Path) -> BTreeMap<&'static str, String> {
    KEYS.iter().chain(CERTS).chain(KUBECONFIGS).map(|rel| (*rel, read(dir, rel))).collect()
}

fn changed(before: &BTreeMap<&'static str, String>, dir: &Path) -> Vec<&'static str> {
    snapshot(dir).into_iter().filter(|(rel, text)| before[rel] != *text).map(|(rel, _)| rel).collect()
}

fn kubeconfig(dir: &Path, rel: &str) -> ClientConfig {
    ClientConfig::from_yaml(&read(dir, rel)).unwrap()
}

fn check_kubeconfig(ca: &Authority, config: &ClientConfig, spec: &CertSpec) {
    assert_eq!(config.ca_pem, ca.cert_pem());
    assert_eq!(config.user, spec.common_name);
    let key = Key::from_pem(&config.key_pem).unwrap();
    assert_eq!(ca.check(spec, &config.cert_pem, &key), Ok(()), "{}", config.user);
}

#[test]
fn init_writes_every_file_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let report = init(&opts(dir.path())).unwrap();
    for rel in KEYS.iter().chain(KUBECONFIGS) {
        assert_eq!(mode(dir.path(), rel), 0o600, "{rel}");
        assert_eq!(report.action(rel), Some(&Action::Created), "{rel}");
    }
    for rel in CERTS {
        assert_eq!(mode(dir.path(), rel), 0o644, "{rel}");
        assert_eq!(report.action(rel), Some(&Action::Created), "{rel}");
    }
    assert_eq!(report.entries.len(), KEYS.len() + CERTS.len() + KUBECONFIGS.len());
}

#[test]
fn init_issues_the_upstream_identities_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(dir.path());
    let _ = init(&opts).unwrap();
    let ca = load_ca(dir.path(), paths::CA).unwrap();
    let etcd_ca = load_ca(dir.path(), paths::ETCD_CA).unwrap();
    let leaf = |ca: &Authority, pair: Pair<'_>, spec: &CertSpec| {
        let key = Key::from_pem(&read(dir.path(), pair.key)).unwrap();
        assert_eq!(ca.check(spec, &read(dir.path(), pair.cert), &key), Ok(()), "{}", pair.cert);
    };

    let ip = |s: &str| San::Ip(s.parse().unwrap());
    let dns = |s: &str| San::Dns(s.into());
    let apiserver = CertSpec::server(
        "kube-apiserver",
        [
            dns("kubernetes"),
            dns("kubernetes.default"),
            dns("kubernetes.default.svc"),
            dns("kubernetes.default.svc.cluster.local"),
            dns("localhost"),
            dns("node1"),
            dns("lb.example"),
            dns("host1"),
            ip("10.96.0.1"),
            ip("127.0.0.1"),
            ip("10.0.0.5"),
            ip("1.2.3.4"),
        ],
    );
    leaf(&ca, paths::APISERVER, &apiserver);
    leaf(&ca, paths::APISERVER_KUBELET_CLIENT, &CertSpec::client("kube-apiserver-kubelet-client", &["system:masters"]));
    let etcd_server = CertSpec {
        usage: Usage::ServerAndClient,
        ..CertSpec::server("node1", [ip("127.0.0.1"), ip("::1"), dns("localhost"), dns("node1"), ip("10.0.0.5")])
    };
    leaf(&etcd_ca, paths::ETCD_SERVER, &etcd_server);
    leaf(&etcd_ca, paths::APISERVER_ETCD_CLIENT, &CertSpec::client("kube-apiserver-etcd-client", &[]));
    let serving = CertSpec {
        organizations: vec!["system:nodes".into()],
        ..CertSpec::server("system:node:node1", [dns("node1"), ip("10.0.0.5")])
    };
    leaf(&ca, Pair { cert: "pki/kubelet/node1.crt", key: "pki/kubelet/node1.key" }, &serving);

    let admin = kubeconfig(dir.path(), "admin.conf");
    check_kubeconfig(&ca, &admin, &CertSpec::client("kubernetes-admin", &["system:masters"]));
    assert_eq!(admin.server, "https://lb.example:6443");
    assert_eq!(admin.context_name(), "kubernetes-admin@kubernetes");
    let scheduler = kubeconfig(dir.path(), "scheduler.conf");
    check_kubeconfig(&ca, &scheduler, &CertSpec::client("system:kube-scheduler", &[]));
    assert_eq!(scheduler.server, "https://10.0.0.5:6443");
    let manager = kubeconfig(dir.path(), "controller-manager.conf");
    check_kubeconfig(&ca, &manager, &CertSpec::client("system:kube-controller-manager", &[]));
    let kubelet = kubeconfig(dir.path(), "kubelet.conf");
    check_kubeconfig(&ca, &kubelet, &CertSpec::client("system:node:node1", &["system:nodes"]));
    assert_eq!(kubelet.server, "https://lb.example:6443");
    check_kubeconfig(&ca, &kubeconfig(dir.path(), "kube-proxy.conf"), &CertSpec::client("system:kube-proxy", &[]));

    let sa = Key::from_pem(&read(dir.path(), paths::SA_KEY)).unwrap();
    assert!(same_public_key(&read(dir.path(), paths::SA_PUB), &sa));
}

#[test]
fn a_second_init_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let before = snapshot(dir.path());
    let report = init(&opts(dir.path())).unwrap();
    assert!(!report.changed(), "{report}");
    assert!(report.entries.iter().all(|e| e.action == Action::Kept));
    assert_eq!(changed(&before, dir.path()), Vec::<&str>::new());
}

#[test]
fn a_missing_certificate_is_issued_for_its_kept_key_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let before = snapshot(dir.path());
    std::fs::remove_file(dir.path().join("pki/apiserver.crt")).unwrap();
    std::fs::remove_file(dir.path().join("scheduler.conf")).unwrap();

    let report = init(&opts(dir.path())).unwrap();
    assert_eq!(report.action("pki/apiserver.crt"), Some(&Action::Created));
    assert_eq!(report.action("pki/apiserver.key"), Some(&Action::Kept));
    assert_eq!(report.action("scheduler.conf"), Some(&Action::Created));
    assert_eq!(report.entries.iter().filter(|e| e.action != Action::Kept).count(), 2, "{report}");
    assert_eq!(changed(&before, dir.path()), ["pki/apiserver.crt", "scheduler.conf"]);
}

#[test]
fn force_reissues_leaves_and_keeps_cas_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let before = snapshot(dir.path());
    let report = init(&InitOptions { force: true, ..opts(dir.path()) }).unwrap();

    assert_eq!(report.action("pki/apiserver.crt"), Some(&Action::Replaced { reason: "--force".into() }));
    let mut changed = changed(&before, dir.path());
    changed.sort_unstable();
    let mut want: Vec<&str> = CERTS
        .iter()
        .chain(KUBECONFIGS)
        .copied()
        .filter(|rel| !["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt", "pki/sa.pub"].contains(rel))
        .collect();
    want.sort_unstable();
    assert_eq!(changed, want);
    for rel in KUBECONFIGS {
        let old = ClientConfig::from_yaml(&before[rel]).unwrap();
        let new = kubeconfig(dir.path(), rel);
        assert_eq!(old.key_pem, new.key_pem, "{rel} keeps its key");
        assert_ne!(old.cert_pem, new.cert_pem, "{rel} gets a new certificate");
    }
}

#[test]
fn a_new_advertise_address_replaces_what_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let report = init(&InitOptions { advertise_address: "10.0.0.6".parse().unwrap(), ..opts(dir.path()) }).unwrap();

    let replaced: BTreeMap<String, String> = report
        .entries
        .iter()
        .filter_map(|e| match &e.action {
            Action::Replaced { reason } => Some((e.path.display().to_string(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(replaced["pki/apiserver.crt"], "lacks SAN IP:10.0.0.6");
    assert_eq!(replaced["pki/etcd/server.crt"], "lacks SAN IP:10.0.0.6");
    assert_eq!(replaced["pki/kubelet/node1.crt"], "lacks SAN IP:10.0.0.6");
    assert_eq!(replaced["scheduler.conf"], "server was https://10.0.0.5:6443");
    assert_eq!(replaced["controller-manager.conf"], "server was https://10.0.0.5:6443");
    assert_eq!(replaced.len(), 5, "{report}");
    assert_eq!(kubeconfig(dir.path(), "scheduler.conf").server, "https://10.0.0.6:6443");
}

#[test]
fn a_lost_ca_certificate_is_reissued_for_its_key_and_the_leaves_still_fit() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    std::fs::remove_file(dir.path().join("pki/ca.crt")).unwrap();
    let report = init(&opts(dir.path())).unwrap();
    assert_eq!(report.action("pki/ca.crt"), Some(&Action::Created));
    assert_eq!(report.action("pki/apiserver.crt"), Some(&Action::Kept));
    // The kubeconfigs embed the CA, so they are rewritten, with their certificates kept.
    let Some(Action::Replaced { reason }) = report.action("admin.conf") else { panic!("{report}") };
    assert_eq!(reason, "certificate-authority-data is not the CA's");
}

#[test]
fn a_new_ca_replaces_every_leaf_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    std::fs::remove_file(dir.path().join("pki/ca.crt")).unwrap();
    std::fs::remove_file(dir.path().join("pki/ca.key")).unwrap();
    let report = init(&opts(dir.path())).unwrap();
    let Some(Action::Replaced { reason }) = report.action("pki/apiserver.crt") else { panic!("{report}") };
    assert!(reason.starts_with("not signed by this CA"), "{reason}");
    let Some(Action::Replaced { reason }) = report.action("kubelet.conf") else { panic!("{report}") };
    assert!(reason.starts_with("client certificate: not signed by this CA"), "{reason}");
    assert_eq!(report.action("pki/etcd/server.crt"), Some(&Action::Kept));
    assert_eq!(report.action("pki/apiserver.key"), Some(&Action::Kept));
}

#[test]
fn a_ca_without_its_key_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    std::fs::remove_file(dir.path().join("pki/etcd/ca.key")).unwrap();
    let err = init(&opts(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::MissingCa { path } if path.ends_with("pki/etcd/ca.key")), "{err}");
    assert!(!dir.path().join("pki/etcd/ca.key").exists());
}

#[test]
fn an_unreadable_key_is_an_error_not_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    std::fs::write(dir.path().join("pki/sa.key"), "garbage").unwrap();
    let err = init(&opts(dir.path())).unwrap_err();
    assert!(matches!(&err, Error::Key { path, .. } if path.ends_with("pki/sa.key")), "{err}");
    assert_eq!(read(dir.path(), "pki/sa.key"), "garbage");
}

#[test]
fn a_kept_key_readable_by_others_is_narrowed() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let path = dir.path().join("pki/ca.key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = init(&opts(dir.path())).unwrap();
    assert_eq!(report.action("pki/ca.key"), Some(&Action::Restricted { from: 0o644 }));
    assert_eq!(mode(dir.path(), "pki/ca.key"), 0o600);
}

#[test]
fn bad_options_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("k");
    for opts in [
        InitOptions { node_name: "../x".into(), ..opts(&root) },
        InitOptions { cert_extra_sans: vec!["a b".into()], ..opts(&root) },
        InitOptions { control_plane_endpoint: Some("http://lb:6443".into()), ..opts(&root) },
        InitOptions { service_cidr: "10.0.0.1/32".parse().unwrap(), ..opts(&root) },
    ] {
        assert!(matches!(init(&opts), Err(Error::InvalidOption { .. })));
        assert!(!root.exists());
    }
}

#[test]
fn node_adds_another_nodes_kubelet_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let mut node_opts = NodeOptions::new(dir.path(), "node2");
    node_opts.node_ips = vec!["10.0.0.7".parse().unwrap()];
    let report = node(&node_opts).unwrap();
    assert_eq!(report.action("pki/kubelet/node2.crt"), Some(&Action::Created));
    assert_eq!(report.action("kubelet-node2.conf"), Some(&Action::Created));
    assert_eq!(mode(dir.path(), "kubelet-node2.conf"), 0o600);
    assert_eq!(mode(dir.path(), "pki/kubelet/node2.key"), 0o600);

    let ca = load_ca(dir.path(), paths::CA).unwrap();
    let config = kubeconfig(dir.path(), "kubelet-node2.conf");
    check_kubeconfig(&ca, &config, &CertSpec::client("system:node:node2", &["system:nodes"]));
    assert_eq!(config.server, "https://lb.example:6443", "taken from admin.conf");
    let serving = kubelet_serving_spec("node2", &node_opts.node_ips);
    let key = Key::from_pem(&read(dir.path(), "pki/kubelet/node2.key")).unwrap();
    assert_eq!(ca.check(&serving, &read(dir.path(), "pki/kubelet/node2.crt"), &key), Ok(()));

    assert!(!node(&node_opts).unwrap().changed());
}

#[test]
fn node_and_user_need_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let err = node(&NodeOptions::new(dir.path(), "node2")).unwrap_err();
    assert!(matches!(&err, Error::MissingCa { path } if path.ends_with("pki/ca.crt")), "{err}");
    let err = user_kubeconfig(dir.path(), &UserOptions::new("alice", ["dev"])).unwrap_err();
    assert!(matches!(err, Error::MissingCa { .. }));
}

#[test]
fn user_kubeconfig_names_the_user_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let _ = init(&opts(dir.path())).unwrap();
    let yaml = user_kubeconfig(dir.path(), &UserOptions::new("alice", ["dev", "qa"])).unwrap();
    let config = ClientConfig::from_yaml(&yaml).unwrap();
    let ca = load_ca(dir.path(), paths::CA).unwrap();
    check_kubeconfig(&ca, &config, &CertSpec::client("alice", &["dev", "qa"]));
    assert_eq!(config.server, "https://lb.example:6443");
    assert_eq!(config.context_name(), "alice@kubernetes");

    std::fs::remove_file(dir.path().join("admin.conf")).unwrap();
    let err = user_kubeconfig(dir.path(), &UserOptions::new("alice", ["dev"])).unwrap_err();
    assert!(matches!(err, Error::NoServer { .. }));
    let opts = UserOptions { server: Some("10.0.0.5".into()), ..UserOptions::new("alice", Vec::<String>::new()) };
    let config = ClientConfig::from_yaml(&user_kubeconfig(dir.path(), &opts).unwrap()).unwrap();
    assert_eq!(config.server, "https://10.0.0.5:6443");
    assert_eq!(config.cluster_name, "kubernetes");
}
