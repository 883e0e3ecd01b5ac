//! Records the git revision the binary is built from (`palisade --version`) as
//! PALISADE_REVISION: `git describe` (a tag, or the commit) and the commit date. Outside a git
//! checkout of this source (a crate tarball, a container build without .git) it says `unknown
//! revision`, unless the builder sets PALISADE_REVISION itself.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PALISADE_REVISION");
    if let Ok(given) = std::env::var("PALISADE_REVISION") {
        println!("cargo:rustc-env=PALISADE_REVISION={given}");
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // Only a checkout that tracks this very file describes this source; a tarball unpacked
    // inside some other repository must not borrow that repository's revision.
    let ours = git(&dir, &["ls-files", "--full-name", "Cargo.toml"]).is_some();
    let revision = ours
        .then(|| {
            let described = git(&dir, &["describe", "--tags", "--always", "--abbrev=12"])?;
            let date = git(&dir, &["log", "-1", "--format=%cs"])?;
            Some(format!("{described} {date}"))
        })
        .flatten();
    println!("cargo:rustc-env=PALISADE_REVISION={}", revision.as_deref().unwrap_or("unknown revision"));
    if ours {
        // Rebuild when HEAD moves: HEAD (a branch switch), the branch's ref, packed refs.
        let branch = git(&dir, &["symbolic-ref", "-q", "HEAD"]);
        for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
            let Some(file) = git(&dir, &["rev-parse", "--git-path", name]) else { continue };
            let file = dir.join(file); // relative paths are relative to the crate's directory
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
}
