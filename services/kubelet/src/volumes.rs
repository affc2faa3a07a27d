//! Pod volumes on the host, under `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`:
//! emptyDir (disk or tmpfs), hostPath, configMap, secret (on tmpfs),
//! downwardAPI, projected (with bound service-account tokens) and
//! persistentVolumeClaim bound to hostPath or local volumes. Generated
//! content is written the way upstream's AtomicWriter does: a timestamped
//! directory, a `..data` symlink swapped atomically, and per-key symlinks
//! through it, so that containers see updates whole.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use kube::api::{Api, PostParams};

use crate::fieldpath;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Missing(String),
    #[error("volume {volume}: {source}")]
    Io { volume: String, source: std::io::Error },
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: {source}")]
    Api { volume: String, source: kube::Error },
}

/// A file to write: contents and mode.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

pub struct VolumeManager {
    root: PathBuf,
    client: kube::Client,
    /// Bound service-account tokens by (pod uid, audience, path), with their refresh time.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

fn io(volume: &str) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { volume: volume.to_string(), source }
}

fn mounted(path: &Path) -> bool {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/mounts").unwrap_or_default().lines().any(|l| l.split_whitespace().nth(1) == Some(&p))
}

/// Mounts a tmpfs at `path` (once), `size` bytes big if given.
fn mount_tmpfs(path: &Path, size: Option<i64>) -> std::io::Result<()> {
    if mounted(path) {
        return Ok(());
    }
    let mut opts = "mode=0777".to_string();
    if let Some(s) = size.filter(|s| *s > 0) {
        // In bytes: tmpfs reads `64M` as binary and rejects `64Mi`, unlike a Quantity.
        opts.push_str(&format!(",size={s}"));
    }
    let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(path).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("mount tmpfs on {} failed", path.display())))
    }
}

impl VolumeManager {
    pub fn new(root: &Path, client: kube::Client) -> VolumeManager {
        VolumeManager { root: root.to_path_buf(), client, tokens: Mutex::new(HashMap::new()) }
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// Prepares every volume of the pod; returns the host path of each by name.
    /// Called on every sync: configMap, secret, downwardAPI and projected
    /// contents are refreshed when they changed.
    /// `node_memory` is the node's allocatable memory in bytes, the most a
    /// memory-backed emptyDir may hold.
    pub async fn setup(
        &self,
        pod: &Pod,
        pod_ip: &str,
        host_ip: &str,
        node_memory: Option<i64>,
    ) -> Result<HashMap<String, PathBuf>, VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut out = HashMap::new();
        for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            let path = self.setup_one(pod, &uid, &ns, v, pod_ip, host_ip, node_memory).await?;
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(plugin).join(name)
    }

