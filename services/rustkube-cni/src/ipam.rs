//! Address management on disk: one file per allocated address in a data
//! directory, named by the address and holding its owner (`<container id>\n<ifname>\n`).
//!
//! A file is created with `O_CREAT|O_EXCL`, so of two concurrent allocations
//! of the same address exactly one wins and the other moves on to the next
//! address; no lock is needed. Allocations survive restarts because they are
//! just files. A hint file remembers the last address handed out, so the scan
//! starts after it and a just-released address is not reused at once.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::Ipv4Net;

const LAST_RESERVED: &str = "last_reserved_ip";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {subnet}: all {in_use} are allocated (data dir {dir})")]
    Exhausted { subnet: Ipv4Net, in_use: usize, dir: PathBuf },
    #[error("IPAM data dir {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Who holds an address: the container and the interface inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self { container_id: container_id.into(), ifname: ifname.into() }
    }

    fn encode(&self) -> String {
        format!("{}\n{}\n", self.container_id, self.ifname)
    }

    /// Reads a record; a record without an interface line matches any interface.
    fn matches(&self, record: &str) -> bool {
        let mut lines = record.lines();
        let id = lines.next().map(str::trim);
        let ifname = lines.next().map(str::trim).filter(|s| !s.is_empty());
        id == Some(self.container_id.as_str()) && ifname.is_none_or(|i| i == self.ifname)
    }
}

/// The allocations of one network.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating it if needed) the data directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, IpamError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| IpamError::Io { dir: dir.clone(), source })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: io::Error) -> IpamError {
        IpamError::Io { dir: self.dir.clone(), source }
    }

    /// The address held by `owner`, or a new one from `subnet` (never one of `reserved`).
    /// Asking again for the same owner gives the same address.
    pub fn allocate(&self, subnet: &Ipv4Net, reserved: &[Ipv4Addr], owner: &Owner) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.find(owner)?.into_iter().find(|ip| subnet.contains(*ip)) {
            return Ok(ip);
        }
        let hosts: Vec<Ipv4Addr> = subnet.hosts().filter(|ip| !reserved.contains(ip)).collect();
        let start =
            self.last_reserved().and_then(|last| hosts.iter().position(|ip| *ip == last)).map(|i| i + 1).unwrap_or(0);
        for ip in hosts.iter().cycle().skip(start).take(hosts.len()) {
            match self.claim(*ip, owner) {
                Ok(()) => {
                    // Only a hint for the next scan: losing it costs nothing.
                    let _ = fs::write(self.dir.join(LAST_RESERVED), ip.to_string());
                    return Ok(*ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io(e)),
            }
        }
        Err(IpamError::Exhausted { subnet: *subnet, in_use: hosts.len(), dir: self.dir.clone() })
    }

    fn claim(&self, ip: Ipv4Addr, owner: &Owner) -> io::Result<()> {
        let path = self.dir.join(ip.to_string());
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        let written = file.write_all(owner.encode().as_bytes()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(())
    }

    fn last_reserved(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?.trim().parse().ok()
    }

    /// The addresses `owner` holds.
    pub fn find(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>, IpamError> {
        Ok(self.allocations()?.into_iter().filter(|(_, record)| owner.matches(record)).map(|(ip, _)| ip).collect())
    }

    /// Frees every address `owner` holds; returns them. Holding none is fine.
    pub fn release(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut released = Vec::new();
        for ip in self.find(owner)? {
            match fs::remove_file(self.dir.join(ip.to_string())) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(released)
    }

    /// Every allocation: the address and its raw owner record.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(e))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(record) => found.push((ip, record)),
                // Released (or being written) between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        found.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};

    fn subnet(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_skips_the_gateway_and_is_stable_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let net = subnet("10.244.1.0/24");
        let gw = Ipv4Addr::new(10, 244, 1, 1);
        let a = store.allocate(&net, &[gw], &Owner::new("a", "eth0")).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(store.allocate(&net, &[gw], &Owner::new("a", "eth0")).unwrap(), a);
        let b = store.allocate(&net, &[gw], &Owner::new("b", "eth0")).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(fs::read_to_string(dir.path().join("10.244.1.2")).unwrap(), "a\neth0\n");
    }

    #[test]
    fn allocations_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let net = subnet("10.244.1.0/24");
        let a = Store::open(dir.path()).unwrap().allocate(&net, &[], &Owner::new("a", "eth0")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.find(&Owner::new("a", "eth0")).unwrap(), vec![a]);
        assert_ne!(store.allocate(&net, &[], &Owner::new("b", "eth0")).unwrap(), a);
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let net = subnet("10.244.2.0/26"); // 62 hosts
        let workers = 8;
        let per_worker = 7;
        let barrier = Arc::new(Barrier::new(workers));
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let dir = dir.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    // A store per thread, as separate plugin processes would have.
                    let store = Store::open(dir).unwrap();
                    barrier.wait();
                    (0..per_worker)
                        .map(|i| store.allocate(&net, &[], &Owner::new(format!("c{w}-{i}"), "eth0")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), workers * per_worker);
        assert_eq!(distinct.len(), all.len(), "an address was handed out twice: {all:?}");
        assert!(all.iter().all(|ip| net.contains(*ip)));
        assert_eq!(Store::open(dir.path()).unwrap().allocations().unwrap().len(), all.len());
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let net = subnet("10.244.3.0/29"); // 6 hosts, one is the gateway
        let gw = [Ipv4Addr::new(10, 244, 3, 1)];
        for i in 0..5 {
            store.allocate(&net, &gw, &Owner::new(format!("c{i}"), "eth0")).unwrap();
        }
        let err = store.allocate(&net, &gw, &Owner::new("late", "eth0")).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { in_use: 5, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("no free address left in 10.244.3.0/29"), "{msg}");
    }

    #[test]
    fn release_frees_only_the_owners_address_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let net = subnet("10.244.4.0/29");
        let a = store.allocate(&net, &[], &Owner::new("a", "eth0")).unwrap();
        let b = store.allocate(&net, &[], &Owner::new("b", "eth0")).unwrap();
        assert_eq!(store.release(&Owner::new("a", "eth1")).unwrap(), Vec::<Ipv4Addr>::new());
        assert_eq!(store.release(&Owner::new("a", "eth0")).unwrap(), vec![a]);
        assert_eq!(store.release(&Owner::new("a", "eth0")).unwrap(), Vec::<Ipv4Addr>::new());
        assert_eq!(store.release(&Owner::new("nobody", "eth0")).unwrap(), Vec::<Ipv4Addr>::new());
        let left: Vec<_> = store.allocations().unwrap().into_iter().map(|(ip, _)| ip).collect();
        assert_eq!(left, vec![b]);
    }

    #[test]
    fn a_released_address_is_reused_only_after_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let net = subnet("10.244.5.0/29"); // .1 - .6
        let a = store.allocate(&net, &[], &Owner::new("a", "eth0")).unwrap();
        store.release(&Owner::new("a", "eth0")).unwrap();
        let b = store.allocate(&net, &[], &Owner::new("b", "eth0")).unwrap();
        assert_ne!(a, b);
        // Once the rest is taken the freed one comes back.
        for i in 0..4 {
            store.allocate(&net, &[], &Owner::new(format!("f{i}"), "eth0")).unwrap();
        }
        assert_eq!(store.allocate(&net, &[], &Owner::new("c", "eth0")).unwrap(), a);
    }
}
