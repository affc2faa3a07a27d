//! The `rustkube-bridge` CNI plugin binary: reads the CNI environment and the
//! network config from stdin, answers with a result or error JSON on stdout.

use std::io::Write;
use std::process::exit;

use cni_plugin::Cni;
use rustkube_cni::config::PluginConfig;
use rustkube_cni::plugin::{self, Error, Request};
use serde_json::Value;

fn main() {
    // VERSION and malformed input (env, JSON, unsupported cniVersion) are answered by the crate.
    let (command, container_id, ifname, netns, config) = match Cni::load() {
        Cni::Add { container_id, ifname, netns, config, .. } => ("ADD", container_id, ifname, Some(netns), config),
        Cni::Del { container_id, ifname, netns, config, .. } => ("DEL", container_id, ifname, netns, config),
        Cni::Check { container_id, ifname, netns, config, .. } => ("CHECK", container_id, ifname, Some(netns), config),
        Cni::Version(_) => unreachable!("Cni::load answers VERSION itself"),
    };
    let cni_version = config.cni_version.to_string();
    let outcome = PluginConfig::from_network(&config).map_err(Error::from).and_then(|config| {
        let req = Request { cni_version: cni_version.clone(), container_id, ifname, netns, config };
        match command {
            "ADD" => plugin::add(&req).map(Some),
            "DEL" => plugin::del(&req).map(|()| None),
            _ => plugin::check(&req).map(|()| None),
        }
    });
    match outcome {
        Ok(result) => {
            if let Some(result) = result {
                print_json(&result);
            }
            exit(0);
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "rustkube-cni {command}: {err}");
            print_json(&err.to_json(&cni_version));
            exit(1);
        }
    }
}

fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
