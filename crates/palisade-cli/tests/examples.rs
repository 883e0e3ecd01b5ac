//! Every example of the seed articles (examples/*/checks.txt) run through the `palisade` binary:
//! the verdict in JSON, and `--exit-code` agreeing with it.

mod common;

use common::{palisade, repo};

struct Check {
    line: String,
    verdict: String,
    args: Vec<String>,
}

fn parse_checks(text: &str) -> Vec<Check> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let (port, proto) = t[3].split_once('/').expect("port/protocol");
            let mut args = vec!["check", "--from", t[1], "--to", t[2], "--port", port, "--protocol", proto];
            args.extend(&t[4..]);
            Check { line: l.to_string(), verdict: t[0].to_string(), args: args.into_iter().map(String::from).collect() }
        })
        .collect()
}

#[test]
fn seed_article_examples_behave_as_the_articles_say() {
    let examples = repo().join("examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("checks.txt").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "examples with checks.txt: {dirs:?}");
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in &dirs {
        for c in parse_checks(&std::fs::read_to_string(dir.join("checks.txt")).unwrap()) {
            count += 1;
            let out = palisade().current_dir(dir).args(&c.args).args(["--output", "json", "--quiet"]).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let json: serde_json::Value = match serde_json::from_str(&stdout) {
                Ok(v) => v,
                Err(_) => {
                    failures.push(format!(
                        "{}: {}\n  no JSON; stderr: {}",
                        dir.display(),
                        c.line,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                    continue;
                }
            };
            if json["verdict"] != c.verdict.as_str() {
                failures.push(format!("{}: {}\n  got {}", dir.display(), c.line, json["verdict"]));
            }
            let status = palisade()
                .current_dir(dir)
                .args(&c.args)
                .args(["--exit-code", "--quiet"])
                .output()
                .unwrap()
                .status
                .code();
            let want = if c.verdict == "allow" { 0 } else { 1 };
            if status != Some(want) {
                failures.push(format!("{}: {}\n  --exit-code gave {status:?}", dir.display(), c.line));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} checks failed:\n{}", failures.len(), failures.join("\n"));
}
