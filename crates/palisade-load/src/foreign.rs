//! Files among the inputs that are not Kubernetes manifests: Helm charts (a `Chart.yaml`, its
//! `values.yaml`, templates with `{{ }}` actions) and other YAML with neither `apiVersion` nor
//! `kind`. Deciding them as they are would fail on their syntax or silently miss the policies a
//! template would render, so they are named, with what to do: render the chart, or leave the
//! file out with `--exclude`.

use std::collections::BTreeMap;
use std::path::Path;

/// Why an input is not a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// A file of the Helm chart rooted at this directory (it holds `Chart.yaml`).
    Chart { root: String },
    /// Template actions (`{{ ... }}`) where YAML values or lines belong.
    Template,
    /// Neither `apiVersion` nor `kind` anywhere: configuration of something else.
    NotManifest,
}

/// The inputs (name and text) that are not manifests, each with why.
pub fn find<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> Vec<(String, Foreign)> {
    let roots: Vec<String> = (sources.clone().into_iter())
        .filter(|(name, _)| Path::new(name).file_name().is_some_and(|n| n == "Chart.yaml" || n == "Chart.yml"))
        .map(|(name, _)| Path::new(name).parent().map(|p| p.display().to_string()).unwrap_or_default())
        .collect();
    let chart_of = |name: &str| {
        roots.iter().filter(|r| Path::new(name).starts_with(Path::new(r.as_str()))).max_by_key(|r| r.len()).cloned()
    };
    let mut out = Vec::new();
    for (name, text) in sources {
        let why = match chart_of(name) {
            Some(root) => Some(Foreign::Chart { root }),
            None if has_template_actions(text) => Some(Foreign::Template),
            None if !names_a_kind(text) => Some(Foreign::NotManifest),
            None => None,
        };
        out.extend(why.map(|w| (name.to_string(), w)));
    }
    out
}

/// A line that starts with a template action, or a value or list item that is one, unquoted:
/// what Helm and Go templates look like before rendering. (Rendered manifests carry `{{` only
/// inside strings: quoted, or the text of a block scalar such as an alerting rule or a
/// ConfigMap's file, which is data, not structure, and is skipped.)
fn has_template_actions(text: &str) -> bool {
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if block.is_some_and(|parent| line.trim().is_empty() || indent > parent) {
            continue;
        }
        let l = line.trim_start();
        if l.starts_with("{{") || l.contains(": {{") || l.starts_with("- {{") {
            return true;
        }
        block = block_scalar_parent(line);
    }
    false
}

/// For a line that opens a block scalar (`key: |`, `- >-`, `key: !!str |2 # note`): the
/// column its text must be indented beyond, which is the key's (or, for a list item, the
/// dash's). YAML ends the scalar at the first non-blank line indented no further.
fn block_scalar_parent(line: &str) -> Option<usize> {
    let body = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut tokens: Vec<&str> = body.split_whitespace().collect();
    let header = tokens.pop()?;
    let indicators = header.strip_prefix(['|', '>'])?;
    if !indicators.bytes().all(|c| c.is_ascii_digit() || c == b'+' || c == b'-') {
        return None;
    }
    while tokens.last().is_some_and(|t| t.starts_with(['&', '!'])) {
        tokens.pop();
    }
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[indent..];
    let mut column = indent;
    match tokens.last() {
        Some(t) if t.ends_with(':') => {
            // The key starts after any list dashes.
            while let Some(after) = rest.strip_prefix('-').filter(|a| a.starts_with(' ')) {
                let spaces = after.len() - after.trim_start_matches(' ').len();
                column += 1 + spaces;
                rest = &after[spaces..];
            }
            Some(column)
        }
        Some(&"-") => {
            let dashes = tokens.len() - 1;
            for _ in 0..dashes {
                let after = rest.strip_prefix('-')?;
                let spaces = after.len() - after.trim_start_matches(' ').len();
                column += 1 + spaces;
                rest = &after[spaces..];
            }
            Some(column)
        }
        _ => None,
    }
}

/// Whether some line holds an `apiVersion` or `kind` key (YAML or JSON), or the text is UTF-16
/// without a BOM (its keys hidden between NULs: refused later, with the encoding named); a file
/// with only comments and blank lines names none and holds no object either.
fn names_a_kind(text: &str) -> bool {
    let content = text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#') && l != "---");
    !content
        || text.contains("apiVersion")
        || text.contains("kind:")
        || text.contains("\"kind\"")
        || crate::text::utf16_without_bom(text)
}

