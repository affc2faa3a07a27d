//! The nftables ruleset: a fixed set of chains and maps in one table of the
//! proxy's own, whose size grows only in map elements as Services and
//! endpoints are added.
//!
//! A new connection to a frontend (`ip daddr . meta l4proto . th dport`)
//! is looked up once in the verdict map `service-ips`, which jumps to the
//! chain `endpoints-N` shared by every frontend with N backends. That chain
//! picks a slot with `numgen random mod N` and DNATs through the data map
//! `backends`, keyed by `frontend . slot`. So the per-packet cost is two
//! hash lookups whatever the number of Services. The `endpoints-N` chains
//! exist for every N up to a power of two (at least
//! [`MIN_ENDPOINT_CHAINS`]) covering the largest Service, so their number
//! does not follow the Services or endpoints: nft 1.0.6 cannot add a
//! `dnat ... map` rule to a table whose map it reads back from the kernel
//! ("conflicting protocols specified: tcp vs. th"), so these rules are only
//! ever written with the table's creation, and a Service with more
//! endpoints than the table has chains for recreates the table.
//!
//! Session affinity: `endpoints-N` first tries the dynamic map `affinity`
//! (`client . frontend → backend`); after DNAT, a filter chain at
//! `dstnat + 1` records the choice with `update` (which also refreshes the
//! timeout), through the verdict map `affinity-services` that jumps to the
//! chain of the Service's timeout (`affinity-T`, one per distinct timeout).
//!
//! Frontends without backends are in `no-endpoints` (checked on the input,
//! forward and output hooks, where `reject` is allowed), and masquerading is
//! decided by the sets `masq-off-cluster` (ClusterIPs: when the client is
//! outside `--cluster-cidr`) and `masq-always` (external traffic with
//! externalTrafficPolicy: Cluster), plus `hairpin` (a local endpoint
//! reaching itself through its Service).
//!
//! externalTrafficPolicy: Local, short-circuited as upstream does: traffic
//! to a Local frontend (NodePort, external or load-balancer IP) from the
//! node itself (`fib saddr type local`, masqueraded so that replies to
//! 127.0.0.1 or another node address come back) or from a pod (a source in
//! `--cluster-cidr`) is not limited to the node's endpoints but goes to the
//! Service's cluster-wide ones. Such frontends are in the set
//! `external-local`, the verdict map `service-ips-cluster` sends them to the
//! `endpoints-N` chain of their cluster-wide count with the packet mark bit
//! [`SHORT_CIRCUIT_MARK`], and that chain's rule for the bit picks a slot
//! from [`CLUSTER_SLOT_OFFSET`] on in `backends`, where the cluster-wide
//! backends are. No chain is added per Service: two elements per frontend.
//!
//! [`Desired`] is the content as plain values; [`full_script`],
//! [`resync_script`] and [`diff_script`] render nft scripts (`nft -f -`),
//! each one atomic transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Frontend, Masquerade, NoEndpoints, Protocol};

/// The packet-mark bit that asks for masquerading in postrouting (upstream's 0x4000).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// The packet-mark bit that sends a new connection to a Local frontend to
/// its cluster-wide backends (cleared in postrouting).
pub const SHORT_CIRCUIT_MARK: u32 = 0x2000;
/// The first `backends` slot of a frontend's cluster-wide backends.
pub const CLUSTER_SLOT_OFFSET: usize = 65536;
/// The fewest `endpoints-N` chains a table is created with.
pub const MIN_ENDPOINT_CHAINS: usize = 128;
/// Size of the dynamic session-affinity map.
pub const AFFINITY_MAP_SIZE: u32 = 262_144;

/// The table's name and the settings its fixed rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The table, family `ip`.
    pub name: String,
    /// `--cluster-cidr`s (IPv4, `a.b.c.d/n`): clients outside them are masqueraded to ClusterIPs.
    pub cluster_cidrs: Vec<String>,
}

