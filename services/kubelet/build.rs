//! Compiles the kubelet's own gRPC contracts (proto/ at the repository root):
//! the PodResources API it serves and the device plugin API it serves
//! (Registration) and calls (DevicePlugin). Clients and servers are both
//! generated, so tests and tools can speak either side.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): cargo reuses a compiled build script across checkouts
    // at different paths that share a target directory.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = [root.join("podresources/v1/api.proto"), root.join("deviceplugin/v1beta1/api.proto")];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    tonic_prost_build::configure().build_server(true).build_client(true).compile_protos(&protos, &[root])?;
    Ok(())
}
