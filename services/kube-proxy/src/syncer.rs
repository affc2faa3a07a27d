//! Takes the table to a wanted state: the whole table at start, the
//! difference on each change, a rewrite in place on the periodic resync;
//! then flushes the conntrack entries and affinity records that point at
//! endpoints that went away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::convert::Changes;
use crate::model::{Backend, Frontend, FrontendKey, Protocol};
use crate::nft::{NftError, Runner};
use crate::ruleset::{self, Desired, TableConfig};

/// How a sync reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The table was created anew.
    Full,
    /// Every managed chain and map was rewritten in place.
    Resync,
    /// Only the changed elements.
    Incremental,
    /// Nothing changed.
    Unchanged,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Resync => "resync",
            SyncKind::Incremental => "incremental",
            SyncKind::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncStats {
    pub kind: SyncKind,
    pub duration: Duration,
    pub elements: usize,
    pub chains: usize,
    pub script_bytes: usize,
}

/// Owns the proxy's table.
pub struct Syncer {
    cfg: TableConfig,
    runner: Runner,
    /// What the kernel holds, as last applied; `None` before the first sync or after a failure.
    applied: Option<Desired>,
    frontends: BTreeMap<FrontendKey, Frontend>,
    hairpin: BTreeSet<Ipv4Addr>,
}

impl Syncer {
    pub fn new(cfg: TableConfig, runner: Runner) -> Syncer {
        Syncer { cfg, runner, applied: None, frontends: BTreeMap::new(), hairpin: BTreeSet::new() }
    }

    pub fn table(&self) -> &TableConfig {
        &self.cfg
    }

    /// Programs `frontends` (all of them); `resync` rewrites everything instead of applying the difference.
    pub async fn sync(
        &mut self,
        frontends: Vec<Frontend>,
        hairpin: &BTreeSet<Ipv4Addr>,
        resync: bool,
    ) -> Result<SyncStats, NftError> {
        let mut changes = Changes::new();
        let mut new: BTreeMap<FrontendKey, Frontend> = frontends.into_iter().map(|f| (f.key, f)).collect();
        for key in self.frontends.keys() {
            if !new.contains_key(key) {
                changes.insert(*key, None);
            }
        }
        while let Some((key, f)) = new.pop_first() {
            if self.frontends.get(&key) != Some(&f) {
                changes.insert(key, Some(f));
            }
        }
        self.sync_changes(changes, hairpin, resync).await
    }

    /// Programs the frontends as they were with `changes` applied (a new
    /// frontend per changed key, `None` for a removed one): the cost of a
    /// change follows the changed frontends, not all of them.
    pub async fn sync_changes(
        &mut self,
        mut changes: Changes,
        hairpin: &BTreeSet<Ipv4Addr>,
        resync: bool,
    ) -> Result<SyncStats, NftError> {
        let start = Instant::now();
        changes.retain(|key, f| self.frontends.get(key) != f.as_ref());
        if !resync {
            if let Some(applied) = self.applied.take() {
                match self.incremental(applied, &changes, hairpin).await {
                    Ok(Some((kind, script_bytes, desired))) => {
                        let previous = self.commit(changes, hairpin);
                        self.clean_stale(&previous).await;
                        let stats = SyncStats {
                            kind,
                            duration: start.elapsed(),
                            elements: desired.element_count(),
                            chains: desired.chain_count(),
                            script_bytes,
                        };
                        self.applied = Some(desired);
                        return Ok(stats);
                    }
                    // The table must be recreated (more endpoint chains).
                    Ok(None) => {}
                    // The kernel is not what we think (someone changed the table): start over.
                    Err(e) => tracing::warn!(error = %e, "applying the change failed; recreating the table"),
                }
            }
        }
        let previous = self.commit(changes, hairpin);
        let desired = Desired::build(self.frontends.values(), &self.hairpin);
        let (mut kind, script) = match &self.applied {
            Some(old) if resync && !old.needs_recreate(&desired) => {
                (SyncKind::Resync, ruleset::resync_script(&self.cfg, old, &desired))
            }
            _ => (SyncKind::Full, ruleset::full_script(&self.cfg, &desired)),
        };
        let mut script_bytes = script.len();
        if let Err(e) = self.runner.apply(&script).await {
            if kind == SyncKind::Full {
                self.applied = None;
                return Err(e);
            }
            // The kernel is not what we think (someone changed the table): start over.
            tracing::warn!(error = %e, kind = kind.as_str(), "applying the change failed; recreating the table");
            let full = ruleset::full_script(&self.cfg, &desired);
            script_bytes = full.len();
            if let Err(e) = self.runner.apply(&full).await {
                self.applied = None;
                return Err(e);
            }
            kind = SyncKind::Full;
        }
        self.clean_stale(&previous).await;
        let stats = SyncStats {
            kind,
            duration: start.elapsed(),
            elements: desired.element_count(),
            chains: desired.chain_count(),
            script_bytes,
        };
        self.applied = Some(desired);
        Ok(stats)
    }

