//! Invalid input (tests/invalid/*.yaml, *.json): each file declares the `line:column` and
//! message it must produce (a file that cannot hold them, JSON or UTF-16, in `NAME.expect`). Any
//! error means exit code 2 and no verdicts at all.

mod common;

use common::{palisade, repo};

#[test]
fn every_validation_rule_reports_file_line_column_and_field() {
    let dir = repo().join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    let mut failures = Vec::new();
    for f in &files {
        let rel = format!("tests/invalid/{}", f.file_name().unwrap().to_string_lossy());
        // Some files hold bytes that are not UTF-8 on purpose; expectations are ASCII, beside
        // the file (`NAME.expect`) when it cannot hold them (JSON, UTF-16).
        let beside = std::path::PathBuf::from(format!("{}.expect", f.display()));
        let declared = if beside.exists() { beside } else { f.clone() };
        let text = String::from_utf8_lossy(&std::fs::read(&declared).unwrap()).into_owned();
        let expects: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (pos, msg) = e.split_once(' ').unwrap();
                (pos.to_string(), msg.to_string())
            })
            .collect();
        assert!(!expects.is_empty(), "{rel} declares no expectation");
        let out = palisade().current_dir(repo()).args(["matrix", &rel]).env("NO_COLOR", "1").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !out.stdout.is_empty() {
            failures.push(format!(
                "{rel}: exit {:?}, stdout {:?}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        for (pos, msg) in &expects {
            let header = format!("{rel}:{pos}: ");
            let found = stderr.lines().any(|l| l.contains(&header) && l.contains(msg.as_str()));
            if !found {
                failures.push(format!("{rel}: no error line with `{header}` and `{msg}`; stderr:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_invalid_policy_withholds_every_verdict() {
    let out = palisade()
        .current_dir(repo())
        .args([
            "check",
            "--from",
            "x/a",
            "--to",
            "x/b",
            "--port",
            "80",
            "tests/conformance/model.yaml",
            "tests/conformance/cases/01-default-deny-ingress.yaml",
            "tests/invalid/bad-cidr.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no verdict may be printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no verdicts are given"));
}

#[test]
fn unused_kinds_are_listed_in_one_warning() {
    let dir = std::env::temp_dir().join(format!("palisade-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("mixed.yaml");
    std::fs::write(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\n").unwrap();
    let out = palisade().args(["matrix", f.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0));
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("kinds Palisade does not use")).collect();
    assert_eq!(
        warnings,
        ["warning: ignored 3 object(s) of kinds Palisade does not use: v1 ConfigMap (2), v1 Secret (1)"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