    #[allow(clippy::too_many_arguments)]
    async fn setup_one(
        &self,
        pod: &Pod,
        uid: &str,
        ns: &str,
        v: &Volume,
        pod_ip: &str,
        host_ip: &str,
        node_memory: Option<i64>,
    ) -> Result<PathBuf, VolumeError> {
        let name = v.name.as_str();
        if let Some(e) = &v.empty_dir {
            let dir = self.volume_dir(uid, "kubernetes.io~empty-dir", name);
            std::fs::create_dir_all(&dir).map_err(io(name))?;
            if e.medium.as_deref() == Some("Memory") {
                let size_limit = match &e.size_limit {
                    Some(q) => Some(quantity_bytes(&q.0).ok_or_else(|| VolumeError::Invalid {
                        volume: name.into(),
                        message: format!("invalid sizeLimit {:?}", q.0),
                    })?),
                    None => None,
                };
                let size = memory_volume_size(size_limit, crate::containers::pod_memory_limit(pod), node_memory);
                mount_tmpfs(&dir, size).map_err(io(name))?;
            }
            // Upstream's emptyDir is 0777; with an fsGroup it is group-owned by it, setgid.
            let mut mode = 0o777;
            if let Some(gid) = crate::containers::fs_group(pod).and_then(|g| u32::try_from(g).ok()) {
                std::os::unix::fs::chown(&dir, None, Some(gid)).map_err(io(name))?;
                mode |= 0o2000;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(io(name))?;
            return Ok(dir);
        }
        if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(io(name))?;
                }
                "FileOrCreate" => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(io(name))?;
                    }
                    std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(name))?;
                }
                "Directory" if !path.is_dir() => {
                    return Err(VolumeError::Invalid {
                        volume: name.into(),
                        message: format!("hostPath type check failed: {} is not a directory", h.path),
                    })
                }
                "File" if !path.is_file() => {
                    return Err(VolumeError::Invalid {
                        volume: name.into(),
                        message: format!("hostPath type check failed: {} is not a file", h.path),
                    })
                }
                _ => {}
            }
            return Ok(path);
        }
        if let Some(cm) = &v.config_map {
            let dir = self.volume_dir(uid, "kubernetes.io~configmap", name);
            let files = self
                .config_map_files(ns, &cm.name, cm.items.as_deref(), cm.optional.unwrap_or(false), cm.default_mode)
                .await?;
            write_owned(pod, &dir, files).map_err(io(name))?;
            return Ok(dir);
        }
        if let Some(s) = &v.secret {
            let dir = self.volume_dir(uid, "kubernetes.io~secret", name);
            std::fs::create_dir_all(&dir).map_err(io(name))?;
            mount_tmpfs(&dir, None).map_err(io(name))?;
            let secret_name = s.secret_name.clone().unwrap_or_default();
            let files = self
                .secret_files(ns, &secret_name, s.items.as_deref(), s.optional.unwrap_or(false), s.default_mode)
                .await?;
            write_owned(pod, &dir, files).map_err(io(name))?;
            return Ok(dir);
        }
        if let Some(d) = &v.downward_api {
            let dir = self.volume_dir(uid, "kubernetes.io~downward-api", name);
            let files = downward_files(pod, d.items.as_deref().unwrap_or(&[]), d.default_mode, pod_ip, host_ip)
                .map_err(|message| VolumeError::Invalid { volume: name.into(), message })?;
            write_owned(pod, &dir, files).map_err(io(name))?;
            return Ok(dir);
        }
        if let Some(p) = &v.projected {
            let dir = self.volume_dir(uid, "kubernetes.io~projected", name);
            std::fs::create_dir_all(&dir).map_err(io(name))?;
            mount_tmpfs(&dir, None).map_err(io(name))?;
            let mut files = Files::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    files.extend(
                        self.config_map_files(
                            ns,
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional.unwrap_or(false),
                            p.default_mode,
                        )
                        .await?,
                    );
                }
                if let Some(s) = &source.secret {
                    files.extend(
                        self.secret_files(ns, &s.name, s.items.as_deref(), s.optional.unwrap_or(false), p.default_mode)
                            .await?,
                    );
                }
                if let Some(d) = &source.downward_api {
                    files.extend(
                        downward_files(pod, d.items.as_deref().unwrap_or(&[]), p.default_mode, pod_ip, host_ip)
                            .map_err(|message| VolumeError::Invalid { volume: name.into(), message })?,
                    );
                }
                if let Some(t) = &source.service_account_token {
                    let token = self
                        .token(pod, uid, ns, t.audience.as_deref(), t.expiration_seconds.unwrap_or(3600), &t.path)
                        .await?;
                    files.insert(t.path.clone(), (token.into_bytes(), mode(p.default_mode, 0o644)));
                }
                if let Some(b) = &source.cluster_trust_bundle {
                    let _ = b;
                    return Err(VolumeError::Invalid {
                        volume: name.into(),
                        message: "clusterTrustBundle projections are not supported".into(),
                    });
                }
            }
            write_owned(pod, &dir, files).map_err(io(name))?;
            return Ok(dir);
        }
        if let Some(claim) = &v.persistent_volume_claim {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
            let pvc = pvcs
                .get_opt(&claim.claim_name)
                .await
                .map_err(|source| VolumeError::Api { volume: name.into(), source })?
                .ok_or_else(|| {
                    VolumeError::Missing(format!("persistentvolumeclaim \"{}\" not found", claim.claim_name))
                })?;
            let pv_name = pvc.spec.and_then(|s| s.volume_name).filter(|n| !n.is_empty()).ok_or_else(|| {
                VolumeError::Missing(format!("persistentvolumeclaim \"{}\" is not bound", claim.claim_name))
            })?;
            let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
            let pv = pvs.get(&pv_name).await.map_err(|source| VolumeError::Api { volume: name.into(), source })?;
            let spec = pv.spec.unwrap_or_default();
            let path =
                spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| VolumeError::Invalid {
                    volume: name.into(),
                    message: format!("persistentvolume {pv_name} is neither hostPath nor local"),
                })?;
            let path = PathBuf::from(path);
            std::fs::create_dir_all(&path).map_err(io(name))?;
            return Ok(path);
        }
        Err(VolumeError::Invalid {
            volume: name.into(),
            message: "this volume type is not supported by this kubelet".into(),
        })
    }

    async fn config_map_files(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        default_mode: Option<i32>,
    ) -> Result<Files, VolumeError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = api.get_opt(name).await.map_err(|source| VolumeError::Api { volume: name.into(), source })?;
        let Some(cm) = cm else {
            return if optional {
                Ok(Files::new())
            } else {
                Err(VolumeError::Missing(format!("configmap \"{name}\" not found")))
            };
        };
        let mut data: BTreeMap<String, Vec<u8>> =
            cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
        project(name, data, items, optional, default_mode)
    }

    async fn secret_files(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        default_mode: Option<i32>,
    ) -> Result<Files, VolumeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = api.get_opt(name).await.map_err(|source| VolumeError::Api { volume: name.into(), source })?;
        let Some(s) = s else {
            return if optional {
                Ok(Files::new())
            } else {
                Err(VolumeError::Missing(format!("secret \"{name}\" not found")))
            };
        };
        let mut data: BTreeMap<String, Vec<u8>> =
            s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        data.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
        project(name, data, items, optional, default_mode)
    }

    /// A bound token for the pod's service account, refreshed at 80% of its lifetime.
    async fn token(
        &self,
        pod: &Pod,
        uid: &str,
        ns: &str,
        audience: Option<&str>,
        expiration: i64,
        path: &str,
    ) -> Result<String, VolumeError> {
        let key = format!("{uid}/{}/{path}", audience.unwrap_or(""));
        if let Some((token, refresh_at)) = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if Instant::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: Some(uid.to_string()),
                }),
            },
            ..Default::default()
        };
        let resp: TokenRequest = api
            .create_subresource("token", &sa, &PostParams::default(), &request)
            .await
            .map_err(|source| VolumeError::Api { volume: "kube-api-access".into(), source })?;
        let token = resp.status.map(|s| s.token).unwrap_or_default();
        let refresh_at = Instant::now() + Duration::from_secs((expiration.max(600) as u64) * 8 / 10);
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (token.clone(), refresh_at));
        Ok(token)
    }

    /// Unmounts and removes everything of the pod's.
    pub fn teardown(&self, uid: &str) {
        let dir = self.pod_dir(uid);
        let prefix = dir.display().to_string();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        for m in mounts.iter().rev() {
            let _ = std::process::Command::new("umount").arg("-l").arg(m).status();
        }
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(uid));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Writes a generated volume (configMap, secret, downwardAPI, projected)
/// with upstream's fsGroup ownership for read-only volumes: group-readable
/// files (mode | 0440), everything group-owned by the fsGroup, setgid dirs.
fn write_owned(pod: &Pod, dir: &Path, mut files: Files) -> std::io::Result<()> {
    let gid = crate::containers::fs_group(pod).and_then(|g| u32::try_from(g).ok());
    if gid.is_some() {
        // Into the wanted modes, so that an unchanged volume is not rewritten on the next sync.
        for (_, mode) in files.values_mut() {
            *mode |= 0o440;
        }
    }
    write_atomic(dir, &files)?;
    if let Some(gid) = gid {
        set_group(dir, gid)?;
    }
    Ok(())
}

