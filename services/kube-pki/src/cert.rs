//! Keys and certificates: generate and sign them (rcgen), read them back and check that a kept
//! one still fits what would be issued now (x509-parser).

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

mod der;

/// A CA's lifetime (as kubeadm: ten years).
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// A leaf certificate's lifetime (as kubeadm: one year), cut short to its CA's end.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates start this far in the past, so that a peer whose clock lags accepts them at once.
const BACKDATE: Duration = Duration::minutes(5);

/// Why a certificate on disk cannot be used as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unfit(pub String);

fn unfit(reason: impl Into<String>) -> Unfit {
    Unfit(reason.into())
}

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// An IP address if `s` parses as one, else a DNS name (not validated here).
    pub fn parse(s: &str) -> San {
        match s.parse() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_ascii_lowercase()),
        }
    }

    fn to_rcgen(&self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            San::Dns(name) => SanType::DnsName(name.clone().try_into()?),
            San::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// What a leaf certificate authenticates: its extended key usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// serverAuth: a TLS server.
    Server,
    /// clientAuth: a TLS client.
    Client,
    /// Both, as etcd's serving certificate (etcd also dials its own listener).
    ServerAndClient,
}

impl Usage {
    fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerAndClient)
    }

    fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerAndClient)
    }
}

/// The identity and names of a leaf certificate. For a client of the API, the common name is
/// the user and each organization a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub sans: Vec<San>,
    pub usage: Usage,
}

impl CertSpec {
    /// A client certificate for user `common_name` in `groups`.
    pub fn client(common_name: impl Into<String>, groups: &[&str]) -> Self {
        CertSpec {
            common_name: common_name.into(),
            organizations: groups.iter().map(|g| g.to_string()).collect(),
            sans: Vec::new(),
            usage: Usage::Client,
        }
    }

    /// A serving certificate for `sans`, duplicates dropped.
    pub fn server(common_name: impl Into<String>, sans: impl IntoIterator<Item = San>) -> Self {
        let mut unique: Vec<San> = Vec::new();
        for san in sans {
            if !unique.contains(&san) {
                unique.push(san);
            }
        }
        CertSpec { common_name: common_name.into(), organizations: Vec::new(), sans: unique, usage: Usage::Server }
    }

    /// rcgen keeps one value per attribute type, so this holds at most one organization;
    /// [`Authority::issue`] writes the full subject itself when there are more.
    fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        if let Some(org) = self.organizations.first() {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

/// A private key with the PEM it was read from or written as, so a kept key is never reformatted.
pub struct Key {
    pem: String,
    pair: KeyPair,
}

impl Key {
    /// A new ECDSA P-256 key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Key { pem: pair.serialize_pem(), pair })
    }

    /// A PKCS#8 `PRIVATE KEY` PEM (ECDSA P-256/P-384, Ed25519 or RSA).
    pub fn from_pem(pem: &str) -> Result<Self, rcgen::Error> {
        Ok(Key { pem: pem.to_owned(), pair: KeyPair::from_pem(pem)? })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public half as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM.
    pub fn public_pem(&self) -> String {
        self.pair.public_key_pem()
    }

    /// The public half as DER SubjectPublicKeyInfo.
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    fn pair(&self) -> &KeyPair {
        &self.pair
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("algorithm", self.pair.algorithm()).finish_non_exhaustive()
    }
}

/// A CA that can sign: its certificate and key, checked to belong together.
pub struct Authority {
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new self-signed CA certificate (PEM) named `common_name` for `key`, valid for
    /// [`CA_VALIDITY`]. [`Authority::load`] makes it an authority.
    pub fn self_signed(common_name: &str, key: &Key) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(params.self_signed(key.pair())?.pem())
    }

    /// A CA read back from disk. It must be a CA certificate, currently valid, for `key`.
    pub fn load(cert_pem: &str, key: Key) -> Result<Self, Unfit> {
        let cert_der = pem_der(cert_pem)?;
        let cert = parse(&cert_der)?;
        if !cert.is_ca() {
            return Err(unfit("not a CA certificate (basic constraints lack CA:TRUE)"));
        }
        if cert.public_key().raw != key.public_der().as_slice() {
            return Err(unfit("the certificate is not for the key beside it"));
        }
        check_validity(&cert)?;
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key.pair)
            .map_err(|e| unfit(format!("cannot sign with it: {e}")))?;
        Ok(Authority { cert_pem: cert_pem.to_owned(), cert_der, not_after, issuer })
    }

