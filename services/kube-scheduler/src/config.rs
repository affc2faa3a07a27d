//! `KubeSchedulerConfiguration` (kubescheduler.config.k8s.io/v1), read with
//! figment: profiles with their plugin sets and score weights,
//! `percentageOfNodesToScore`, backoff, leader election and the client
//! connection. Unknown fields and plugins are errors, as upstream's strict
//! decoding makes them.

use std::path::Path;
use std::time::Duration;

use figment::providers::Format;
use serde::Deserialize;

use crate::plugins::{Filter, FitStrategy, Profile, Score};

pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("decoding {path}: {message}")]
    Decode { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeSchedulerConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub client_connection: Option<ClientConnection>,
    pub leader_election: Option<LeaderElection>,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub pod_initial_backoff_seconds: Option<u64>,
    pub pod_max_backoff_seconds: Option<u64>,
    pub parallelism: Option<u32>,
    pub enable_profiling: Option<bool>,
    pub enable_contention_profiling: Option<bool>,
    pub delay_cache_until_active: Option<bool>,
    pub extenders: Option<Vec<serde_json::Value>>,
    pub profiles: Option<Vec<ProfileConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    pub kubeconfig: Option<String>,
    pub qps: Option<f32>,
    pub burst: Option<u32>,
    pub content_type: Option<String>,
    pub accept_content_types: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
    pub resource_lock: Option<String>,
    pub resource_name: Option<String>,
    pub resource_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileConfig {
    pub scheduler_name: Option<String>,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub plugins: Option<Plugins>,
    pub plugin_config: Option<Vec<PluginConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plugins {
    pub pre_enqueue: Option<PluginSet>,
    pub queue_sort: Option<PluginSet>,
    pub pre_filter: Option<PluginSet>,
    pub filter: Option<PluginSet>,
    pub post_filter: Option<PluginSet>,
    pub pre_score: Option<PluginSet>,
    pub score: Option<PluginSet>,
    pub reserve: Option<PluginSet>,
    pub permit: Option<PluginSet>,
    pub pre_bind: Option<PluginSet>,
    pub bind: Option<PluginSet>,
    pub post_bind: Option<PluginSet>,
    pub multi_point: Option<PluginSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// What the scheduler runs with, resolved from the file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profiles: Vec<Profile>,
    /// 0: upstream's adaptive percentage.
    pub percentage_of_nodes_to_score: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `--pod-max-in-unschedulable-pods-duration`.
    pub max_in_unschedulable_pods: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profiles: vec![Profile::default_named(DEFAULT_SCHEDULER_NAME)],
            percentage_of_nodes_to_score: 0,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable_pods: crate::queue::MAX_UNSCHEDULABLE_DURATION,
        }
    }
}

pub fn load(path: &Path) -> Result<KubeSchedulerConfiguration, ConfigError> {
    let display = path.display().to_string();
    std::fs::metadata(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
    figment::Figment::new()
        .merge(figment::providers::Yaml::file(path))
        .extract()
        .map_err(|e| ConfigError::Decode { path: display, message: e.to_string() })
}

impl KubeSchedulerConfiguration {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if let Some(v) = self.api_version.as_deref().filter(|v| *v != API_VERSION) {
            return Err(ConfigError::Invalid(format!("apiVersion {v:?} is not supported; use {API_VERSION}")));
        }
        if let Some(k) = self.kind.as_deref().filter(|k| *k != "KubeSchedulerConfiguration") {
            return Err(ConfigError::Invalid(format!("kind {k:?} is not KubeSchedulerConfiguration")));
        }
        if self.extenders.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(ConfigError::Invalid("extenders are not supported".into()));
        }
        let mut settings = Settings::default();
        if let Some(p) = self.percentage_of_nodes_to_score {
            if p > 100 {
                return Err(ConfigError::Invalid("percentageOfNodesToScore: must be in the range [0, 100]".into()));
            }
            settings.percentage_of_nodes_to_score = p;
        }
        let initial = self.pod_initial_backoff_seconds.unwrap_or(1);
        let max = self.pod_max_backoff_seconds.unwrap_or(10);
        if initial == 0 || max < initial {
            return Err(ConfigError::Invalid(
                "podInitialBackoffSeconds must be positive and podMaxBackoffSeconds at least as large".into(),
            ));
        }
        settings.initial_backoff = Duration::from_secs(initial);
        settings.max_backoff = Duration::from_secs(max);
        if let Some(profiles) = &self.profiles {
            if profiles.is_empty() {
                return Err(ConfigError::Invalid("profiles: at least one profile is required".into()));
            }
            settings.profiles = profiles.iter().map(ProfileConfig::profile).collect::<Result<_, _>>()?;
            let mut names: Vec<&str> = settings.profiles.iter().map(|p| p.scheduler_name.as_str()).collect();
            names.sort();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(ConfigError::Invalid("profiles: duplicate schedulerName".into()));
            }
        }
        Ok(settings)
    }
}

impl ProfileConfig {
    fn profile(&self) -> Result<Profile, ConfigError> {
        let mut profile = Profile::default_named(self.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER_NAME));
        let plugins = self.plugins.as_ref();
        if let Some(set) = plugins.and_then(|p| p.multi_point.as_ref()) {
            apply_filters(&mut profile.filters, set, true)?;
            apply_scores(&mut profile.scores, set, true)?;
        }
        if let Some(set) = plugins.and_then(|p| p.filter.as_ref()) {
            apply_filters(&mut profile.filters, set, false)?;
        }
        if let Some(set) = plugins.and_then(|p| p.score.as_ref()) {
            apply_scores(&mut profile.scores, set, false)?;
        }
        if let Some(p) = self.percentage_of_nodes_to_score {
            if p > 100 {
                return Err(ConfigError::Invalid(format!(
                    "profiles[{}].percentageOfNodesToScore: must be in the range [0, 100]",
                    profile.scheduler_name
                )));
            }
            // Set in a profile, it wins over the global one (0 is the adaptive share), as upstream.
            profile.percentage_of_nodes_to_score = Some(p);
        }
        for pc in self.plugin_config.iter().flatten() {
            if pc.name == "NodeResourcesFit" {
                profile.fit = fit_strategy(&pc.args)?;
            }
        }
        Ok(profile)
    }
}

