//! What an installation gives a user: the version with its git revision (and the build
//! script's fallbacks outside a checkout), the kubectl plugin binary, shell completions and man
//! pages generated from the same clap definitions as the commands.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{palisade, repo, run};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_git_revision() {
    let (code, long, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let (code, sub, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(long, sub, "palisade version prints what --version prints");
    let want = format!("palisade {} (", env!("CARGO_PKG_VERSION"));
    assert!(long.starts_with(&want), "{long}");
    // Built from this checkout: the revision is its own (the binary is rebuilt when HEAD moves).
    if let Some(described) = git(&repo(), &["describe", "--tags", "--always", "--abbrev=12"]) {
        assert!(long.contains(&format!("({described} ")), "{long} does not name {described}");
    }
}

/// The build script run by hand: outside a git checkout, inside a repository that does not
/// track the crate (a tarball unpacked in someone's project), and with the revision given.
#[test]
fn build_script_falls_back_cleanly_without_a_checkout() {
    let dir = scratch("build-script");
    let exe = dir.join("build-script");
    let ok = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&exe)
        .arg(repo().join("crates/palisade-cli/build.rs"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "build.rs compiles on its own");
    let revision = |manifest_dir: &Path, given: Option<&str>| -> String {
        let mut cmd = Command::new(&exe);
        cmd.env("CARGO_MANIFEST_DIR", manifest_dir).env_remove("PALISADE_REVISION");
        if let Some(g) = given {
            cmd.env("PALISADE_REVISION", g);
        }
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        out.lines().find_map(|l| l.strip_prefix("cargo:rustc-env=PALISADE_REVISION=")).unwrap().to_string()
    };
    let plain = dir.join("unpacked");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("Cargo.toml"), "[package]\n").unwrap();
    assert_eq!(revision(&plain, None), "unknown revision", "no git around it");
    if git(&dir, &["init", "-q"]).is_some() {
        let _ = git(
            &dir,
            &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
        );
        assert_eq!(revision(&plain, None), "unknown revision", "a repository that does not track the crate");
    }
    assert_eq!(revision(&plain, Some("v1.2.3 2027-01-01")), "v1.2.3 2027-01-01", "a packager's own revision");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_kubectl_plugin_is_the_same_command_under_kubectl_s_name() {
    let plugin = Path::new(env!("CARGO_BIN_EXE_kubectl-palisade"));
    let args = ["check", "--from", "shop/frontend", "--to", "shop/db", "--port", "5432", "examples/lateral-movement"];
    let out = Command::new(plugin).current_dir(repo()).args(args).output().unwrap();
    let (_, plain, _) = run(&args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain);
    let help = Command::new(plugin).args(["check", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: kubectl palisade check [OPTIONS] --from <FROM>"), "{help}");
    let typo = Command::new(plugin).arg("chek").output().unwrap();
    assert!(String::from_utf8_lossy(&typo.stderr).contains("Usage: kubectl palisade <COMMAND>"));
    // Through kubectl itself, when it is installed: it finds the plugin on the PATH.
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("kubectl is not installed: the plugin was run directly only");
        return;
    }
    let path = format!("{}:{}", plugin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out =
        Command::new("kubectl").env("PATH", path).current_dir(repo()).arg("palisade").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain);
}

#[test]
fn completion_scripts_know_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, err) = run(&["completion", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("check") && script.contains("--from"), "{shell} script lacks check --from");
    }
    // bash: load the script and ask it what completes `palisade ch` and `palisade check --fr`.
    let Ok(probe) = Command::new("bash").arg("--version").output() else { return };
    assert!(probe.status.success());
    let (_, script, _) = run(&["completion", "bash"]);
    let ask = |words: &str| -> String {
        let line = format!(
            "{script}\nCOMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _palisade palisade \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash").arg("-c").arg(line).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(ask("palisade ch").trim(), "check");
    assert!(ask("palisade check --fr").lines().any(|l| l == "--from"));
}

#[test]
fn man_pages_cover_every_command() {
    let dir = scratch("man");
    let out = palisade().args(["man", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, help, _) = run(&["--help"]);
    // Every command the help lists has its page, titled with its name.
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    let main = std::fs::read_to_string(dir.join("palisade.1")).unwrap();
    assert!(main.contains(".TH palisade 1"), "{main}");
    for c in commands {
        let page = std::fs::read_to_string(dir.join(format!("palisade-{c}.1"))).unwrap();
        assert!(page.contains(&format!(".TH palisade-{c} 1")), "palisade-{c}.1");
    }
    let check = std::fs::read_to_string(dir.join("palisade-check.1")).unwrap();
    assert!(check.contains("\\-\\-from") && check.contains("\\-\\-exit\\-code"), "{check}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Progress goes to stderr only when it is a terminal: under `script` (a pseudo-terminal) the
/// matrix and lint show what they are doing; through a pipe stderr stays empty.
#[test]
fn progress_shows_on_a_terminal_only() {
    let args = ["examples/calico-wordpress", "-q", "--output", "json"];
    for command in ["matrix", "lint"] {
        let (_, _, err) = run(&[&[command][..], &args].concat());
        assert_eq!(err, "", "{command}: nothing on a piped stderr");
    }
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script (util-linux) is not installed: the terminal side is not checked");
        return;
    }
    let dir = scratch("progress");
    let typescript = dir.join("typescript");
    let line = format!("{} matrix {} > /dev/null", env!("CARGO_BIN_EXE_palisade"), args.join(" "));
    let out = Command::new("script").current_dir(repo()).arg("-qec").arg(line).arg(&typescript).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = std::fs::read_to_string(&typescript).unwrap();
    assert!(
        seen.contains("reading 1") || seen.contains("deciding 36 pod pairs"),
        "no progress on the terminal: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