    /// The certificate as read or written.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `spec` and `key`, valid for [`LEAF_VALIDITY`] or until the CA
    /// expires, whichever comes first. The serial number is random, so reissuing for the same
    /// key never repeats one. Several organizations become repeated O attributes (see [`der`]).
    pub fn issue(&self, spec: &CertSpec, key: &Key) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = spec.distinguished_name();
        params.subject_alt_names = spec.sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
        params.not_before = now - BACKDATE;
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.usage.server() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.usage.client() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key.pair(), &self.issuer)?;
        if spec.organizations.len() < 2 {
            return Ok(cert.pem());
        }
        let subject = der::name(&spec.organizations, &spec.common_name);
        Ok(der::certificate_pem(&der::replace_subject(cert.der(), &subject, self.issuer.key())?))
    }

    /// Whether `cert_pem` is one this CA would issue now for `spec` and `key`: signed by this CA,
    /// for `key`, currently valid, with `spec`'s subject, usages and names. A name no longer
    /// asked for is a misfit too, so that dropping an extra SAN takes effect on the next run.
    pub fn check(&self, spec: &CertSpec, cert_pem: &str, key: &Key) -> Result<(), Unfit> {
        let der = pem_der(cert_pem)?;
        let cert = parse(&der)?;
        let ca = parse(&self.cert_der)?;
        if cert.issuer().as_raw() != ca.subject().as_raw() || cert.verify_signature(Some(ca.public_key())).is_err() {
            return Err(unfit(format!("not signed by this CA ({})", ca.subject())));
        }
        if cert.public_key().raw != key.public_der().as_slice() {
            return Err(unfit("the certificate is not for the key beside it"));
        }
        check_validity(&cert)?;

        let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
        if common_name != Some(spec.common_name.as_str()) {
            return Err(unfit(format!("common name is {:?}, want {:?}", common_name.unwrap_or(""), spec.common_name)));
        }
        let mut organizations: Vec<&str> = cert.subject().iter_organization().filter_map(|o| o.as_str().ok()).collect();
        let mut want: Vec<&str> = spec.organizations.iter().map(String::as_str).collect();
        organizations.sort_unstable();
        want.sort_unstable();
        if organizations != want {
            return Err(unfit(format!("organizations are {organizations:?}, want {want:?}")));
        }

        let sans = subject_alt_names(&cert)?;
        if let Some(missing) = spec.sans.iter().find(|san| !sans.contains(san)) {
            return Err(unfit(format!("lacks SAN {missing}")));
        }
        if let Some(extra) = sans.iter().find(|san| !spec.sans.contains(san)) {
            return Err(unfit(format!("has SAN {extra}, no longer asked for")));
        }

        let eku = cert.extended_key_usage().map_err(|e| unfit(format!("extended key usage: {e}")))?;
        let (server, client) = eku.map_or((false, false), |e| (e.value.server_auth, e.value.client_auth));
        if (spec.usage.server() && !server) || (spec.usage.client() && !client) {
            return Err(unfit(format!("extended key usages do not allow {:?}", spec.usage)));
        }
        Ok(())
    }
}

/// Whether `pem` holds the same public key as `key`; `false` if it is not a PEM at all.
pub fn same_public_key(pem: &str, key: &Key) -> bool {
    pem_der(pem).is_ok_and(|der| der == key.public_der())
}

fn pem_der(pem: &str) -> Result<Vec<u8>, Unfit> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| unfit(format!("not PEM: {e}")))?;
    Ok(pem.contents)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Unfit> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| unfit(format!("not a certificate: {e}")))?;
    Ok(cert)
}