pub const MAP_SERVICE_IPS: &str = "service-ips";
pub const MAP_BACKENDS: &str = "backends";
pub const MAP_NO_ENDPOINTS: &str = "no-endpoints";
pub const SET_MASQ_OFF_CLUSTER: &str = "masq-off-cluster";
pub const SET_MASQ_ALWAYS: &str = "masq-always";
pub const SET_HAIRPIN: &str = "hairpin";
pub const MAP_AFFINITY_SERVICES: &str = "affinity-services";
pub const MAP_AFFINITY: &str = "affinity";
pub const SET_EXTERNAL_LOCAL: &str = "external-local";
pub const MAP_SERVICE_IPS_CLUSTER: &str = "service-ips-cluster";

const FRONTEND: &str = "ip daddr . meta l4proto . th dport";
const TRANSPORTS: &str = "meta l4proto { tcp, udp, sctp }";

/// The maps and sets the proxy fills (all but `affinity`, which the packet path fills), in creation order.
const MANAGED: [(&str, &str); 9] = [
    (MAP_SERVICE_IPS, "typeof ip daddr . meta l4proto . th dport : verdict;"),
    (MAP_BACKENDS, "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport;"),
    (MAP_NO_ENDPOINTS, "typeof ip daddr . meta l4proto . th dport : verdict;"),
    (SET_MASQ_OFF_CLUSTER, "typeof ip daddr . meta l4proto . th dport;"),
    (SET_MASQ_ALWAYS, "typeof ip daddr . meta l4proto . th dport;"),
    (SET_HAIRPIN, "typeof ip saddr . ip daddr;"),
    (MAP_AFFINITY_SERVICES, "typeof ip daddr . meta l4proto . th dport : verdict;"),
    (SET_EXTERNAL_LOCAL, "typeof ip daddr . meta l4proto . th dport;"),
    (MAP_SERVICE_IPS_CLUSTER, "typeof ip daddr . meta l4proto . th dport : verdict;"),
];

/// The table's content apart from its fixed chains: map elements (key →
/// value, empty for sets) and the shared per-count and per-timeout chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Chains shared by frontends (`endpoints-N`, `affinity-T`) and their rules.
    pub chains: BTreeMap<String, Vec<String>>,
}

impl Desired {
    /// The content for these frontends; `hairpin` lists the endpoints on this node.
    pub fn build<'a>(frontends: impl IntoIterator<Item = &'a Frontend>, hairpin: &BTreeSet<Ipv4Addr>) -> Desired {
        let frontends: Vec<&Frontend> = frontends.into_iter().collect();
        let largest = frontends.iter().map(|f| f.largest()).max().unwrap_or(0);
        let mut d = Desired::elements(frontends, hairpin);
        d.chains.extend(endpoint_chains(largest));
        d
    }

    /// The elements of these frontends (and their affinity chains), without the `endpoints-N` chains.
    pub fn elements<'a>(frontends: impl IntoIterator<Item = &'a Frontend>, hairpin: &BTreeSet<Ipv4Addr>) -> Desired {
        let mut maps: BTreeMap<&'static str, BTreeMap<String, String>> =
            MANAGED.iter().map(|(name, _)| (*name, BTreeMap::new())).collect();
        let mut chains = BTreeMap::new();
        let mut put = |map: &'static str, key: String, value: String| {
            if let Some(m) = maps.get_mut(map) {
                m.insert(key, value);
            }
        };
        for f in frontends {
            let key = f.key.to_string();
            match f.masquerade {
                Masquerade::Never => {}
                Masquerade::OffCluster => put(SET_MASQ_OFF_CLUSTER, key.clone(), String::new()),
                Masquerade::Always => put(SET_MASQ_ALWAYS, key.clone(), String::new()),
            }
            if !f.cluster_backends.is_empty() {
                put(SET_EXTERNAL_LOCAL, key.clone(), String::new());
                let m = f.cluster_backends.len();
                put(MAP_SERVICE_IPS_CLUSTER, key.clone(), format!("goto endpoints-{m}"));
                for (slot, b) in f.cluster_backends.iter().enumerate() {
                    put(MAP_BACKENDS, format!("{key} . {}", CLUSTER_SLOT_OFFSET + slot), b.to_string());
                }
            }
            if f.backends.is_empty() {
                let verdict = match f.no_endpoints {
                    NoEndpoints::Reject => "goto reject-service",
                    NoEndpoints::Drop => "drop",
                };
                put(MAP_NO_ENDPOINTS, key, verdict.to_string());
                continue;
            }
            let n = f.backends.len();
            put(MAP_SERVICE_IPS, key.clone(), format!("goto endpoints-{n}"));
            for (slot, b) in f.backends.iter().enumerate() {
                put(MAP_BACKENDS, format!("{key} . {slot}"), b.to_string());
            }
            if let Some(timeout) = f.affinity_timeout {
                let chain = format!("affinity-{timeout}");
                chains.entry(chain.clone()).or_insert_with(|| affinity_chain(timeout));
                put(MAP_AFFINITY_SERVICES, key, format!("goto {chain}"));
            }
        }
        for ip in hairpin {
            put(SET_HAIRPIN, format!("{ip} . {ip}"), String::new());
        }
        Desired { maps, chains }
    }

    /// The number of map and set elements.
    pub fn element_count(&self) -> usize {
        self.maps.values().map(BTreeMap::len).sum()
    }

    /// Whether going from `self` to `new` needs the table recreated: `new`
    /// needs `endpoints-N` chains the table lacks (see the module's docs).
    pub fn needs_recreate(&self, new: &Desired) -> bool {
        new.chains.keys().any(|c| c.starts_with("endpoints-") && !self.chains.contains_key(c))
    }

    /// The number of chains in the table (fixed ones included).
    pub fn chain_count(&self) -> usize {
        self.chains.len() + fixed_chains(&TableConfig { name: String::new(), cluster_cidrs: vec![] }).len()
    }
}