/// chown :gid of a tree (symlinks themselves left alone), dirs setgid and group-searchable.
fn set_group(path: &Path, gid: u32) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(path)?;
    if md.file_type().is_symlink() {
        return Ok(());
    }
    if std::os::unix::fs::MetadataExt::gid(&md) != gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    if md.is_dir() {
        let mode = md.permissions().mode() & 0o7777;
        if mode & 0o2110 != 0o2110 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o2110))?;
        }
        for entry in std::fs::read_dir(path)?.flatten() {
            set_group(&entry.path(), gid)?;
        }
    }
    Ok(())
}

/// A quantity in whole bytes (rounded up, as upstream's `Value()`).
fn quantity_bytes(q: &str) -> Option<i64> {
    let milli = apimachinery::quantity::parse_milli(q).ok()?;
    i64::try_from((milli + 999).div_euclid(1000)).ok()
}

/// The size of a memory-backed emptyDir as upstream's kubelet sets it: the
/// node's allocatable memory, lowered to the pod's memory limit and then to
/// the volume's sizeLimit when they are positive and smaller.
fn memory_volume_size(size_limit: Option<i64>, pod_limit: Option<i64>, node_memory: Option<i64>) -> Option<i64> {
    let mut size = node_memory.filter(|n| *n > 0);
    for candidate in [pod_limit, size_limit].into_iter().flatten() {
        if candidate > 0 && size.is_none_or(|s| candidate <= s) {
            size = Some(candidate);
        }
    }
    size
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.map(|m| m as u32 & 0o777).unwrap_or(default)
}

