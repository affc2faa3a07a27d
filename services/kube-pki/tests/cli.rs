//! Runs the built `kube-pki` binary into a temporary directory and checks the result with
//! openssl (as an operator would) and with rustls (as our apiserver loads and verifies it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

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

const DAY: u64 = 24 * 60 * 60;

fn kube_pki(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kube-pki")).args(args).output().expect("running kube-pki")
}

fn init(dir: &Path, extra: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "init",
        "--dir",
        dir,
        "--cluster-name",
        "kubernetes",
        "--apiserver-advertise-address",
        "10.0.0.5",
        "--apiserver-cert-extra-sans",
        "host1,1.2.3.4",
        "--service-cidr",
        "10.96.0.0/12",
        "--control-plane-endpoint",
        "https://10.0.0.5:6443",
        "--node-name",
        "node1",
    ];
    args.extend_from_slice(extra);
    succeed(kube_pki(&args))
}

fn succeed(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// openssl's stdout; panics with its stderr unless it succeeds.
fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn path(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_str().unwrap().to_owned()
}

fn text(dir: &Path, cert: &str) -> String {
    openssl(&["x509", "-noout", "-text", "-in", &path(dir, cert)])
}

/// `CN=...,O=...` (RFC 2253 order: last RDN first).
fn subject(cert: &str) -> String {
    let out = openssl(&["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", cert]);
    out.trim().strip_prefix("subject=").unwrap().to_owned()
}

fn verify(ca: &str, cert: &str) {
    let out = openssl(&["verify", "-CAfile", ca, cert]);
    assert_eq!(out.trim(), format!("{cert}: OK"));
}

/// Whether `cert` is still valid `seconds` from now.
fn valid_in(cert: &str, seconds: u64) -> bool {
    Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &seconds.to_string(), "-in", cert])
        .output()
        .unwrap()
        .status
        .success()
}

fn mode(dir: &Path, rel: &str) -> u32 {
    std::fs::metadata(dir.join(rel)).unwrap().permissions().mode() & 0o777
}

/// A kubeconfig's server and decoded data fields, each PEM also written beside it for openssl.
struct Kubeconfig {
    server: String,
    ca: PathBuf,
    cert: PathBuf,
    key_pem: String,
}

fn kubeconfig(file: &Path, scratch: &Path) -> Kubeconfig {
    let yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(yaml["kind"], "Config");
    let cluster = &yaml["clusters"][0]["cluster"];
    let user = &yaml["users"][0]["user"];
    let decode = |field: &serde_yaml::Value| {
        String::from_utf8(BASE64.decode(field.as_str().expect("a data field")).unwrap()).unwrap()
    };
    let name = file.file_name().unwrap().to_str().unwrap();
    let ca = scratch.join(format!("{name}.ca.crt"));
    let cert = scratch.join(format!("{name}.crt"));
    std::fs::write(&ca, decode(&cluster["certificate-authority-data"])).unwrap();
    std::fs::write(&cert, decode(&user["client-certificate-data"])).unwrap();
    let key_pem = decode(&user["client-key-data"]);
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    Kubeconfig { server: cluster["server"].as_str().unwrap().to_owned(), ca, cert, key_pem }
}