/// The `endpoints-N` chains a table holding a Service with `largest` endpoints is created with.
pub fn endpoint_chains(largest: usize) -> impl Iterator<Item = (String, Vec<String>)> {
    (1..=largest.next_power_of_two().max(MIN_ENDPOINT_CHAINS)).map(|n| (format!("endpoints-{n}"), endpoints_chain(n)))
}

/// The affinity chain of a timeout.
pub fn affinity_chain_entry(timeout: u32) -> (String, Vec<String>) {
    (format!("affinity-{timeout}"), affinity_chain(timeout))
}

fn endpoints_chain(n: usize) -> Vec<String> {
    let bit = format!("0x{SHORT_CIRCUIT_MARK:x}");
    vec![
        format!("{TRANSPORTS} dnat ip to ip saddr . {FRONTEND} map @{MAP_AFFINITY}"),
        format!(
            "meta mark & {bit} == {bit} {TRANSPORTS} dnat ip to {FRONTEND} . numgen random mod {n} offset {CLUSTER_SLOT_OFFSET} map @{MAP_BACKENDS}"
        ),
        format!("{TRANSPORTS} dnat ip to {FRONTEND} . numgen random mod {n} map @{MAP_BACKENDS}"),
    ]
}

fn affinity_chain(timeout: u32) -> Vec<String> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .iter()
        .map(|p| {
            format!(
                "ct original protocol {p} update @{MAP_AFFINITY} {{ ip saddr . ct original ip daddr . meta l4proto . ct original proto-dst timeout {timeout}s : ip daddr . th dport }}"
            )
        })
        .collect()
}

/// A chain's declaration (hook and priority for base chains) and its rules.
struct Chain {
    name: &'static str,
    hook: Option<&'static str>,
    rules: Vec<String>,
}

