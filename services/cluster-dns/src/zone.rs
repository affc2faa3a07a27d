//! The cluster zone: an immutable snapshot of the Services and
//! EndpointSlices, and the name → answer logic of the Kubernetes DNS-Based
//! Service Discovery specification (schema 1.1.0):
//!
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of the ClusterIPs; for a headless
//!   Service, of its ready endpoints (NXDOMAIN without any); for an
//!   ExternalName, a CNAME.
//! - `<hostname>.<svc>.<ns>.svc.<zone>`: A/AAAA of a headless Service's
//!   ready endpoint with that hostname (StatefulSets); endpoints without one
//!   are named by their dashed address (`10-244-0-5`), as CoreDNS does.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for named ports, with the
//!   targets' addresses as additional records.
//! - PTR for ClusterIPs and headless endpoints; `dns-version.<zone>` TXT.
//! - `<a-b-c-d>.<ns>.pod.<zone>`: the address the name spells (CoreDNS's
//!   `pods insecure`, the kubeadm default).
//!
//! Names in the zone that exist without records answer NOERROR with no
//! data, other names in the zone NXDOMAIN (both with the zone's SOA);
//! names out of the zone, and reverse names of unknown addresses, are
//! forwarded.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The schema version `dns-version.<zone>` reports.
pub const SCHEMA_VERSION: &str = "1.1.0";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    /// The port's name; unnamed ports get no SRV record.
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(String),
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The endpoint's own label: its hostname, or the dashed address.
    pub label: String,
    pub ports: BTreeSet<Port>,
}

#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub kind: Kind,
    pub ports: Vec<Port>,
    /// Ready endpoints of a headless Service, in address order.
    pub endpoints: Vec<Endpoint>,
}

/// What a question gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Not this zone's to answer: ask the upstream resolvers.
    Forward,
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists but has no records of the type asked for.
    NoData,
    NxDomain,
    /// An ExternalName: the CNAME, and the target to resolve for the type asked for.
    Cname {
        record: Box<Record>,
        target: Name,
    },
}

/// A Service's ready endpoint addresses with their hostname and ports, merged across slices.
type ReadyEndpoints = BTreeMap<IpAddr, (Option<String>, BTreeSet<Port>)>;

/// An immutable snapshot of the zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Lowercase, no trailing dot (`cluster.local`).
    domain: String,
    origin: Name,
    ttl: u32,
    serial: u32,
    services: HashMap<(String, String), ServiceEntry>,
    namespaces: HashSet<String>,
    reverse: HashMap<IpAddr, Vec<Name>>,
}

/// `10.0.0.1` → `10-0-0-1`, `fd00::1` → `fd00--1`.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The reverse of [`dashed`], for `<a-b-c-d>.<ns>.pod.<zone>`.
fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

fn fqdn(s: &str) -> Option<Name> {
    let s = if s.ends_with('.') { s.to_string() } else { format!("{s}.") };
    Name::from_ascii(s).ok()
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

fn wants(qtype: RecordType, ip: &IpAddr) -> bool {
    matches!((qtype, ip), (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_)) | (RecordType::ANY, _))
}

/// `1.0.0.10.in-addr.arpa` / `...ip6.arpa` → the address.
fn reverse_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return parts.join(".").parse().ok();
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
            return None;
        }
        let hex: String = nibbles.iter().rev().copied().collect();
        let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        return groups.join(":").parse().ok();
    }
    None
}

fn service_ports(svc: &Service) -> Vec<Port> {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p.name.clone().unwrap_or_default().to_lowercase(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect()
}

fn service_kind(svc: &Service) -> Option<Kind> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.clone().filter(|n| !n.is_empty())?;
        return Some(Kind::ExternalName(target.trim_end_matches('.').to_lowercase()));
    }
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.clone());
    }
    if ips.iter().any(|ip| ip == "None") {
        return Some(Kind::Headless);
    }
    let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    // A Service without an address yet has no records; it appears when one is allocated.
    (!ips.is_empty()).then_some(Kind::ClusterIp(ips))
}