#[test]
fn init_writes_a_pki_that_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubernetes");
    let dir = dir.as_path();
    let report = init(dir, &[]);
    assert!(report.lines().all(|l| l.starts_with("created ")), "{report}");

    for rel in KEYS.iter().chain(KUBECONFIGS) {
        assert_eq!(mode(dir, rel), 0o600, "{rel}");
    }
    for rel in CERTS {
        assert_eq!(mode(dir, rel), 0o644, "{rel}");
    }

    // CAs: ten years, CA:TRUE, may sign.
    for ca in ["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt"] {
        let out = text(dir, ca);
        assert!(out.contains("CA:TRUE"), "{ca}: {out}");
        assert!(out.contains("Certificate Sign"), "{ca}: {out}");
        assert!(valid_in(&path(dir, ca), 3649 * DAY) && !valid_in(&path(dir, ca), 3651 * DAY), "{ca}");
    }
    assert_eq!(subject(&path(dir, "pki/ca.crt")), "CN=kubernetes");
    assert_eq!(subject(&path(dir, "pki/etcd/ca.crt")), "CN=etcd-ca");

    // The apiserver's serving certificate: chains to the CA, one year, every name.
    let (ca, etcd_ca) = (path(dir, "pki/ca.crt"), path(dir, "pki/etcd/ca.crt"));
    verify(&ca, &path(dir, "pki/apiserver.crt"));
    let apiserver = text(dir, "pki/apiserver.crt");
    for san in [
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster.local,",
        "DNS:localhost,",
        "DNS:node1,",
        "DNS:host1",
        "IP Address:10.96.0.1,",
        "IP Address:127.0.0.1,",
        "IP Address:10.0.0.5,",
        "IP Address:1.2.3.4",
    ] {
        assert!(apiserver.contains(san), "apiserver.crt lacks {san}: {apiserver}");
    }
    assert!(apiserver.contains("TLS Web Server Authentication"));
    assert!(!apiserver.contains("TLS Web Client Authentication"));
    assert!(apiserver.contains("CA:FALSE"));
    assert!(apiserver.contains("Digital Signature"));
    assert!(apiserver.contains("ASN1 OID: prime256v1"));
    let leaf = path(dir, "pki/apiserver.crt");
    assert!(valid_in(&leaf, 364 * DAY) && !valid_in(&leaf, 366 * DAY));

    // The apiserver's client certificates.
    verify(&ca, &path(dir, "pki/apiserver-kubelet-client.crt"));
    assert_eq!(
        subject(&path(dir, "pki/apiserver-kubelet-client.crt")),
        "CN=kube-apiserver-kubelet-client,O=system:masters"
    );
    assert!(text(dir, "pki/apiserver-kubelet-client.crt").contains("TLS Web Client Authentication"));
    verify(&etcd_ca, &path(dir, "pki/apiserver-etcd-client.crt"));
    assert_eq!(subject(&path(dir, "pki/apiserver-etcd-client.crt")), "CN=kube-apiserver-etcd-client");
    verify(&path(dir, "pki/front-proxy-ca.crt"), &path(dir, "pki/front-proxy-client.crt"));

    // etcd: loopback and the host's addresses, server and client.
    verify(&etcd_ca, &path(dir, "pki/etcd/server.crt"));
    let etcd = text(dir, "pki/etcd/server.crt");
    for san in
        ["DNS:localhost", "DNS:node1", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "IP Address:10.0.0.5"]
    {
        assert!(etcd.contains(san), "etcd/server.crt lacks {san}: {etcd}");
    }
    assert!(etcd.contains("TLS Web Server Authentication, TLS Web Client Authentication"));

    // The kubelet's serving certificate.
    verify(&ca, &path(dir, "pki/kubelet/node1.crt"));
    assert_eq!(subject(&path(dir, "pki/kubelet/node1.crt")), "CN=system:node:node1,O=system:nodes");
    let kubelet = text(dir, "pki/kubelet/node1.crt");
    assert!(kubelet.contains("DNS:node1, IP Address:10.0.0.5"), "{kubelet}");

    // The service-account key pair: ECDSA P-256, sa.pub the public half of sa.key.
    let public = openssl(&["pkey", "-in", &path(dir, "pki/sa.key"), "-pubout"]);
    assert_eq!(public, std::fs::read_to_string(dir.join("pki/sa.pub")).unwrap());
    let sa = openssl(&["pkey", "-pubin", "-in", &path(dir, "pki/sa.pub"), "-noout", "-text"]);
    assert!(sa.contains("ASN1 OID: prime256v1"), "{sa}");

    // Kubeconfigs: the three data fields, the server, the upstream identities.
    let scratch = tmp.path();
    for (file, who, server) in [
        ("admin.conf", "CN=kubernetes-admin,O=system:masters", "https://10.0.0.5:6443"),
        ("scheduler.conf", "CN=system:kube-scheduler", "https://10.0.0.5:6443"),
        ("controller-manager.conf", "CN=system:kube-controller-manager", "https://10.0.0.5:6443"),
        ("kubelet.conf", "CN=system:node:node1,O=system:nodes", "https://10.0.0.5:6443"),
        ("kube-proxy.conf", "CN=system:kube-proxy", "https://10.0.0.5:6443"),
    ] {
        let config = kubeconfig(&dir.join(file), scratch);
        assert_eq!(config.server, server, "{file}");
        assert_eq!(std::fs::read_to_string(&config.ca).unwrap(), std::fs::read_to_string(&ca).unwrap());
        let cert = config.cert.to_str().unwrap();
        verify(&ca, cert);
        assert_eq!(subject(cert), who, "{file}");
        assert!(openssl(&["x509", "-noout", "-text", "-in", cert]).contains("TLS Web Client Authentication"));
    }
}