fn known(name: &str) -> bool {
    Filter::from_name(name).is_some()
        || Score::from_name(name).is_some()
        || matches!(
            name,
            "PrioritySort"
                | "DefaultBinder"
                | "DefaultPreemption"
                | "SchedulingGates"
                | "VolumeBinding"
                | "VolumeRestrictions"
                | "VolumeZone"
                | "EBSLimits"
                | "GCEPDLimits"
                | "AzureDiskLimits"
                | "NodeResourcesBalancedAllocation"
        )
}

fn apply_filters(filters: &mut Vec<Filter>, set: &PluginSet, multi_point: bool) -> Result<(), ConfigError> {
    for d in &set.disabled {
        if d.name == "*" {
            filters.clear();
        } else if known(&d.name) {
            filters.retain(|f| f.name() != d.name);
        } else {
            return Err(ConfigError::Invalid(format!("disabled plugin {:?} is not known", d.name)));
        }
    }
    for e in &set.enabled {
        match Filter::from_name(&e.name) {
            Some(f) if !filters.contains(&f) => filters.push(f),
            Some(_) => {}
            None if known(&e.name) && multi_point => {}
            None => return Err(ConfigError::Invalid(format!("filter plugin {:?} is not known", e.name))),
        }
    }
    Ok(())
}

fn apply_scores(scores: &mut Vec<(Score, i64)>, set: &PluginSet, multi_point: bool) -> Result<(), ConfigError> {
    for d in &set.disabled {
        if d.name == "*" {
            scores.clear();
        } else if known(&d.name) {
            scores.retain(|(s, _)| s.name() != d.name);
        } else {
            return Err(ConfigError::Invalid(format!("disabled plugin {:?} is not known", d.name)));
        }
    }
    for e in &set.enabled {
        let weight = e.weight.unwrap_or(1);
        if !(0..=100).contains(&weight) {
            return Err(ConfigError::Invalid(format!("score plugin {:?}: weight must be in [0, 100]", e.name)));
        }
        match Score::from_name(&e.name) {
            Some(s) => match scores.iter_mut().find(|(x, _)| *x == s) {
                Some(entry) => entry.1 = e.weight.unwrap_or(entry.1),
                None => scores.push((s, weight)),
            },
            None if known(&e.name) && multi_point => {}
            None => return Err(ConfigError::Invalid(format!("score plugin {:?} is not known", e.name))),
        }
    }
    Ok(())
}

fn fit_strategy(args: &serde_json::Value) -> Result<FitStrategy, ConfigError> {
    let mut fit = FitStrategy::default();
    let Some(strategy) = args.get("scoringStrategy") else { return Ok(fit) };
    match strategy.get("type").and_then(|t| t.as_str()).unwrap_or("LeastAllocated") {
        "LeastAllocated" => fit.most_allocated = false,
        "MostAllocated" => fit.most_allocated = true,
        other => {
            return Err(ConfigError::Invalid(format!(
                "NodeResourcesFit scoringStrategy type {other:?} is not supported"
            )))
        }
    }
    if let Some(resources) = strategy.get("resources").and_then(|r| r.as_array()) {
        fit.resources = resources
            .iter()
            .map(|r| {
                let name = r.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                (name, r.get("weight").and_then(|w| w.as_i64()).unwrap_or(1))
            })
            .collect();
    }
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_change_weights_and_disable_plugins() {
        let dir = std::env::temp_dir().join(format!("kube-scheduler-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 30\nprofiles:\n- schedulerName: packer\n  plugins:\n    score:\n      disabled:\n      - name: ImageLocality\n      enabled:\n      - name: NodeResourcesFit\n        weight: 5\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n",
        )
        .unwrap();
        let settings = load(&path).unwrap().settings().unwrap();
        assert_eq!(settings.percentage_of_nodes_to_score, 30);
        let p = &settings.profiles[0];
        assert_eq!(p.scheduler_name, "packer");
        assert!(p.fit.most_allocated);
        assert!(!p.scores.iter().any(|(s, _)| *s == Score::ImageLocality));
        assert!(p.scores.contains(&(Score::NodeResourcesFit, 5)));
        assert_eq!(p.percentage_of_nodes_to_score, None);
        std::fs::write(&path, "profiles:\n- schedulerName: a\n  percentageOfNodesToScore: 20\n- schedulerName: b\n")
            .unwrap();
        let settings = load(&path).unwrap().settings().unwrap();
        assert_eq!(settings.profiles[0].percentage_of_nodes_to_score, Some(20));
        assert_eq!(settings.profiles[1].percentage_of_nodes_to_score, None);
        std::fs::write(&path, "profiles:\n- schedulerName: a\n  percentageOfNodesToScore: 101\n").unwrap();
        let err = load(&path).unwrap().settings().unwrap_err().to_string();
        assert!(err.contains("percentageOfNodesToScore"), "{err}");
        std::fs::write(&path, "profiles:\n- schedulerName: x\n  plugin: {}\n").unwrap();
        assert!(load(&path).is_err(), "unknown fields are errors");
        let _ = std::fs::remove_dir_all(dir);
    }
}
