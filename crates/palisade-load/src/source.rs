//! Reading manifest text from files, directories (recursively) and stdin.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The text of one input, with the name used in messages.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub text: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Foreign(String),
    #[error("--exclude {pattern}: {source}")]
    Pattern { pattern: String, source: globset::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: not UTF-8 text")]
    NotText { path: String },
    #[error("{path}: directory holds no .yaml, .yml or .json files")]
    EmptyDir { path: String },
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Paths to leave out (`--exclude GLOB`): a glob matches a path as walked (`charts/web/**`,
/// `*/values.yaml`; `*` crosses `/`) or a file's name (`values.yaml`).
#[derive(Clone, Debug, Default)]
pub struct Exclude(Option<globset::GlobSet>);

impl Exclude {
    pub fn new(patterns: &[String]) -> Result<Exclude, ReadError> {
        if patterns.is_empty() {
            return Ok(Exclude(None));
        }
        let mut set = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::Glob::new(p.trim_start_matches("./"))
                .map_err(|source| ReadError::Pattern { pattern: p.clone(), source })?;
            set.add(glob);
        }
        let set = set.build().map_err(|source| ReadError::Pattern { pattern: patterns.join(" "), source })?;
        Ok(Exclude(Some(set)))
    }

    /// Whether a path is left out.
    pub fn excludes(&self, path: &Path) -> bool {
        let Some(set) = &self.0 else { return false };
        let path = path.strip_prefix("./").unwrap_or(path);
        set.is_match(path) || path.file_name().is_some_and(|n| set.is_match(n))
    }
}

/// Refuses inputs that are not manifests (Helm charts, templates, other YAML), naming each
/// with what to do (see [`crate::foreign`]).
pub fn refuse_foreign(sources: &[Source]) -> Result<(), ReadError> {
    let found = crate::foreign::find(sources.iter().map(|s| (&*s.name, &*s.text)));
    if found.is_empty() {
        Ok(())
    } else {
        Err(ReadError::Foreign(crate::foreign::describe(&found)))
    }
}

/// Reads every path: `-` is stdin, directories are walked for .yaml/.yml/.json in name order.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Source>, ReadError> {
    read_paths_excluding(paths, &Exclude::default())
}

/// [`read_paths`] leaving out what `exclude` matches; inputs that are not manifests are refused.
pub fn read_paths_excluding(paths: &[PathBuf], exclude: &Exclude) -> Result<Vec<Source>, ReadError> {
    let out = read_all(paths, exclude)?;
    refuse_foreign(&out)?;
    Ok(out)
}

fn read_all(paths: &[PathBuf], exclude: &Exclude) -> Result<Vec<Source>, ReadError> {
    let mut out = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        if shown == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|source| ReadError::Io { path: "<stdin>".into(), source })?;
            out.push(Source { name: "<stdin>".into(), text: crate::text::decode_bytes(bytes).into() });
        } else if path.is_dir() {
            let before = out.len();
            let walk = walkdir::WalkDir::new(path).sort_by_file_name().follow_links(true);
            for entry in walk.into_iter().filter_entry(|e| e.depth() == 0 || !exclude.excludes(e.path())) {
                let entry = entry.map_err(|e| ReadError::Io { path: shown.clone(), source: e.into() })?;
                if entry.file_type().is_file() && is_manifest(entry.path()) {
                    out.push(read_file(entry.path())?);
                }
            }
            if out.len() == before {
                return Err(ReadError::EmptyDir { path: shown });
            }
        } else if exclude.excludes(path) {
            continue;
        } else if path.exists() {
            out.push(read_file(path)?);
        } else {
            return Err(ReadError::Missing { path: shown });
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Source, ReadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io { path: shown.clone(), source })?;
    let text = crate::text::decode_bytes(bytes);
    Ok(Source { name: shown.into(), text: text.into() })
}

/// Paths as given on the command line, for messages.
pub fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
}

pub fn as_pathbufs(v: &[String]) -> Vec<PathBuf> {
    v.iter().map(PathBuf::from).collect()
}