fn fixed_chains(cfg: &TableConfig) -> Vec<Chain> {
    let mark = format!("0x{MASQUERADE_MARK:x}");
    let mut services = vec![format!("meta l4proto != {{ tcp, udp, sctp }} return")];
    // externalTrafficPolicy: Local short-circuited for the node's own
    // traffic (masqueraded) and for pods' (see the module's docs).
    let short = format!("0x{SHORT_CIRCUIT_MARK:x}");
    let both = format!("0x{:x}", SHORT_CIRCUIT_MARK | MASQUERADE_MARK);
    services.push(format!(
        "fib saddr type local {FRONTEND} @{SET_EXTERNAL_LOCAL} meta mark set meta mark | {both} {FRONTEND} vmap @{MAP_SERVICE_IPS_CLUSTER}"
    ));
    if !cfg.cluster_cidrs.is_empty() {
        services.push(format!(
            "ip saddr {{ {} }} {FRONTEND} @{SET_EXTERNAL_LOCAL} meta mark set meta mark | {short} {FRONTEND} vmap @{MAP_SERVICE_IPS_CLUSTER}",
            cfg.cluster_cidrs.join(", ")
        ));
    }
    if !cfg.cluster_cidrs.is_empty() {
        services.push(format!(
            "ip saddr != {{ {} }} {FRONTEND} @{SET_MASQ_OFF_CLUSTER} meta mark set meta mark | {mark}",
            cfg.cluster_cidrs.join(", ")
        ));
    }
    services.push(format!("{FRONTEND} @{SET_MASQ_ALWAYS} meta mark set meta mark | {mark}"));
    services.push(format!("{FRONTEND} vmap @{MAP_SERVICE_IPS}"));
    let check = vec!["ct state new jump endpoint-check".to_string()];
    let record = vec!["ct state new ct status dnat jump affinity-record".to_string()];
    vec![
        Chain {
            name: "nat-prerouting",
            hook: Some("type nat hook prerouting priority dstnat; policy accept;"),
            rules: vec!["jump services".into()],
        },
        Chain {
            name: "nat-output",
            hook: Some("type nat hook output priority -100; policy accept;"),
            rules: vec!["jump services".into()],
        },
        Chain {
            name: "nat-postrouting",
            hook: Some("type nat hook postrouting priority srcnat; policy accept;"),
            rules: vec!["jump masquerading".into()],
        },
        Chain {
            name: "masquerading",
            hook: None,
            rules: vec![
                format!("meta mark & 0x{SHORT_CIRCUIT_MARK:x} != 0 meta mark set meta mark & 0x{:x}", !SHORT_CIRCUIT_MARK),
                format!("ct status dnat ip saddr . ip daddr @{SET_HAIRPIN} meta mark set meta mark | {mark}"),
                format!("meta mark & {mark} == 0 return"),
                format!("meta mark set meta mark ^ {mark}"),
                "masquerade fully-random".into(),
            ],
        },
        Chain { name: "services", hook: None, rules: services },
        Chain {
            name: "filter-input",
            hook: Some("type filter hook input priority -10; policy accept;"),
            rules: check.clone(),
        },
        Chain {
            name: "filter-forward",
            hook: Some("type filter hook forward priority -10; policy accept;"),
            rules: check.clone(),
        },
        Chain {
            name: "filter-output",
            hook: Some("type filter hook output priority -10; policy accept;"),
            rules: check,
        },
        Chain {
            name: "endpoint-check",
            hook: None,
            rules: vec![
                "meta l4proto != { tcp, udp, sctp } return".into(),
                format!("{FRONTEND} vmap @{MAP_NO_ENDPOINTS}"),
            ],
        },
        // A TCP reset also reaches the node's own clients (an ICMP error to a
        // locally generated, not yet checksummed segment is not sent).
        Chain {
            name: "reject-service",
            hook: None,
            rules: vec!["meta l4proto tcp reject with tcp reset".into(), "reject".into()],
        },
        Chain {
            name: "affinity-prerouting",
            hook: Some("type filter hook prerouting priority -99; policy accept;"),
            rules: record.clone(),
        },
        Chain {
            name: "affinity-output",
            hook: Some("type filter hook output priority -99; policy accept;"),
            rules: record,
        },
        Chain {
            name: "affinity-record",
            hook: None,
            rules: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                .iter()
                .map(|p| {
                    format!(
                        "ct original protocol {p} ct original ip daddr . meta l4proto . ct original proto-dst vmap @{MAP_AFFINITY_SERVICES}"
                    )
                })
                .collect(),
        },
    ]
}

fn declare_chain(out: &mut String, table: &str, name: &str, hook: Option<&str>) {
    match hook {
        Some(hook) => {
            let _ = writeln!(out, "add chain ip {table} {name} {{ {hook} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {table} {name}");
        }
    }
}

fn declare_maps(out: &mut String, table: &str) {
    for (name, spec) in MANAGED {
        let kind = if spec.contains(':') { "map" } else { "set" };
        let _ = writeln!(out, "add {kind} ip {table} {name} {{ {spec} }}");
    }
    let _ = writeln!(
        out,
        "add map ip {table} {MAP_AFFINITY} {{ typeof ip saddr . ip daddr . meta l4proto . th dport : ip daddr . th dport; size {AFFINITY_MAP_SIZE}; flags dynamic,timeout; timeout 3h; }}"
    );
}