/// Keys (all, or the listed items) to file paths.
fn project(
    source: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: Option<i32>,
) -> Result<Files, VolumeError> {
    let default = mode(default_mode, 0o644);
    let mut files = Files::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(
                            item.path.clone(),
                            (v.clone(), item.mode.map(|m| m as u32 & 0o777).unwrap_or(default)),
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(VolumeError::Missing(format!("key {:?} not found in {source:?}", item.key)));
                    }
                }
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k, (v, default));
            }
        }
    }
    Ok(files)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Files, String> {
    let mut files = Files::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            fieldpath::field_value(pod, &f.field_path, pod_ip, host_ip)?
        } else if let Some(r) = &item.resource_field_ref {
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| Some(&c.name) == r.container_name.as_ref()))
                .ok_or_else(|| format!("container {:?} not found", r.container_name))?;
            fieldpath::resource_value(
                container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                &BTreeMap::new(),
            )?
        } else {
            continue;
        };
        files.insert(
            item.path.clone(),
            (value.into_bytes(), item.mode.map(|m| m as u32 & 0o777).unwrap_or(mode(default_mode, 0o644))),
        );
    }
    Ok(files)
}

/// Writes `files` under `dir` atomically (see the module docs). Unchanged contents write nothing.
pub fn write_atomic(dir: &Path, files: &Files) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if data_link.exists() {
        let same = files.iter().all(|(p, (content, m))| {
            let path = data_link.join(p);
            std::fs::read(&path).map(|c| c == *content).unwrap_or(false)
                && std::fs::metadata(&path).map(|md| md.permissions().mode() & 0o777 == *m).unwrap_or(false)
        }) && count_files(&data_link) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir_all(&new_dir)?;
    for (p, (content, m)) in files {
        let rel = Path::new(p);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(std::io::Error::other(format!("invalid path {p:?}")));
        }
        let target = new_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*m))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    let tops: std::collections::BTreeSet<String> =
        files.keys().filter_map(|p| p.split('/').next().map(str::to_string)).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "..data" || name == stamp {
            continue;
        }
        if name.starts_with("..") {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_volumes_take_the_smallest_limit() {
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1500m"), Some(2));
        let gib = 1 << 30;
        assert_eq!(memory_volume_size(None, None, Some(4 * gib)), Some(4 * gib));
        assert_eq!(memory_volume_size(Some(64 << 20), None, Some(4 * gib)), Some(64 << 20));
        assert_eq!(memory_volume_size(None, Some(gib), Some(4 * gib)), Some(gib));
        // A sizeLimit above the pod's limit does not raise it.
        assert_eq!(memory_volume_size(Some(2 * gib), Some(gib), Some(4 * gib)), Some(gib));
        assert_eq!(memory_volume_size(Some(8 * gib), None, Some(4 * gib)), Some(4 * gib));
        assert_eq!(memory_volume_size(Some(gib), None, None), Some(gib));
        assert_eq!(memory_volume_size(None, None, None), None);
    }

    #[test]
    fn atomic_writes_swap_the_data_link() {
        let dir = std::env::temp_dir().join(format!("kubelet-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.join("sub/b")).unwrap(), b"2");
        files.remove("sub/b");
        files.insert("a".into(), (b"updated".to_vec(), 0o644));
        write_atomic(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"updated");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err(), "removed keys disappear");
        let stamps = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".."))
            .count();
        assert_eq!(stamps, 2, "..data and one timestamped dir");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
