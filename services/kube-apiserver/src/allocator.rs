//! Service ClusterIP and NodePort allocation. Each allocation is an etcd key
//! created with a "key absent" transaction, so two apiservers can never hand
//! out the same address or port.

use std::net::Ipv4Addr;

use apimachinery::status::{ApiError, FieldError};
use serde_json::{json, Value};

use crate::storage::{EtcdStorage, StorageError};

/// Allocates from `--service-cluster-ip-range` and `--service-node-port-range`.
pub struct Allocator {
    storage: EtcdStorage,
    root: String,
    /// First address of the range (network address) and its size.
    base: u32,
    size: u32,
    ports: (u16, u16),
}

/// Parses `10.96.0.0/12`.
pub fn parse_cidr(cidr: &str) -> Result<(u32, u32), String> {
    let (addr, bits) = cidr.split_once('/').ok_or_else(|| format!("invalid CIDR {cidr:?}"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("invalid CIDR {cidr:?}: {e}"))?;
    let bits: u32 = bits.parse().map_err(|e| format!("invalid CIDR {cidr:?}: {e}"))?;
    if !(8..=30).contains(&bits) {
        return Err(format!("invalid CIDR {cidr:?}: prefix must be between /8 and /30"));
    }
    let size = 1u32 << (32 - bits);
    Ok((u32::from(addr) & !(size - 1), size))
}

/// Parses `30000-32767`.
pub fn parse_port_range(r: &str) -> Result<(u16, u16), String> {
    let (a, b) = r.split_once('-').ok_or_else(|| format!("invalid port range {r:?}"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("invalid port range {r:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("invalid port range {r:?}: {e}"))?;
    if a > b {
        return Err(format!("invalid port range {r:?}"));
    }
    Ok((a, b))
}

fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4();
    let x = b.as_bytes();
    u32::from_le_bytes([x[0], x[1], x[2], x[3]])
}

impl Allocator {
    pub fn new(storage: EtcdStorage, root: String, cidr: &str, ports: &str) -> Result<Self, String> {
        let (base, size) = parse_cidr(cidr)?;
        Ok(Allocator { storage, root, base, size, ports: parse_port_range(ports)? })
    }

    /// The first usable address: the `kubernetes` service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn ip_key(&self, ip: Ipv4Addr) -> String {
        format!("{}/ranges/serviceips/{ip}", self.root)
    }

    fn port_key(&self, port: u16) -> String {
        format!("{}/ranges/servicenodeports/{port}", self.root)
    }

    async fn claim(&self, key: &str, owner: &str) -> Result<bool, ApiError> {
        match self.storage.create(key, owner.as_bytes().to_vec()).await {
            Ok(_) => Ok(true),
            Err(StorageError::KeyExists(_)) => Ok(false),
            Err(e) => Err(ApiError::internal(format!("allocating: {e}"))),
        }
    }

    /// The allocated names under a prefix (addresses or ports).
    async fn allocated(&self, prefix: &str) -> Result<std::collections::HashSet<String>, ApiError> {
        let (keys, _) =
            self.storage.key_revisions(prefix).await.map_err(|e| ApiError::internal(format!("allocating: {e}")))?;
        Ok(keys.into_iter().filter_map(|(k, _)| k.strip_prefix(prefix).map(String::from)).collect())
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size - 1
    }

    /// Fills `spec.clusterIP(s)` and node ports of a new Service.
    pub async fn allocate_for(&self, svc: &mut Value) -> Result<(), ApiError> {
        let name = svc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let owner = format!("{}/{}", svc["metadata"]["namespace"].as_str().unwrap_or_default(), name);
        let t = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
        if t == "ExternalName" {
            return Ok(());
        }
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
        if requested != "None" {
            let ip = if requested.is_empty() {
                let offsets = self.size - 2;
                let mut candidates = (0..8).map(|_| 1 + random_u32() % offsets).collect::<Vec<_>>();
                let mut got = None;
                for round in 0..2 {
                    for offset in &candidates {
                        let ip = Ipv4Addr::from(self.base + offset);
                        if self.claim(&self.ip_key(ip), &owner).await? {
                            got = Some(ip);
                            break;
                        }
                    }
                    if got.is_some() || round == 1 {
                        break;
                    }
                    // Random probes missed: take the free ones from what is allocated.
                    let taken = self.allocated(&format!("{}/ranges/serviceips/", self.root)).await?;
                    let start = random_u32() % offsets;
                    candidates = (0..offsets)
                        .map(|i| 1 + (start + i) % offsets)
                        .filter(|o| !taken.contains(&Ipv4Addr::from(self.base + o).to_string()))
                        .take(64)
                        .collect();
                }
                got.ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?
            } else {
                let invalid = |detail: String| {
                    ApiError::invalid(
                        "",
                        "Service",
                        &name,
                        &[FieldError::invalid("spec.clusterIPs", format!("[]string{{\"{requested}\"}}"), detail)],
                    )
                };
                let ip: Ipv4Addr = requested.parse().map_err(|_| invalid("must be a valid IP address".into()))?;
                if !self.in_range(ip) {
                    return Err(invalid(format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range."
                    )));
                }
                if !self.claim(&self.ip_key(ip), &owner).await? {
                    return Err(invalid(format!("failed to allocate IP {ip}: provided IP is already allocated")));
                }
                ip
            };
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        } else {
            svc["spec"]["clusterIPs"] = json!(["None"]);
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
        if t == "NodePort" || t == "LoadBalancer" {
            let n = svc["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
            for i in 0..n {
                let want = svc["spec"]["ports"][i]["nodePort"].as_u64().unwrap_or(0) as u16;
                let port = if want == 0 {
                    self.claim_free_port(&owner).await?
                } else {
                    let field = format!("spec.ports[{i}].nodePort");
                    if want < self.ports.0 || want > self.ports.1 {
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            &[FieldError::invalid_json(
                                field,
                                &json!(want),
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.ports.0, self.ports.1
                                ),
                            )],
                        ));
                    }
                    if !self.claim(&self.port_key(want), &owner).await? {
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            &[FieldError::invalid_json(field, &json!(want), "provided port is already allocated")],
                        ));
                    }
                    want
                };
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(())
    }

    /// Claims one free node port.
    async fn claim_free_port(&self, owner: &str) -> Result<u16, ApiError> {
        let span = u32::from(self.ports.1 - self.ports.0) + 1;
        let mut candidates: Vec<u16> = (0..8).map(|_| self.ports.0 + (random_u32() % span) as u16).collect();
        for round in 0..2 {
            for p in &candidates {
                if self.claim(&self.port_key(*p), owner).await? {
                    return Ok(*p);
                }
            }
            if round == 1 {
                break;
            }
            // Random probes missed: take the free ones from what is allocated.
            let taken = self.allocated(&format!("{}/ranges/servicenodeports/", self.root)).await?;
            let start = random_u32() % span;
            candidates = (0..span)
                .map(|i| self.ports.0 + ((start + i) % span) as u16)
                .filter(|p| !taken.contains(&p.to_string()))
                .take(64)
                .collect();
        }
        Err(ApiError::internal("failed to allocate a nodePort: range is full"))
    }

    /// Claims `n` free node ports for an update that needs them.
    pub async fn claim_node_ports(&self, n: usize, owner: &str) -> Result<Vec<u16>, ApiError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.claim_free_port(owner).await {
                Ok(p) => out.push(p),
                Err(e) => {
                    for p in out {
                        self.release_node_port(p).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    pub async fn release_node_port(&self, port: u16) {
        let key = self.port_key(port);
        if let Ok(Some(kv)) = self.storage.get(&key).await {
            let _ = self.storage.delete(&key, kv.mod_revision).await;
        }
    }

    /// Frees what a Service held (on delete, or when its create failed).
    pub async fn release(&self, svc: &Value) {
        if let Some(ip) = svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            let key = self.ip_key(ip);
            if let Ok(Some(kv)) = self.storage.get(&key).await {
                let _ = self.storage.delete(&key, kv.mod_revision).await;
            }
        }
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(port) = p["nodePort"].as_u64() {
                let key = self.port_key(port as u16);
                if let Ok(Some(kv)) = self.storage.get(&key).await {
                    let _ = self.storage.delete(&key, kv.mod_revision).await;
                }
            }
        }
    }
}

/// Node ports of a Service's ports.
pub fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .map(|p| p as u16)
        .collect()
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(svc["spec"]["type"].as_str(), Some("NodePort") | Some("LoadBalancer"))
}