/// Adds (or, with `delete`, deletes) elements, in lines of bounded length.
fn elements<'a>(
    out: &mut String,
    verb: &str,
    table: &str,
    map: &str,
    items: impl IntoIterator<Item = (&'a String, Option<&'a String>)>,
) {
    const CHUNK: usize = 2000;
    let mut count = 0;
    for (key, value) in items {
        if count == 0 {
            let _ = write!(out, "{verb} element ip {table} {map} {{ ");
        } else {
            out.push_str(", ");
        }
        out.push_str(key);
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push_str(" : ");
            out.push_str(v);
        }
        count += 1;
        if count == CHUNK {
            out.push_str(" }\n");
            count = 0;
        }
    }
    if count > 0 {
        out.push_str(" }\n");
    }
}

fn add_rules(out: &mut String, table: &str, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule ip {table} {chain} {rule}");
    }
}

/// Creates the table from scratch, replacing any earlier one (startup).
pub fn full_script(cfg: &TableConfig, desired: &Desired) -> String {
    let t = &cfg.name;
    let mut out = String::with_capacity(64 * desired.element_count() + 4096);
    let _ =
        writeln!(out, "add table ip {t}\ndelete table ip {t}\nadd table ip {t} {{ comment \"rules of kube-proxy\"; }}");
    body(&mut out, cfg, desired);
    out
}

/// The declarations, rules and elements of a freshly created or flushed table.
fn body(out: &mut String, cfg: &TableConfig, desired: &Desired) {
    let t = &cfg.name;
    let fixed = fixed_chains(cfg);
    // Chains first: the maps' verdicts and the rules refer to them.
    for c in &fixed {
        declare_chain(out, t, c.name, c.hook);
    }
    for name in desired.chains.keys() {
        declare_chain(out, t, name, None);
    }
    declare_maps(out, t);
    for c in &fixed {
        add_rules(out, t, c.name, &c.rules);
    }
    for (name, rules) in &desired.chains {
        add_rules(out, t, name, rules);
    }
    for (map, content) in &desired.maps {
        elements(out, "add", t, map, content.iter().map(|(k, v)| (k, Some(v))));
    }
}

/// Rewrites the whole content in place (the periodic resync): every chain and
/// map the proxy fills is flushed and refilled, chains no longer used are
/// deleted, and the session-affinity map keeps its entries.
pub fn resync_script(cfg: &TableConfig, old: &Desired, desired: &Desired) -> String {
    let t = &cfg.name;
    let mut out = String::with_capacity(64 * desired.element_count() + 4096);
    let _ = writeln!(out, "add table ip {t}");
    for c in fixed_chains(cfg) {
        declare_chain(&mut out, t, c.name, c.hook);
        let _ = writeln!(out, "flush chain ip {t} {}", c.name);
    }
    // The `endpoints-N` chains keep their rules (they never change, and
    // could not be rewritten: see the module's docs).
    for name in old.chains.keys().chain(desired.chains.keys()).filter(|n| !n.starts_with("endpoints-")) {
        declare_chain(&mut out, t, name, None);
        let _ = writeln!(out, "flush chain ip {t} {name}");
    }
    declare_maps(&mut out, t);
    for (name, spec) in MANAGED {
        let kind = if spec.contains(':') { "map" } else { "set" };
        let _ = writeln!(out, "flush {kind} ip {t} {name}");
    }
    for c in &fixed_chains(cfg) {
        add_rules(&mut out, t, c.name, &c.rules);
    }
    for (name, rules) in desired.chains.iter().filter(|(n, _)| !n.starts_with("endpoints-")) {
        add_rules(&mut out, t, name, rules);
    }
    for (map, content) in &desired.maps {
        elements(&mut out, "add", t, map, content.iter().map(|(k, v)| (k, Some(v))));
    }
    for name in old.chains.keys().filter(|n| !desired.chains.contains_key(*n)) {
        // A chain must be empty to be deleted.
        let _ = writeln!(out, "flush chain ip {t} {name}\ndelete chain ip {t} {name}");
    }
    out
}

