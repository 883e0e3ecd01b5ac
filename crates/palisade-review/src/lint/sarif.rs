//! SARIF 2.1.0, the format code-scanning services (GitHub, GitLab, Azure) read.

use palisade_core::field::Severity;
use serde_json::{json, Value};

use super::{Finding, CHECKS};

pub fn sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = CHECKS
        .iter()
        .map(|c| {
            json!({
                "id": c.code,
                "name": c.name,
                "shortDescription": {"text": c.summary},
                "defaultConfiguration": {"level": level(c.severity)},
            })
        })
        .collect();
    let results: Vec<Value> = findings.iter().map(result).collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "palisade", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
        }],
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn result(f: &Finding) -> Value {
    let rule_index = CHECKS.iter().position(|c| c.code == f.code).unwrap_or(0);
    let mut text = format!("{}: {}", f.object, f.message);
    if !f.help.is_empty() {
        text.push_str(&format!(" Hint: {}", f.help));
    }
    let mut r = json!({
        "ruleId": f.code,
        "ruleIndex": rule_index,
        "level": level(f.severity),
        "message": {"text": text},
    });
    if let Some(l) = &f.location {
        r["locations"] = json!([{
            "physicalLocation": {
                "artifactLocation": {"uri": l.file.as_ref()},
                "region": {"startLine": l.line, "startColumn": l.column},
            },
            "logicalLocations": [{"fullyQualifiedName": format!("{}#{}", f.object, f.path)}],
        }]);
    }
    r
}