fn check_validity(cert: &X509Certificate<'_>) -> Result<(), Unfit> {
    let validity = cert.validity();
    let now = OffsetDateTime::now_utc();
    if validity.not_after.to_datetime() <= now {
        return Err(unfit(format!("expired on {}", validity.not_after)));
    }
    if validity.not_before.to_datetime() > now {
        return Err(unfit(format!("not valid before {}", validity.not_before)));
    }
    Ok(())
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Result<Vec<San>, Unfit> {
    let Some(ext) = cert.subject_alternative_name().map_err(|e| unfit(format!("subject alt names: {e}")))? else {
        return Ok(Vec::new());
    };
    Ok(ext
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(Ipv4Addr::from(b).into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(Ipv6Addr::from(b).into())),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// 128 random bits from the kernel, positive. rcgen's default serial is a hash of the public
/// key, which would repeat when a certificate is reissued for a kept key.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // Falling back to the clock only if /dev/urandom is unreadable: serials must be unique,
    // they need not be secret.
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        bytes = nanos.to_be_bytes();
    }
    // A leading byte in 0x01..=0x7f keeps the DER integer positive and at 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> Authority {
        let key = Key::generate().unwrap();
        let pem = Authority::self_signed(name, &key).unwrap();
        Authority::load(&pem, key).unwrap()
    }

    fn apiserver_spec() -> CertSpec {
        CertSpec::server("kube-apiserver", [San::parse("kubernetes"), San::parse("10.96.0.1")])
    }

    #[test]
    fn an_issued_certificate_fits_its_spec() {
        let ca = ca("kubernetes");
        let key = Key::generate().unwrap();
        let pem = ca.issue(&apiserver_spec(), &key).unwrap();
        assert_eq!(ca.check(&apiserver_spec(), &pem, &key), Ok(()));

        let client = CertSpec::client("kubernetes-admin", &["system:masters"]);
        let pem = ca.issue(&client, &key).unwrap();
        assert_eq!(ca.check(&client, &pem, &key), Ok(()));
    }

    #[test]
    fn every_group_becomes_an_organization() {
        let ca = ca("kubernetes");
        let key = Key::generate().unwrap();
        let spec = CertSpec::client("alice", &["dev", "qa", "system:authenticated"]);
        let pem = ca.issue(&spec, &key).unwrap();
        assert_eq!(ca.check(&spec, &pem, &key), Ok(()));
        let der = pem_der(&pem).unwrap();
        let cert = parse(&der).unwrap();
        let orgs: Vec<&str> = cert.subject().iter_organization().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(orgs, ["dev", "qa", "system:authenticated"]);
        assert_eq!(cert.subject().to_string(), "O=dev, O=qa, O=system:authenticated, CN=alice");
        assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);
        assert!(cert
            .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .unwrap()
            .is_some());
    }

    #[test]
    fn check_names_what_no_longer_fits() {
        let ca = ca("kubernetes");
        let key = Key::generate().unwrap();
        let pem = ca.issue(&apiserver_spec(), &key).unwrap();

        let mut more = apiserver_spec();
        more.sans.push(San::parse("10.0.0.6"));
        assert_eq!(ca.check(&more, &pem, &key), Err(unfit("lacks SAN IP:10.0.0.6")));

        let mut fewer = apiserver_spec();
        fewer.sans.pop();
        assert_eq!(ca.check(&fewer, &pem, &key), Err(unfit("has SAN IP:10.96.0.1, no longer asked for")));

        let other_key = Key::generate().unwrap();
        assert_eq!(
            ca.check(&apiserver_spec(), &pem, &other_key),
            Err(unfit("the certificate is not for the key beside it"))
        );

        let other_ca = self::ca("kubernetes");
        assert!(other_ca.check(&apiserver_spec(), &pem, &key).unwrap_err().0.starts_with("not signed by this CA"));

        let renamed = CertSpec { common_name: "other".into(), ..apiserver_spec() };
        assert!(ca.check(&renamed, &pem, &key).unwrap_err().0.starts_with("common name is"));

        let client = CertSpec { sans: apiserver_spec().sans, ..CertSpec::client("kube-apiserver", &[]) };
        assert!(ca.check(&client, &pem, &key).unwrap_err().0.starts_with("extended key usages"));

        let grouped = CertSpec { organizations: vec!["system:masters".into()], ..apiserver_spec() };
        assert!(ca.check(&grouped, &pem, &key).unwrap_err().0.starts_with("organizations are"));
    }

    #[test]
    fn a_ca_must_be_a_ca_for_its_key() {
        let key = Key::generate().unwrap();
        let pem = Authority::self_signed("kubernetes", &key).unwrap();
        let other = Key::generate().unwrap();
        assert_eq!(Authority::load(&pem, other).err(), Some(unfit("the certificate is not for the key beside it")));

        let ca = ca("kubernetes");
        let leaf_key = Key::generate().unwrap();
        let leaf = ca.issue(&apiserver_spec(), &leaf_key).unwrap();
        assert!(Authority::load(&leaf, leaf_key).err().unwrap().0.starts_with("not a CA certificate"));
    }

    #[test]
    fn reissuing_for_the_same_key_changes_the_serial() {
        let ca = ca("kubernetes");
        let key = Key::generate().unwrap();
        let serial = |pem: &str| parse(&pem_der(pem).unwrap()).unwrap().raw_serial().to_vec();
        let first = ca.issue(&apiserver_spec(), &key).unwrap();
        let second = ca.issue(&apiserver_spec(), &key).unwrap();
        assert_ne!(serial(&first), serial(&second));
    }

    #[test]
    fn a_kept_key_keeps_its_pem_and_public_half() {
        let key = Key::generate().unwrap();
        let again = Key::from_pem(key.pem()).unwrap();
        assert_eq!(again.pem(), key.pem());
        assert!(same_public_key(&key.public_pem(), &again));
        assert!(!same_public_key(&Key::generate().unwrap().public_pem(), &again));
        assert!(key.pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