/// The smallest transaction taking the table from `old` to `new`: changed
/// and removed elements deleted, changed and new ones added, shared chains
/// created before use and deleted after their last reference. `None` when
/// nothing changes.
pub fn diff_script(cfg: &TableConfig, old: &Desired, new: &Desired) -> Option<String> {
    let t = &cfg.name;
    let mut out = String::new();
    for (name, rules) in &new.chains {
        if old.chains.get(name) != Some(rules) {
            declare_chain(&mut out, t, name, None);
            let _ = writeln!(out, "flush chain ip {t} {name}");
            add_rules(&mut out, t, name, rules);
        }
    }
    let empty = BTreeMap::new();
    let mut additions = String::new();
    for (map, new_content) in &new.maps {
        let old_content = old.maps.get(map).unwrap_or(&empty);
        let deleted = old_content.iter().filter(|(k, v)| new_content.get(*k) != Some(*v)).map(|(k, _)| (k, None));
        elements(&mut out, "delete", t, map, deleted);
        let added = new_content.iter().filter(|(k, v)| old_content.get(*k) != Some(*v)).map(|(k, v)| (k, Some(v)));
        elements(&mut additions, "add", t, map, added);
    }
    // Maps only in `old` (not produced by `build`, but keep the diff total).
    for (map, old_content) in old.maps.iter().filter(|(m, _)| !new.maps.contains_key(*m)) {
        elements(&mut out, "delete", t, map, old_content.keys().map(|k| (k, None)));
    }
    out.push_str(&additions);
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        // A chain must be empty to be deleted.
        let _ = writeln!(out, "flush chain ip {t} {name}\ndelete chain ip {t} {name}");
    }
    (!out.is_empty()).then_some(out)
}