impl Zone {
    /// A zone with no Services (`domain` such as `cluster.local`).
    pub fn empty(domain: &str, ttl: u32) -> Zone {
        let domain = domain.trim_end_matches('.').to_lowercase();
        Zone {
            origin: fqdn(&domain).unwrap_or_else(Name::root),
            domain,
            ttl,
            serial: 1,
            services: HashMap::new(),
            namespaces: HashSet::new(),
            reverse: HashMap::new(),
        }
    }

    /// The zone of these Services and EndpointSlices; `serial` goes into the SOA.
    pub fn build<'a>(
        domain: &str,
        ttl: u32,
        serial: u32,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Zone {
        let mut zone = Zone::empty(domain, ttl);
        zone.serial = serial;
        // Ready endpoints per (namespace, service), merged across slices by address.
        let mut ready: HashMap<(String, String), ReadyEndpoints> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            let Some(ns) = slice.metadata.namespace.clone() else { continue };
            let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned() else {
                continue;
            };
            let ports: BTreeSet<Port> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(Port {
                        name: p.name.clone().unwrap_or_default().to_lowercase(),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_lowercase(),
                        port: u16::try_from(p.port?).ok()?,
                    })
                })
                .collect();
            let entry = ready.entry((ns, svc)).or_default();
            for ep in &slice.endpoints {
                // A missing condition means ready (the API's rule for consumers).
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                let hostname = ep.hostname.clone().filter(|h| !h.is_empty()).map(|h| h.to_lowercase());
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else { continue };
                    let e = entry.entry(ip).or_insert_with(|| (None, BTreeSet::new()));
                    if e.0.is_none() {
                        e.0 = hostname.clone();
                    }
                    e.1.extend(ports.iter().cloned());
                }
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else {
                continue;
            };
            let Some(kind) = service_kind(svc) else { continue };
            let endpoints: Vec<Endpoint> = if kind == Kind::Headless {
                ready
                    .remove(&(ns.clone(), name.clone()))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(ip, (hostname, ports))| Endpoint {
                        label: hostname.unwrap_or_else(|| dashed(&ip)),
                        ip,
                        ports,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let service_name = format!("{name}.{ns}.svc.{}", zone.domain);
            match &kind {
                Kind::ClusterIp(ips) => {
                    if let Some(n) = fqdn(&service_name) {
                        for ip in ips {
                            zone.reverse.entry(*ip).or_default().push(n.clone());
                        }
                    }
                }
                Kind::Headless => {
                    for ep in &endpoints {
                        if let Some(n) = fqdn(&format!("{}.{service_name}", ep.label)) {
                            zone.reverse.entry(ep.ip).or_default().push(n);
                        }
                    }
                }
                Kind::ExternalName(_) => {}
            }
            zone.namespaces.insert(ns.clone());
            zone.services.insert((ns, name), ServiceEntry { kind, ports: service_ports(svc), endpoints });
        }
        for names in zone.reverse.values_mut() {
            names.sort();
            names.dedup();
        }
        zone
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Whether `name` (lowercase, no trailing dot) is in the cluster zone.
    pub fn contains(&self, name: &str) -> bool {
        name == self.domain || name.strip_suffix(&self.domain).is_some_and(|p| p.ends_with('.'))
    }

    /// The SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> Record {
        let mname = fqdn(&format!("ns.dns.{}", self.domain)).unwrap_or_else(Name::root);
        let rname = fqdn(&format!("hostmaster.{}", self.domain)).unwrap_or_else(Name::root);
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::SOA(SOA::new(mname, rname, self.serial, 7200, 1800, 86400, self.ttl)),
        )
    }

    /// The answer to `qname`/`qtype`; answer records are owned by `qname` as asked (its case kept).
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let lower = qname.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = reverse_ip(&lower) {
            return match (qtype, self.reverse.get(&ip)) {
                (RecordType::PTR | RecordType::ANY, Some(names)) => Lookup::Answer {
                    answers: names
                        .iter()
                        .map(|n| Record::from_rdata(qname.clone(), self.ttl, RData::PTR(PTR(n.clone()))))
                        .collect(),
                    additionals: Vec::new(),
                },
                (_, Some(_)) => Lookup::NoData,
                // Reverse names of other addresses fall through to the upstream resolvers.
                (_, None) => Lookup::Forward,
            };
        }
        if !self.contains(&lower) {
            return Lookup::Forward;
        }
        let prefix = lower.strip_suffix(&self.domain).unwrap_or_default().trim_end_matches('.');
        let labels: Vec<&str> = if prefix.is_empty() { Vec::new() } else { prefix.split('.').collect() };
        match labels.as_slice() {
            [] => self.apex(qname, qtype),
            ["dns-version"] => match qtype {
                RecordType::TXT | RecordType::ANY => self.answer(vec![Record::from_rdata(
                    qname.clone(),
                    self.ttl,
                    RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                )]),
                _ => Lookup::NoData,
            },
            ["svc"] | ["pod"] | [_, "pod"] => Lookup::NoData,
            [ip, _ns, "pod"] => match undashed(ip) {
                Some(ip) if wants(qtype, &ip) => self.answer(vec![address_record(qname.clone(), self.ttl, ip)]),
                Some(_) => Lookup::NoData,
                None => Lookup::NxDomain,
            },
            [ns, "svc"] => {
                if self.namespaces.contains(*ns) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                }
            }
            [svc, ns, "svc"] => self.service(qname, qtype, ns, svc),
            [label, svc, ns, "svc"] => self.endpoint_or_protocol(qname, qtype, ns, svc, label),
            [port, proto, svc, ns, "svc"] => self.srv(qname, qtype, ns, svc, port, proto),
            _ => Lookup::NxDomain,
        }
    }

    fn answer(&self, answers: Vec<Record>) -> Lookup {
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Answer { answers, additionals: Vec::new() }
        }
    }

    fn apex(&self, qname: &Name, qtype: RecordType) -> Lookup {
        match qtype {
            RecordType::SOA => {
                let mut soa = self.soa();
                soa.name = qname.clone();
                self.answer(vec![soa])
            }
            RecordType::NS => {
                let ns = fqdn(&format!("ns.dns.{}", self.domain)).unwrap_or_else(Name::root);
                self.answer(vec![Record::from_rdata(qname.clone(), self.ttl, RData::NS(NS(ns)))])
            }
            _ => Lookup::NoData,
        }
    }

    fn service_fqdn(&self, ns: &str, svc: &str) -> Option<Name> {
        fqdn(&format!("{svc}.{ns}.svc.{}", self.domain))
    }

    fn service(&self, qname: &Name, qtype: RecordType, ns: &str, svc: &str) -> Lookup {
        let Some(entry) = self.services.get(&(ns.to_string(), svc.to_string())) else { return Lookup::NxDomain };
        match &entry.kind {
            Kind::ExternalName(target) => {
                let Some(target) = fqdn(target) else { return Lookup::NoData };
                let record = Record::from_rdata(qname.clone(), self.ttl, RData::CNAME(CNAME(target.clone())));
                Lookup::Cname { record: Box::new(record), target }
            }
            Kind::ClusterIp(ips) => self.answer(
                ips.iter()
                    .filter(|ip| wants(qtype, ip))
                    .map(|ip| address_record(qname.clone(), self.ttl, *ip))
                    .collect(),
            ),
            // The spec (after kubernetes/dns#245, matching kube-dns and CoreDNS): a headless Service
            // without ready endpoints is NXDOMAIN.
            Kind::Headless if entry.endpoints.is_empty() => Lookup::NxDomain,
            Kind::Headless => self.answer(
                entry
                    .endpoints
                    .iter()
                    .filter(|e| wants(qtype, &e.ip))
                    .map(|e| address_record(qname.clone(), self.ttl, e.ip))
                    .collect(),
            ),
        }
    }

    /// `<hostname>.<svc>.<ns>.svc` (headless endpoints) or `_<proto>.<svc>.<ns>.svc` (an empty non-terminal).
    fn endpoint_or_protocol(&self, qname: &Name, qtype: RecordType, ns: &str, svc: &str, label: &str) -> Lookup {
        let Some(entry) = self.services.get(&(ns.to_string(), svc.to_string())) else { return Lookup::NxDomain };
        if let Some(proto) = label.strip_prefix('_') {
            let ports: Vec<&Port> = match entry.kind {
                Kind::Headless => entry.endpoints.iter().flat_map(|e| e.ports.iter()).collect(),
                _ => entry.ports.iter().collect(),
            };
            return if ports.iter().any(|p| !p.name.is_empty() && p.protocol == proto) {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            };
        }
        if entry.kind != Kind::Headless {
            return Lookup::NxDomain;
        }
        let matching: Vec<&Endpoint> = entry.endpoints.iter().filter(|e| e.label == label).collect();
        if matching.is_empty() {
            return Lookup::NxDomain;
        }
        self.answer(
            matching
                .iter()
                .filter(|e| wants(qtype, &e.ip))
                .map(|e| address_record(qname.clone(), self.ttl, e.ip))
                .collect(),
        )
    }

    fn srv(&self, qname: &Name, qtype: RecordType, ns: &str, svc: &str, port: &str, proto: &str) -> Lookup {
        let Some(entry) = self.services.get(&(ns.to_string(), svc.to_string())) else { return Lookup::NxDomain };
        let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
            return Lookup::NxDomain;
        };
        let matches = |p: &Port| !p.name.is_empty() && p.name == port && p.protocol == proto;
        let Some(service_name) = self.service_fqdn(ns, svc) else { return Lookup::NxDomain };
        // (target, port number, addresses)
        let targets: Vec<(Name, u16, Vec<IpAddr>)> = match &entry.kind {
            Kind::ExternalName(_) => return Lookup::NxDomain,
            Kind::ClusterIp(ips) => {
                entry.ports.iter().filter(|p| matches(p)).map(|p| (service_name.clone(), p.port, ips.clone())).collect()
            }
            Kind::Headless => entry
                .endpoints
                .iter()
                .filter_map(|e| {
                    let p = e.ports.iter().find(|p| matches(p))?;
                    let target = service_name.clone().prepend_label(e.label.as_str()).ok()?;
                    Some((target, p.port, vec![e.ip]))
                })
                .collect(),
        };
        if targets.is_empty() {
            return Lookup::NxDomain;
        }
        if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
            return Lookup::NoData;
        }
        let weight = (100 / targets.len()).max(1) as u16;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for (target, number, ips) in targets {
            answers.push(Record::from_rdata(
                qname.clone(),
                self.ttl,
                RData::SRV(SRV::new(0, weight, number, target.clone())),
            ));
            for ip in ips {
                let rec = address_record(target.clone(), self.ttl, ip);
                if !additionals.contains(&rec) {
                    additionals.push(rec);
                }
            }
        }
        Lookup::Answer { answers, additionals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, spec: ServiceSpec) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn port(name: &str, proto: &str, number: i32) -> ServicePort {
        ServicePort { name: Some(name.into()), protocol: Some(proto.into()), port: number, ..Default::default() }
    }

    fn slice(ns: &str, svc: &str, eps: &[(&str, Option<&str>, Option<bool>)], ports: &[(&str, i32)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(format!("{svc}-abc")),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(ip, host, ready)| SliceEndpoint {
                    addresses: vec![ip.to_string()],
                    hostname: host.map(str::to_string),
                    conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: Some(n.to_string()),
                        port: Some(*p),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    fn zone() -> Zone {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                ServiceSpec {
                    cluster_ip: Some("10.96.0.1".into()),
                    cluster_ips: Some(vec!["10.96.0.1".into()]),
                    ports: Some(vec![port("https", "TCP", 443)]),
                    ..Default::default()
                },
            ),
            svc(
                "prod",
                "web",
                ServiceSpec {
                    cluster_ip: Some("10.96.0.20".into()),
                    ports: Some(vec![port("http", "TCP", 80), port("dns", "UDP", 53)]),
                    ..Default::default()
                },
            ),
            svc(
                "prod",
                "db",
                ServiceSpec {
                    cluster_ip: Some("None".into()),
                    cluster_ips: Some(vec!["None".into()]),
                    ports: Some(vec![port("pg", "TCP", 5432)]),
                    ..Default::default()
                },
            ),
            svc(
                "prod",
                "ext",
                ServiceSpec {
                    type_: Some("ExternalName".into()),
                    external_name: Some("Example.COM".into()),
                    ..Default::default()
                },
            ),
        ];
        let slices = vec![slice(
            "prod",
            "db",
            &[
                ("10.244.0.5", Some("db-0"), Some(true)),
                ("10.244.0.6", None, None),
                ("10.244.0.7", Some("db-2"), Some(false)),
            ],
            &[("pg", 5432)],
        )];
        Zone::build("cluster.local", 5, 7, &services, &slices)
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn data(l: &Lookup) -> Vec<String> {
        match l {
            Lookup::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn cluster_ip_services_answer_their_addresses() {
        let z = zone();
        let l = z.lookup(&name("kubernetes.default.svc.cluster.local."), RecordType::A);
        assert_eq!(data(&l), ["10.96.0.1"]);
        // The owner keeps the case it was asked with.
        let l = z.lookup(&name("Web.Prod.SVC.cluster.local."), RecordType::A);
        let Lookup::Answer { answers, .. } = &l else { panic!("{l:?}") };
        assert_eq!(answers[0].name.to_ascii(), "Web.Prod.SVC.cluster.local.");
        assert_eq!(data(&l), ["10.96.0.20"]);
        // The name exists, but has no IPv6 address.
        assert_eq!(z.lookup(&name("web.prod.svc.cluster.local."), RecordType::AAAA), Lookup::NoData);
    }

    #[test]
    fn headless_services_answer_ready_endpoints_and_hostnames() {
        let z = zone();
        let l = z.lookup(&name("db.prod.svc.cluster.local."), RecordType::A);
        assert_eq!(data(&l), ["10.244.0.5", "10.244.0.6"], "the not-ready 10.244.0.7 is left out");
        let l = z.lookup(&name("db-0.db.prod.svc.cluster.local."), RecordType::A);
        assert_eq!(data(&l), ["10.244.0.5"]);
        let l = z.lookup(&name("10-244-0-6.db.prod.svc.cluster.local."), RecordType::A);
        assert_eq!(data(&l), ["10.244.0.6"]);
        assert_eq!(z.lookup(&name("db-2.db.prod.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        // Addresses of one family only: the other is NODATA.
        assert_eq!(z.lookup(&name("db.prod.svc.cluster.local."), RecordType::AAAA), Lookup::NoData);
        // No ready endpoints: NXDOMAIN, as upstream's spec says since kubernetes/dns#245.
        let lonely = svc("prod", "lonely", ServiceSpec { cluster_ip: Some("None".into()), ..Default::default() });
        let z2 = Zone::build("cluster.local", 5, 1, [&lonely], []);
        assert_eq!(z2.lookup(&name("lonely.prod.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        // A ClusterIP Service has no endpoint names.
        assert_eq!(z.lookup(&name("x.web.prod.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn srv_records_name_ports_and_targets() {
        let z = zone();
        let l = z.lookup(&name("_http._tcp.web.prod.svc.cluster.local."), RecordType::SRV);
        assert_eq!(data(&l), ["0 100 80 web.prod.svc.cluster.local."]);
        let Lookup::Answer { additionals, .. } = &l else { unreachable!() };
        assert_eq!(additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["10.96.0.20"]);
        let l = z.lookup(&name("_dns._udp.web.prod.svc.cluster.local."), RecordType::SRV);
        assert_eq!(data(&l), ["0 100 53 web.prod.svc.cluster.local."]);
        assert_eq!(z.lookup(&name("_dns._tcp.web.prod.svc.cluster.local."), RecordType::SRV), Lookup::NxDomain);
        let l = z.lookup(&name("_pg._tcp.db.prod.svc.cluster.local."), RecordType::SRV);
        assert_eq!(
            data(&l),
            ["0 50 5432 db-0.db.prod.svc.cluster.local.", "0 50 5432 10-244-0-6.db.prod.svc.cluster.local."]
        );
        assert_eq!(z.lookup(&name("_tcp.web.prod.svc.cluster.local."), RecordType::SRV), Lookup::NoData);
    }

    #[test]
    fn ptr_records_for_cluster_ips_and_endpoints_others_forwarded() {
        let z = zone();
        let l = z.lookup(&name("20.0.96.10.in-addr.arpa."), RecordType::PTR);
        assert_eq!(data(&l), ["web.prod.svc.cluster.local."]);
        let l = z.lookup(&name("5.0.244.10.in-addr.arpa."), RecordType::PTR);
        assert_eq!(data(&l), ["db-0.db.prod.svc.cluster.local."]);
        assert_eq!(z.lookup(&name("1.1.168.192.in-addr.arpa."), RecordType::PTR), Lookup::Forward);
    }

    #[test]
    fn external_names_are_cnames() {
        let z = zone();
        let l = z.lookup(&name("ext.prod.svc.cluster.local."), RecordType::A);
        let Lookup::Cname { record, target } = l else { panic!("{l:?}") };
        assert_eq!(target.to_ascii(), "example.com.");
        assert_eq!(record.data.to_string(), "example.com.");
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain_and_others_forwarded() {
        let z = zone();
        assert_eq!(z.lookup(&name("nope.prod.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        assert_eq!(z.lookup(&name("web.nope.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        assert_eq!(z.lookup(&name("kubernetes.default.default.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        assert_eq!(z.lookup(&name("a.b.c.d.e.f.svc.cluster.local."), RecordType::A), Lookup::NxDomain);
        assert_eq!(z.lookup(&name("nothing.cluster.local."), RecordType::A), Lookup::NxDomain);
        // Existing names without records of the type.
        assert_eq!(z.lookup(&name("prod.svc.cluster.local."), RecordType::A), Lookup::NoData);
        assert_eq!(z.lookup(&name("svc.cluster.local."), RecordType::A), Lookup::NoData);
        assert_eq!(z.lookup(&name("example.com."), RecordType::A), Lookup::Forward);
        assert_eq!(z.lookup(&name("notcluster.local."), RecordType::A), Lookup::Forward);
    }

    #[test]
    fn apex_version_and_pod_names() {
        let z = zone();
        let l = z.lookup(&name("cluster.local."), RecordType::SOA);
        assert_eq!(data(&l), ["ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5"]);
        let l = z.lookup(&name("dns-version.cluster.local."), RecordType::TXT);
        assert_eq!(data(&l), ["1.1.0"]);
        let l = z.lookup(&name("10-244-1-9.prod.pod.cluster.local."), RecordType::A);
        assert_eq!(data(&l), ["10.244.1.9"]);
        assert_eq!(z.lookup(&name("nonsense.prod.pod.cluster.local."), RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn another_cluster_domain() {
        let z = Zone::build(
            "Example.Test.",
            30,
            1,
            &[svc("a", "b", ServiceSpec { cluster_ip: Some("10.0.0.9".into()), ..Default::default() })],
            &[],
        );
        assert_eq!(data(&z.lookup(&name("b.a.svc.example.test."), RecordType::A)), ["10.0.0.9"]);
        assert_eq!(z.lookup(&name("b.a.svc.cluster.local."), RecordType::A), Lookup::Forward);
    }
}
