//! Paths as users give them: files, directories, `-`, and `git:REV:PATH` for a file or
//! directory as it was at a commit (for comparing a pull request with its base).

use std::path::PathBuf;
use std::process::Command;

use palisade_load::source::{read_paths_excluding, refuse_foreign, Exclude, Source};

/// Reads every path, leaving out what `exclude` matches; `git:REV:PATH` reads from the
/// repository the current directory is in. Inputs that are not manifests are refused.
pub fn read(paths: &[PathBuf], exclude: &Exclude) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for p in paths {
        let shown = p.display().to_string();
        match shown.strip_prefix("git:") {
            Some(spec) => {
                let files = from_git(spec, exclude)?;
                refuse_foreign(&files).map_err(|e| e.to_string())?;
                out.extend(files);
            }
            None => out.extend(read_paths_excluding(std::slice::from_ref(p), exclude).map_err(|e| e.to_string())?),
        }
    }
    Ok(out)
}

fn git(args: &[&str]) -> Result<String, String> {
    let out = Command::new("git").args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("git {}: output is not UTF-8", args.join(" ")))
}

/// `REV:PATH` (PATH relative to the current directory; empty or `.` for all of it).
fn from_git(spec: &str, exclude: &Exclude) -> Result<Vec<Source>, String> {
    let (rev, path) =
        spec.split_once(':').ok_or_else(|| format!("git:{spec}: write git:REV:PATH, e.g. git:main:policies/"))?;
    let path = if path.is_empty() { "." } else { path };
    let listed = git(&["ls-tree", "-r", "--name-only", rev, "--", path])?;
    let files: Vec<&str> = listed
        .lines()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml") || f.ends_with(".json"))
        .filter(|f| !exclude.excludes(std::path::Path::new(f)))
        .collect();
    if files.is_empty() {
        return Err(format!("git:{spec}: no .yaml, .yml or .json file at {path} in {rev}"));
    }
    files
        .into_iter()
        .map(|f| {
            let text = git(&["show", &format!("{rev}:./{f}")])?;
            Ok(Source { name: format!("git:{rev}:{f}").into(), text: text.into() })
        })
        .collect()
}
