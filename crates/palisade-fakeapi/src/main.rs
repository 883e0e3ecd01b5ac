//! `palisade-fakeapi`: runs the fake API server for manual tries. It serves the manifests given
//! as arguments (YAML, multi-document), enforces a ClusterRole from a manifest when asked,
//! writes a kubeconfig and waits for Ctrl-C.
//!
//! `palisade-fakeapi [--role FILE:NAME] [--calico] [--kubeconfig-dir DIR] MANIFEST...`

#![forbid(unsafe_code)]

use std::path::PathBuf;

use palisade_fakeapi::{Config, FakeApi, Groups, Rbac};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut config = Config::default();
    let mut dir = std::env::temp_dir().join(format!("palisade-fakeapi-{}", std::process::id()));
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--role" => {
                let spec = args.next().ok_or("--role FILE:NAME")?;
                let (file, name) = spec.rsplit_once(':').ok_or("--role FILE:NAME")?;
                config.rbac = Some(Rbac::from_manifest(&std::fs::read_to_string(file)?, name)?);
            }
            "--calico" => config.groups = Groups::kubernetes().with("projectcalico.org/v3"),
            "--all-groups" => config.groups = Groups::all(),
            "--kubeconfig-dir" => dir = PathBuf::from(args.next().ok_or("--kubeconfig-dir DIR")?),
            "-h" | "--help" => {
                println!(
                    "palisade-fakeapi [--role FILE:NAME] [--calico|--all-groups] [--kubeconfig-dir DIR] MANIFEST..."
                );
                return Ok(());
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    let api = FakeApi::start(config)?;
    for f in &files {
        for doc in palisade_fakeapi::rbac::documents(&std::fs::read_to_string(f)?)? {
            let items = match doc["items"].as_array() {
                Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => items.clone(),
                _ => vec![doc],
            };
            for item in items {
                if let Err(e) = api.apply(item) {
                    eprintln!("{}: skipped: {e}", f.display());
                }
            }
        }
    }
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = api.write_kubeconfig(&dir)?;
    println!("serving {} at {}", files.len(), api.url());
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("admin token (bypasses RBAC): {}", palisade_fakeapi::ADMIN_TOKEN);
    loop {
        std::thread::park();
    }
}