    /// Takes `changes` into the programmed frontends; returns what each changed key held before.
    fn commit(&mut self, changes: Changes, hairpin: &BTreeSet<Ipv4Addr>) -> Changes {
        let mut previous = Changes::new();
        for (key, f) in changes {
            let old = match f {
                Some(f) => self.frontends.insert(key, f),
                None => self.frontends.remove(&key),
            };
            previous.insert(key, old);
        }
        if self.hairpin != *hairpin {
            self.hairpin = hairpin.clone();
        }
        previous
    }

    /// Applies only what `changes` change in the applied state, looking at
    /// the changed frontends alone (so one change costs the same whatever
    /// the number of Services). `None` when the table must be recreated
    /// instead; `applied` is returned updated.
    async fn incremental(
        &self,
        mut applied: Desired,
        changes: &Changes,
        hairpin: &BTreeSet<Ipv4Addr>,
    ) -> Result<Option<(SyncKind, usize, Desired)>, NftError> {
        let old_changed: Vec<&Frontend> = changes.keys().filter_map(|k| self.frontends.get(k)).collect();
        let new_changed: Vec<&Frontend> = changes.values().flatten().collect();
        let endpoint_chains = applied.chains.keys().filter(|c| c.starts_with("endpoints-")).count();
        if new_changed.iter().any(|f| f.largest() > endpoint_chains) {
            return Ok(None);
        }
        if changes.is_empty() && *hairpin == self.hairpin {
            return Ok(Some((SyncKind::Unchanged, 0, applied)));
        }
        // The shared chains of the whole table before and after.
        let mut new_chains: BTreeMap<String, Vec<String>> = applied
            .chains
            .iter()
            .filter(|(c, _)| c.starts_with("endpoints-"))
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect();
        let unchanged = self.frontends.iter().filter(|(k, _)| !changes.contains_key(*k)).map(|(_, f)| f);
        let timeouts: BTreeSet<u32> =
            unchanged.chain(new_changed.iter().copied()).filter_map(|f| f.affinity_timeout).collect();
        new_chains.extend(timeouts.into_iter().map(ruleset::affinity_chain_entry));
        let mut before = Desired::elements(old_changed, &self.hairpin);
        before.chains = applied.chains.clone();
        let mut after = Desired::elements(new_changed, hairpin);
        after.chains = new_chains.clone();
        let Some(script) = ruleset::diff_script(&self.cfg, &before, &after) else {
            return Ok(Some((SyncKind::Unchanged, 0, applied)));
        };
        self.runner.apply(&script).await?;
        for (map, content) in &before.maps {
            if let Some(m) = applied.maps.get_mut(map) {
                for key in content.keys() {
                    m.remove(key);
                }
            }
        }
        for (map, content) in after.maps {
            if let Some(m) = applied.maps.get_mut(map) {
                if map == ruleset::SET_HAIRPIN {
                    m.clear();
                }
                m.extend(content);
            }
        }
        applied.chains = new_chains;
        Ok(Some((SyncKind::Incremental, script.len(), applied)))
    }