/// Removes the table (`--cleanup`); succeeds when there is none.
pub fn cleanup_script(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, FrontendKey};

    fn frontend(ip: [u8; 4], port: u16, backends: &[([u8; 4], u16)]) -> Frontend {
        Frontend {
            key: FrontendKey { ip: Ipv4Addr::from(ip), protocol: Protocol::Tcp, port },
            backends: backends.iter().map(|(ip, port)| Backend { ip: Ipv4Addr::from(*ip), port: *port }).collect(),
            masquerade: Masquerade::OffCluster,
            affinity_timeout: None,
            no_endpoints: NoEndpoints::Reject,
            cluster_backends: Vec::new(),
            service: "default/web:http".into(),
        }
    }

    fn cfg() -> TableConfig {
        TableConfig { name: "kube-proxy".into(), cluster_cidrs: vec!["10.244.0.0/16".into()] }
    }

    #[test]
    fn a_frontend_jumps_to_the_chain_of_its_endpoint_count_and_each_slot_maps_to_one_backend() {
        let f = frontend([10, 96, 0, 1], 80, &[([10, 244, 1, 2], 8080), ([10, 244, 2, 2], 8080)]);
        let d = Desired::build([&f], &BTreeSet::new());
        assert_eq!(d.maps[MAP_SERVICE_IPS]["10.96.0.1 . tcp . 80"], "goto endpoints-2");
        assert_eq!(d.maps[MAP_BACKENDS]["10.96.0.1 . tcp . 80 . 0"], "10.244.1.2 . 8080");
        assert_eq!(d.maps[MAP_BACKENDS]["10.96.0.1 . tcp . 80 . 1"], "10.244.2.2 . 8080");
        assert!(d.maps[SET_MASQ_OFF_CLUSTER].contains_key("10.96.0.1 . tcp . 80"));
        assert!(d.chains["endpoints-2"][2].contains("numgen random mod 2 map @backends"));
        assert!(d.chains["endpoints-2"][1].starts_with("meta mark & 0x2000 == 0x2000 "));
        assert!(d.chains["endpoints-2"][1].contains("numgen random mod 2 offset 65536 map @backends"));
        assert!(d.maps[MAP_NO_ENDPOINTS].is_empty());
    }

    #[test]
    fn chains_do_not_grow_with_services() {
        let many: Vec<Frontend> = (0..1000u16)
            .map(|i| {
                frontend(
                    [10, 96, (i / 250) as u8, (i % 250) as u8 + 1],
                    80,
                    &[([10, 1, 1, 1], 80), ([10, 1, 1, 2], 80)],
                )
            })
            .collect();
        let d = Desired::build(&many, &BTreeSet::new());
        assert_eq!(d.chains.len(), MIN_ENDPOINT_CHAINS);
        assert_eq!(d.maps[MAP_BACKENDS].len(), 2000);
        assert_eq!(d.chain_count(), MIN_ENDPOINT_CHAINS + fixed_chains(&cfg()).len());
    }

    #[test]
    fn a_service_larger_than_the_endpoint_chains_recreates_the_table_with_more() {
        let small = Desired::build([&frontend([10, 96, 0, 1], 80, &[([10, 1, 1, 1], 80)])], &BTreeSet::new());
        let backends: Vec<([u8; 4], u16)> = (0..200u8).map(|i| ([10, 1, 1, i], 80)).collect();
        let large = Desired::build([&frontend([10, 96, 0, 1], 80, &backends)], &BTreeSet::new());
        assert_eq!(large.chains.len(), 256);
        assert!(small.needs_recreate(&large));
        assert!(!large.needs_recreate(&small));
    }

    #[test]
    fn frontends_without_backends_reject_or_drop() {
        let mut a = frontend([10, 96, 0, 1], 80, &[]);
        let mut b = frontend([192, 168, 1, 10], 30080, &[]);
        b.no_endpoints = NoEndpoints::Drop;
        a.masquerade = Masquerade::Never;
        let d = Desired::build([&a, &b], &BTreeSet::new());
        assert_eq!(d.maps[MAP_NO_ENDPOINTS]["10.96.0.1 . tcp . 80"], "goto reject-service");
        assert_eq!(d.maps[MAP_NO_ENDPOINTS]["192.168.1.10 . tcp . 30080"], "drop");
        assert!(d.maps[MAP_SERVICE_IPS].is_empty());
        assert_eq!(d.chains.len(), MIN_ENDPOINT_CHAINS);
    }

    #[test]
    fn affinity_gets_the_chain_of_its_timeout() {
        let mut f = frontend([10, 96, 0, 1], 53, &[([10, 244, 1, 2], 53)]);
        f.key.protocol = Protocol::Udp;
        f.affinity_timeout = Some(60);
        let d = Desired::build([&f], &BTreeSet::new());
        assert_eq!(d.maps[MAP_AFFINITY_SERVICES]["10.96.0.1 . udp . 53"], "goto affinity-60");
        assert!(d.chains["affinity-60"][1].contains("ct original protocol udp update @affinity"));
        assert!(d.chains["affinity-60"][1].contains("timeout 60s"));
    }

    #[test]
    fn masquerade_policies_fill_their_sets_and_hairpin_lists_local_endpoints() {
        let mut ext = frontend([192, 168, 1, 10], 30080, &[([10, 244, 1, 2], 8080)]);
        ext.masquerade = Masquerade::Always;
        let mut local = frontend([192, 168, 1, 10], 30081, &[([10, 244, 1, 2], 8080)]);
        local.masquerade = Masquerade::Never;
        let hairpin = BTreeSet::from([Ipv4Addr::new(10, 244, 1, 2)]);
        let d = Desired::build([&ext, &local], &hairpin);
        assert_eq!(d.maps[SET_MASQ_ALWAYS].len(), 1);
        assert!(d.maps[SET_MASQ_OFF_CLUSTER].is_empty());
        assert!(d.maps[SET_HAIRPIN].contains_key("10.244.1.2 . 10.244.1.2"));
    }

    #[test]
    fn a_local_policy_frontend_keeps_its_cluster_wide_backends_past_the_offset() {
        let mut f = frontend([192, 168, 1, 10], 30080, &[]);
        f.masquerade = Masquerade::Never;
        f.no_endpoints = NoEndpoints::Drop;
        f.cluster_backends = (0..3u8).map(|i| Backend { ip: Ipv4Addr::new(10, 244, 2, i), port: 8080 }).collect();
        let d = Desired::build([&f], &BTreeSet::new());
        let key = "192.168.1.10 . tcp . 30080";
        assert_eq!(d.maps[MAP_NO_ENDPOINTS][key], "drop");
        assert!(d.maps[SET_EXTERNAL_LOCAL].contains_key(key));
        assert_eq!(d.maps[MAP_SERVICE_IPS_CLUSTER][key], "goto endpoints-3");
        assert!(!d.maps[MAP_SERVICE_IPS].contains_key(key));
        assert_eq!(d.maps[MAP_BACKENDS][&format!("{key} . 65538")], "10.244.2.2 . 8080");
        assert_eq!(d.maps[MAP_BACKENDS].len(), 3);
        let s = full_script(&cfg(), &d);
        assert!(s.contains("fib saddr type local ip daddr . meta l4proto . th dport @external-local meta mark set meta mark | 0x6000 ip daddr . meta l4proto . th dport vmap @service-ips-cluster"), "{s}");
        assert!(s.contains("ip saddr { 10.244.0.0/16 } ip daddr . meta l4proto . th dport @external-local meta mark set meta mark | 0x2000"), "{s}");
    }

    #[test]
    fn the_full_script_replaces_the_table_atomically_and_masquerades_off_cluster_clients() {
        let f = frontend([10, 96, 0, 1], 80, &[([10, 244, 1, 2], 8080)]);
        let s = full_script(&cfg(), &Desired::build([&f], &BTreeSet::new()));
        assert!(s.starts_with("add table ip kube-proxy\ndelete table ip kube-proxy\n"));
        assert!(s.contains("ip saddr != { 10.244.0.0/16 } ip daddr . meta l4proto . th dport @masq-off-cluster"));
        assert!(s.contains("add element ip kube-proxy backends { 10.96.0.1 . tcp . 80 . 0 : 10.244.1.2 . 8080 }"));
        // Chains are declared before the maps whose verdicts name them.
        assert!(
            s.find("add chain ip kube-proxy endpoints-1").unwrap()
                < s.find("add map ip kube-proxy service-ips").unwrap()
        );
    }

    #[test]
    fn one_endpoint_change_touches_only_its_own_elements() {
        let before = frontend([10, 96, 0, 1], 80, &[([10, 244, 1, 2], 8080), ([10, 244, 2, 2], 8080)]);
        let other = frontend([10, 96, 0, 2], 80, &[([10, 244, 3, 2], 8080)]);
        let mut after = before.clone();
        after.backends.push(Backend { ip: Ipv4Addr::new(10, 244, 4, 2), port: 8080 });
        let old = Desired::build([&before, &other], &BTreeSet::new());
        let new = Desired::build([&after, &other], &BTreeSet::new());
        let s = diff_script(&cfg(), &old, &new).unwrap();
        assert_eq!(
            s,
            "delete element ip kube-proxy service-ips { 10.96.0.1 . tcp . 80 }\n\
             add element ip kube-proxy backends { 10.96.0.1 . tcp . 80 . 2 : 10.244.4.2 . 8080 }\n\
             add element ip kube-proxy service-ips { 10.96.0.1 . tcp . 80 : goto endpoints-3 }\n"
        );
        assert_eq!(diff_script(&cfg(), &new, &new), None);
        // Back again: the third slot goes.
        let back = diff_script(&cfg(), &new, &old).unwrap();
        assert!(back.contains("delete element ip kube-proxy backends { 10.96.0.1 . tcp . 80 . 2 }"));
        assert!(!back.contains("chain"));
    }

    #[test]
    fn resync_keeps_the_affinity_map_and_drops_unused_chains() {
        let mut sticky = frontend([10, 96, 0, 1], 80, &[([10, 244, 1, 2], 8080), ([10, 244, 2, 2], 8080)]);
        sticky.affinity_timeout = Some(60);
        let plain = frontend([10, 96, 0, 1], 80, &[([10, 244, 1, 2], 8080)]);
        let s = resync_script(
            &cfg(),
            &Desired::build([&sticky], &BTreeSet::new()),
            &Desired::build([&plain], &BTreeSet::new()),
        );
        assert!(!s.contains("flush map ip kube-proxy affinity\n"));
        assert!(s.contains("flush map ip kube-proxy backends\n"));
        assert!(!s.contains("flush chain ip kube-proxy endpoints-"));
        assert!(s.ends_with("delete chain ip kube-proxy affinity-60\n"));
    }
}