/// How many node ports an updated Service needs beyond those it keeps.
pub fn missing_node_ports(new: &Value, old: &Value) -> usize {
    if !needs_node_ports(new) {
        return 0;
    }
    let mut probe = new.clone();
    fill_node_ports(&mut probe, old, &mut Vec::new());
    probe["spec"]["ports"].as_array().into_iter().flatten().filter(|p| p["nodePort"].as_u64().is_none()).count()
}

/// Gives an updated Service its node ports: kept from the old version for the
/// same port and protocol, else taken from `pool`; dropped when the type no
/// longer uses them (as upstream does on a change to ClusterIP).
pub fn fill_node_ports(new: &mut Value, old: &Value, pool: &mut Vec<u16>) {
    let keep = needs_node_ports(new);
    let old_ports: Vec<Value> = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let Some(ports) = new["spec"]["ports"].as_array_mut() else { return };
    for p in ports.iter_mut() {
        let Some(m) = p.as_object_mut() else { continue };
        if !keep {
            m.remove("nodePort");
            continue;
        }
        if m.get("nodePort").and_then(Value::as_u64).unwrap_or(0) != 0 {
            continue;
        }
        let proto = m.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
        let same = old_ports.iter().find(|o| {
            o["port"] == m["port"]
                && o["protocol"].as_str().unwrap_or("TCP") == proto
                && o["nodePort"].as_u64().is_some()
        });
        if let Some(o) = same {
            m.insert("nodePort".into(), o["nodePort"].clone());
        } else if let Some(port) = pool.pop() {
            m.insert("nodePort".into(), json!(port));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_changes_keep_reuse_or_drop_node_ports() {
        let old = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(missing_node_ports(&new, &old), 1);
        fill_node_ports(&mut new, &old, &mut vec![30443]);
        assert_eq!(node_ports(&new), vec![30080, 30443]);
        let mut cluster = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}});
        fill_node_ports(&mut cluster, &old, &mut Vec::new());
        assert!(node_ports(&cluster).is_empty());
    }

    #[test]
    fn cidrs_and_port_ranges_parse_as_upstream_flags() {
        assert_eq!(parse_cidr("10.96.0.0/12").unwrap(), (u32::from(Ipv4Addr::new(10, 96, 0, 0)), 1 << 20));
        assert!(parse_cidr("10.96.0.0").is_err());
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("5-1").is_err());
    }
}