#[test]
fn a_second_init_keeps_everything_and_force_reissues_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _ = init(dir, &[]);
    let snapshot = || -> Vec<String> {
        KEYS.iter().chain(CERTS).chain(KUBECONFIGS).map(|rel| std::fs::read_to_string(dir.join(rel)).unwrap()).collect()
    };
    let before = snapshot();

    let report = init(dir, &[]);
    assert!(report.lines().all(|l| l.starts_with("kept ")), "{report}");
    assert_eq!(report.lines().count(), KEYS.len() + CERTS.len() + KUBECONFIGS.len());
    assert!(before == snapshot(), "a rerun changed a file");

    let report = init(dir, &["--force"]);
    assert!(report.contains("replaced  pki/apiserver.crt (--force)"), "{report}");
    assert!(report.contains("kept      pki/ca.crt"), "{report}");
    let after = snapshot();
    for (i, rel) in KEYS.iter().chain(CERTS).chain(KUBECONFIGS).enumerate() {
        let kept = KEYS.contains(rel)
            || ["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt", "pki/sa.pub"].contains(rel);
        assert_eq!(before[i] == after[i], kept, "{rel}");
    }
    verify(&path(dir, "pki/ca.crt"), &path(dir, "pki/apiserver.crt"));

    // Losing one file regenerates that file only.
    std::fs::remove_file(dir.join("pki/etcd/server.crt")).unwrap();
    let report = init(dir, &[]);
    let changed: Vec<&str> = report.lines().filter(|l| !l.starts_with("kept ")).collect();
    assert_eq!(changed, ["created   pki/etcd/server.crt"]);
}

#[test]
fn node_and_kubeconfig_sign_with_the_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let d = dir.to_str().unwrap();

    let out = kube_pki(&["node", "--dir", d, "--node-name", "node2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `kube-pki init` first"));

    let _ = init(&dir, &[]);
    let ca = path(&dir, "pki/ca.crt");

    let report = succeed(kube_pki(&["node", "--dir", d, "--node-name", "node2", "--node-ip", "10.0.0.7"]));
    assert!(report.contains("created   kubelet-node2.conf"), "{report}");
    verify(&ca, &path(&dir, "pki/kubelet/node2.crt"));
    assert!(text(&dir, "pki/kubelet/node2.crt").contains("DNS:node2, IP Address:10.0.0.7"));
    assert_eq!(mode(&dir, "pki/kubelet/node2.key"), 0o600);
    assert_eq!(mode(&dir, "kubelet-node2.conf"), 0o600);
    let node2 = kubeconfig(&dir.join("kubelet-node2.conf"), tmp.path());
    assert_eq!(subject(node2.cert.to_str().unwrap()), "CN=system:node:node2,O=system:nodes");
    assert_eq!(node2.server, "https://10.0.0.5:6443");

    let out = tmp.path().join("alice.conf");
    let said = succeed(kube_pki(&[
        "kubeconfig",
        "--dir",
        d,
        "--user",
        "alice",
        "--groups",
        "dev,qa",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(said.trim(), format!("wrote     {}", out.display()));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let alice = kubeconfig(&out, tmp.path());
    let cert = alice.cert.to_str().unwrap();
    verify(&ca, cert);
    assert_eq!(subject(cert), "CN=alice,O=qa,O=dev");

    let yaml = succeed(kube_pki(&["kubeconfig", "--dir", d, "--user", "bob", "--server", "https://lb:6443"]));
    let value: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(value["clusters"][0]["cluster"]["server"], "https://lb:6443");
    assert_eq!(value["current-context"], "bob@kubernetes");
}

/// The files as our apiserver loads them (rustls-pemfile, rustls with ring): the apiserver serves
/// with its certificate, and accepts a client certificate from a kubeconfig, over a real handshake.
#[test]
fn rustls_completes_a_mutual_handshake_with_the_files() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _ = init(dir, &[]);
    let certs = |pem: &[u8]| -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut &pem[..]).collect::<Result<_, _>>().unwrap()
    };
    let key = |pem: &[u8]| -> PrivateKeyDer<'static> { rustls_pemfile::private_key(&mut &pem[..]).unwrap().unwrap() };
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs(&read("pki/ca.crt")).remove(0)).unwrap();
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build().unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs(&read("pki/apiserver.crt")), key(&read("pki/apiserver.key")))
        .unwrap();

    for (file, server_name) in [("admin.conf", "kubernetes.default.svc"), ("kubelet.conf", "10.96.0.1")] {
        let config = kubeconfig(&dir.join(file), tmp.path());
        let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(certs(&std::fs::read(&config.cert).unwrap()), key(config.key_pem.as_bytes()))
            .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config.clone())).unwrap();
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();

        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap_or_else(|e| panic!("{file}: server: {e}"));
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap_or_else(|e| panic!("{file}: client: {e}"));
        }
        assert!(!client.is_handshaking() && !server.is_handshaking(), "{file}: handshake did not finish");
        let peer = server.peer_certificates().expect("the client presented a certificate");
        assert_eq!(peer[0].as_ref(), certs(&std::fs::read(&config.cert).unwrap())[0].as_ref());
    }
}