/// One message for all of them, with what to do.
pub fn describe(found: &[(String, Foreign)]) -> String {
    let mut charts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    for (path, why) in found {
        let path = path.strip_prefix("./").unwrap_or(path);
        match why {
            Foreign::Chart { root } => *charts.entry(root.as_str()).or_default() += 1,
            Foreign::Template => lines.push(format!(
                "  {path}: template actions ({{{{ }}}}), not YAML yet: render it first (helm template ...), or --exclude it"
            )),
            Foreign::NotManifest => lines.push(format!(
                "  {path}: not a Kubernetes manifest (no apiVersion or kind); leave it out with --exclude '{path}'"
            )),
        }
    }
    for (root, n) in charts {
        let shown = match root.strip_prefix("./").unwrap_or(root) {
            "" => ".",
            r => r,
        };
        let name = Path::new(shown).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or("chart".into());
        lines.push(format!(
            "  {shown}: a Helm chart ({n} file(s): Chart.yaml, values, templates): render the chart first: \
             helm template {name} {shown} > {name}.yaml, then pass {name}.yaml and --exclude '{shown}/**'"
        ));
    }
    format!("{} input(s) are not Kubernetes manifests:\n{}", found.len(), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(name: &'a str, text: &'a str) -> (&'a str, &'a str) {
        (name, text)
    }

    #[test]
    fn charts_templates_and_other_yaml_are_told_apart_from_manifests() {
        let found = find([
            src("charts/web/Chart.yaml", "apiVersion: v2\nname: web\n"),
            src("charts/web/values.yaml", "replicas: 2\n"),
            src("charts/web/templates/np.yaml", "kind: NetworkPolicy\nmetadata:\n  name: {{ .Release.Name }}\n"),
            src("loose/np.yaml", "{{- if .Values.on }}\nkind: NetworkPolicy\n{{- end }}\n"),
            src("ci.yml", "on: push\njobs: {}\n"),
            src("rules.yaml", "kind: ConfigMap\ndata:\n  a: '{{ $labels.x }}'\n"),
            src("empty.yaml", "# nothing yet\n---\n"),
            src("list.json", "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": []}"),
        ]);
        let chart = Foreign::Chart { root: "charts/web".into() };
        assert_eq!(
            found,
            vec![
                ("charts/web/Chart.yaml".into(), chart.clone()),
                ("charts/web/values.yaml".into(), chart.clone()),
                ("charts/web/templates/np.yaml".into(), chart),
                ("loose/np.yaml".into(), Foreign::Template),
                ("ci.yml".into(), Foreign::NotManifest),
            ]
        );
        let text = describe(&found);
        assert!(text.contains("helm template web charts/web > web.yaml"), "{text}");
        assert!(text.contains("--exclude 'ci.yml'"), "{text}");
    }

    /// Go templates in the text of block scalars (alerting rules, a ConfigMap's files) are data;
    /// the same actions where structure belongs are an unrendered template.
    #[test]
    fn templates_inside_block_scalars_are_text() {
        for text in [
            "kind: ConfigMap\ndata:\n  rules: |\n    {{ range .Alerts }}\n    - {{ .Labels.x }}\n\n    a: {{ .y }}\n  other: x\n",
            "kind: ConfigMap\ndata:\n  a: >-\n      {{ x }}\n  b: |2 # note\n    {{ y }}\n  c: !!str |\n   {{ z }}\n",
            "kind: List\nitems:\n- kind: ConfigMap\n  data:\n    t: |\n      {{ x }}\n    u: |-\n     {{ y }}\n- |\n  {{ z }}\n",
            "kind: X\nspec:\n  - - |\n      {{ a }}\n",
        ] {
            assert!(!has_template_actions(text), "{text}");
        }
        for text in [
            "kind: ConfigMap\ndata:\n  rules: |\n    text\n  {{ if .x }}\n  y: 1\n",
            "kind: X\nspec:\n- key: |\n    text\n  other: {{ .v }}\n",
            "kind: X\ndata:\n  a: |\n{{ toYaml .Values.a | indent 4 }}\n",
            "kind: X\ndata:\n  a: '|'\n  {{ y }}\n",
            "kind: X\nspec:\n  selector: {{ .Values.s }} # |\n",
        ] {
            assert!(has_template_actions(text), "{text}");
        }
    }

    #[test]
    fn block_scalar_headers_give_their_parent_column() {
        for (line, want) in [
            ("  key: |", Some(2)),
            ("- key: >-", Some(2)),
            ("  -   key: |+ # c", Some(6)),
            ("- |", Some(0)),
            ("  - - |2", Some(4)),
            ("a: &x !!str |", Some(0)),
            ("a: 'x |'", None),
            ("a: b|", None),
            ("a: |x", None),
        ] {
            assert_eq!(block_scalar_parent(line), want, "{line}");
        }
    }
}