    /// UDP conntrack entries to removed endpoints (and to frontends that had
    /// none) would keep steering datagrams to nowhere; affinity records of
    /// removed endpoints would keep clients on them. `previous` holds what
    /// the changed frontends were before.
    async fn clean_stale(&self, previous: &Changes) {
        let mut affinity_changed = false;
        for (key, old) in previous {
            let now = self.frontends.get(key);
            if let Some(old) = old {
                let current: BTreeSet<&Backend> =
                    now.map(|f| f.backends.iter().chain(&f.cluster_backends).collect()).unwrap_or_default();
                let gone: BTreeSet<&Backend> =
                    old.backends.iter().chain(&old.cluster_backends).filter(|b| !current.contains(b)).collect();
                if !gone.is_empty() {
                    if old.affinity_timeout.is_some() {
                        affinity_changed = true;
                    }
                    if key.protocol == Protocol::Udp {
                        for b in gone {
                            tracing::debug!(frontend = %key, backend = %b, "flushing UDP conntrack entries");
                            self.runner.conntrack_delete(Protocol::Udp, key.ip, key.port, Some(b.ip)).await;
                        }
                    }
                }
            }
            // From no endpoint anywhere to some (upstream's rule): a Local frontend whose traffic from
            // the node and pods already went to cluster-wide backends keeps those flows.
            let serves = |f: &Frontend| !f.backends.is_empty() || !f.cluster_backends.is_empty();
            let had = old.as_ref().is_some_and(serves);
            if key.protocol == Protocol::Udp && now.is_some_and(serves) && !had {
                self.runner.conntrack_delete(Protocol::Udp, key.ip, key.port, None).await;
            }
        }
        if affinity_changed {
            if let Err(e) = self.prune_affinity(&self.frontends).await {
                tracing::warn!(error = %e, "pruning session affinity records");
            }
        }
    }

    async fn prune_affinity(&self, new: &BTreeMap<FrontendKey, Frontend>) -> Result<(), NftError> {
        let json = self.runner.list_map(&self.cfg.name, ruleset::MAP_AFFINITY).await?;
        let stale = stale_affinity_keys(&json, new);
        if stale.is_empty() {
            return Ok(());
        }
        let script =
            format!("delete element ip {} {} {{ {} }}\n", self.cfg.name, ruleset::MAP_AFFINITY, stale.join(", "));
        self.runner.apply(&script).await
    }
}

/// Keys of `affinity` elements (from `nft -j list map`) whose backend no longer serves their frontend.
pub fn stale_affinity_keys(json: &str, frontends: &BTreeMap<FrontendKey, Frontend>) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut stale = Vec::new();
    let maps = value.get("nftables").and_then(|v| v.as_array()).into_iter().flatten();
    for entry in maps {
        let Some(elems) = entry.pointer("/map/elem").and_then(|v| v.as_array()) else { continue };
        for elem in elems {
            let Some(pair) = elem.as_array().filter(|p| p.len() == 2) else { continue };
            let key = pair[0].get("elem").and_then(|e| e.get("val")).unwrap_or(&pair[0]);
            let Some(k) = concat_strings(key) else { continue };
            let Some(v) = concat_strings(&pair[1]) else { continue };
            if k.len() != 4 || v.len() != 2 {
                continue;
            }
            let parsed = (|| {
                let fk = FrontendKey {
                    ip: k[1].parse().ok()?,
                    protocol: Protocol::parse(Some(&k[2].to_uppercase()))?,
                    port: k[3].parse().ok()?,
                };
                let b = Backend { ip: v[0].parse().ok()?, port: v[1].parse().ok()? };
                Some((fk, b))
            })();
            let Some((fk, b)) = parsed else { continue };
            let valid = frontends.get(&fk).is_some_and(|f| f.backends.contains(&b) || f.cluster_backends.contains(&b));
            if !valid {
                stale.push(format!("{} . {fk}", k[0]));
            }
        }
    }
    stale
}

fn concat_strings(v: &serde_json::Value) -> Option<Vec<String>> {
    let parts = v.get("concat")?.as_array()?;
    parts
        .iter()
        .map(|p| match p {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}
