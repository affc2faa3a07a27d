//! The unit files of systemd/ pass `systemd-analyze verify` with no warning:
//! every key is one systemd knows, every section and dependency loads, and every
//! command exists and is executable. The units name their binaries in
//! /usr/local/bin (where `init-cluster.sh` installs them); here those paths point
//! at the binaries this build made instead, so the check needs no installation
//! (init_cluster_systemd verifies the installed units as well). Cheap, but in the
//! `init-cluster` nextest group by its name (it touches nothing shared).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The units of systemd/ copied into `dir` with /usr/local/bin replaced by `bin_dir`.
fn units_for(dir: &Path, bin_dir: &Path) -> Vec<PathBuf> {
    let mut units = Vec::new();
    let entries = std::fs::read_dir(integration::repo_root().join("systemd")).expect("systemd/");
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("service") {
            continue;
        }
        let unit = std::fs::read_to_string(&path).expect("unit file");
        let dest = dir.join(entry.file_name());
        std::fs::write(&dest, unit.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()))).expect("unit copy");
        units.push(dest);
    }
    units.sort();
    units
}

fn verify(units: &[PathBuf]) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
        .expect("systemd-analyze (apt-get install systemd)")
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let bin_dir = integration::bin_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let units = units_for(dir.path(), &bin_dir);
    let names: Vec<String> =
        units.iter().filter_map(|u| u.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    assert_eq!(
        names,
        [
            "kube-apiserver.service",
            "kube-controller-manager.service",
            "kube-proxy.service",
            "kube-scheduler.service",
            "kubelet.service",
            "rustkube-etcd.service"
        ]
    );
    // Each unit runs a binary that is there (a missing one would be a verify error too).
    for name in ["kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet"] {
        assert!(bin_dir.join(name).is_file(), "{name} not built in {}", bin_dir.display());
    }
    let out = verify(&units);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{}", text(&out));
    assert_eq!(text(&out).trim(), "", "systemd-analyze verify warned");

    // The check sees a unit's faults: a misspelt key and a binary that is not there.
    let broken = dir.path().join("broken").join("kube-scheduler.service");
    std::fs::create_dir(dir.path().join("broken")).expect("dir");
    let unit = std::fs::read_to_string(dir.path().join("kube-scheduler.service")).expect("unit");
    let unit = unit.replace("ProtectSystem=", "ProtectSytem=").replace(&bin_dir.display().to_string(), "/nonexistent");
    std::fs::write(&broken, unit).expect("broken unit");
    let out = verify(&[broken]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Unknown key 'ProtectSytem'"), "{said}");
    assert!(said.contains("/nonexistent/kube-scheduler is not executable"), "{said}");
}
