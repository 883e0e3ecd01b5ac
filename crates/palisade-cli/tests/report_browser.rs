//! The HTML report as a browser shows it (headless Chromium; `PALISADE_SKIP_BROWSER=1` skips):
//! a seed example (selection, the allowing rules, port and namespace filters, lint), a
//! 10-namespace, 50-workload cluster written here, and the 10,000-pod bench cluster. For each
//! view it measures every visible label: none overlaps another, each sits inside its box, every
//! box the view should show is drawn, and filtered namespaces leave no blank space.
//! `PALISADE_SCREENSHOTS=DIR` keeps screenshots of the views there for a person to look at.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::run;
use serde_json::Value;

/// Appended to a copy of the report: measures what the page drew and writes it as JSON into
/// `<pre id="audit">` for `--dump-dom`.
const AUDIT: &str = r#"<script>
(function () {
  const box = e => e.getBoundingClientRect();
  const drawn = e => { const r = box(e); return r.width > 0 && r.height > 0 && getComputedStyle(e).display !== 'none'; };
  const texts = [...document.querySelectorAll('#graph text')].filter(drawn).map(e => ({ t: e.textContent, r: box(e) }));
  texts.sort((a, b) => a.r.left - b.r.left);
  const overlaps = [];
  for (let i = 0; i < texts.length; i++) {
    for (let j = i + 1; j < texts.length && texts[j].r.left < texts[i].r.right - 0.5; j++) {
      const a = texts[i].r, b = texts[j].r;
      if (a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) overlaps.push([texts[i].t, texts[j].t]);
    }
  }
  const outside = [];
  const g = box(document.getElementById('graph'));
  let right = 0, bottom = 0;
  document.querySelectorAll('#graph .node').forEach(n => {
    const r = box(n.querySelector('rect'));
    right = Math.max(right, r.right - g.left); bottom = Math.max(bottom, r.bottom - g.top);
    n.querySelectorAll('text').forEach(t => { const b = box(t); if (b.left < r.left || b.right > r.right || b.top < r.top || b.bottom > r.bottom) outside.push(t.textContent); });
  });
  const shown = [...document.querySelectorAll('#graph .node')].filter(drawn).map(n => n.dataset.name);
  const pre = document.createElement('pre');
  pre.id = 'audit';
  pre.textContent = JSON.stringify({ texts: texts.length, overlaps, outside, shown, links: document.querySelectorAll('#graph .link').length,
    width: g.width, height: g.height, right, bottom, selected: (document.getElementById('selected-link') || {}).textContent || null,
    why: [...document.querySelectorAll('#why li')].map(l => l.textContent) });
  document.body.append(pre);
})();
</script>"#;

fn browser() -> Option<&'static str> {
    let found =
        ["chromium", "chromium-browser"].into_iter().find(|b| Command::new(b).arg("--version").output().is_ok());
    if found.is_none() {
        assert!(
            std::env::var_os("PALISADE_SKIP_BROWSER").is_some(),
            "chromium is not installed (PALISADE_SKIP_BROWSER=1 skips)"
        );
        eprintln!("skipping: no chromium");
    }
    found
}

fn chromium(args: &[String]) -> std::process::Output {
    // A profile of its own per run: tests run side by side, and Chromium locks its profile.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let profile = std::env::temp_dir().join(format!("palisade-chromium-{}-{run}", std::process::id()));
    let out = Command::new(browser().unwrap())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The report with the audit script, opened at `fragment`: what the audit measured.
fn audit(report: &Path, fragment: &str) -> Value {
    let audited = report.with_extension("audit.html");
    let text = std::fs::read_to_string(report).unwrap().replace("</body>", &format!("{AUDIT}\n</body>"));
    std::fs::write(&audited, text).unwrap();
    let url = format!("file://{}#{fragment}", audited.display());
    let out = chromium(&["--window-size=1600,1200".into(), "--dump-dom".into(), url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom.split("<pre id=\"audit\">").nth(1).and_then(|s| s.split("</pre>").next()).expect("the audit ran");
    let json = json.replace("&quot;", "\"").replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

/// Saves a screenshot of the report at `fragment` into PALISADE_SCREENSHOTS, if set.
fn screenshot(report: &Path, fragment: &str, name: &str) {
    let Some(dir) = std::env::var_os("PALISADE_SCREENSHOTS") else { return };
    let file = PathBuf::from(dir).join(format!("{name}.png"));
    let url = format!("file://{}#{fragment}", report.display());
    chromium(&["--window-size=1600,1200".into(), format!("--screenshot={}", file.display()), url]);
}

/// No label overlaps another or leaves its box; `want` are all drawn; no blank space beyond
/// the boxes (the margin and one column gap at most).
fn readable(v: &Value, want: &[String], at: &str) {
    assert_eq!(v["overlaps"], serde_json::json!([]), "{at}: labels overlap");
    assert_eq!(v["outside"], serde_json::json!([]), "{at}: labels leave their boxes");
    let shown: Vec<&str> = v["shown"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for w in want {
        assert!(shown.contains(&w.as_str()), "{at}: {w} is not drawn ({shown:?})");
    }
    let slack = |a: &str, b: &str| v[a].as_f64().unwrap() - v[b].as_f64().unwrap();
    assert!(slack("width", "right") < 60.0 && slack("height", "bottom") < 60.0, "{at}: blank space: {v}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn report(dir: &Path, inputs: &[&str]) -> PathBuf {
    let html = dir.join("report.html");
    let (code, _, err) =
        run(&[&["graph", "--output", "html", "-o", html.to_str().unwrap(), "-q"][..], inputs].concat());
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&html).unwrap();
    for external in ["http://", "https://", "src=\"//"] {
        let hits: Vec<&str> =
            text.lines().filter(|l| l.contains(external) && !l.contains("www.w3.org/2000/svg")).collect();
        assert!(hits.is_empty(), "the report must load nothing: {hits:?}");
    }
    html
}

#[test]
fn the_seed_example_selects_filters_and_explains() {
    if browser().is_none() {
        return;
    }
    let dir = scratch("example");
    let html = report(&dir, &["examples/calico-wordpress"]);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let top = audit(&html, "");
    readable(&top, &names(&["default", "kube-system", "monitoring", "traefik", "wordpress", "outside"]), "namespaces");
    // Into a namespace: its workloads beside the groups they talk with; a link's rules.
    let v = audit(&html, "view=wordpress&edge=traefik->wordpress/wordpress-0");
    readable(&v, &names(&["wordpress/wordpress-0", "wordpress/mariadb-0", "traefik", "kube-system"]), "wordpress");
    assert_eq!(v["selected"], "traefik -> wordpress/wordpress-0: 80/TCP");
    let why = v["why"].to_string();
    assert!(why.contains("wordpress/allow-ingress-to-wordpress-service rule [0]"), "the allowing rule is named: {why}");
    // A port filter keeps the links that carry it.
    let (_, g, _) = run(&["graph", "--output", "json", "--detail", "workloads", "examples/calico-wordpress", "-q"]);
    let g: Value = serde_json::from_str(&g).unwrap();
    assert!(g["probe_labels"].as_array().unwrap().iter().any(|p| p == "11011/TCP"));
    // The namespace view's links on 11011: the graph's workload edges on it, by group.
    let probe = g["probe_labels"].as_array().unwrap().iter().position(|p| p == "11011/TCP").unwrap();
    let group = |n: &Value| match n["kind"].as_str().unwrap() {
        "workload" => n["namespace"].as_str().unwrap().to_string(),
        "node" => "nodes".to_string(),
        _ => "outside".to_string(),
    };
    let nodes = g["nodes"].as_array().unwrap();
    let carrying: std::collections::BTreeSet<(String, String)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["probes"].as_array().unwrap().iter().any(|p| p == probe))
        .map(|e| {
            (group(&nodes[e["from"].as_u64().unwrap() as usize]), group(&nodes[e["to"].as_u64().unwrap() as usize]))
        })
        .collect();
    assert!(carrying.len() < top["links"].as_u64().unwrap() as usize, "the filter takes some away");
    let metrics = audit(&html, "port=11011/TCP");
    assert_eq!(metrics["links"], carrying.len(), "{metrics}");
    // A namespace filter takes its boxes out and closes the gap.
    let some = audit(&html, "ns=wordpress,traefik");
    readable(&some, &names(&["wordpress", "traefik"]), "filtered");
    let shown = some["shown"].as_array().unwrap();
    assert!(!shown.iter().any(|n| n == "default" || n == "monitoring"), "{some}");
    assert!(some["right"].as_f64() < top["right"].as_f64(), "fewer columns: {some} vs {top}");
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom".into(), format!("file://{}", html.display())]).stdout)
        .to_string();
    assert!(dom.contains("PAL013 shadowed-rule"), "lint findings are listed");
    screenshot(&html, "", "example-namespaces");
    screenshot(&html, "view=wordpress&edge=traefik->wordpress/wordpress-0", "example-wordpress");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cluster of 10 namespaces and 50 workloads (5 each, two replicas), long names, default deny
/// in the application namespaces, DNS, an ingress chain web -> api -> services -> data, and a
/// monitoring namespace that scrapes everything.
fn fifty_workloads() -> String {
    let spaces = [
        ("ingress-system", ["edge-proxy", "cert-manager-webhook", "external-dns", "oauth2-proxy", "default-backend"]),
        ("web", ["storefront-frontend", "admin-console", "static-assets", "search-ui", "checkout-frontend"]),
        ("api", ["public-api-gateway", "graphql-federation", "session-service", "rate-limiter", "feature-flags"]),
        (
            "payments",
            ["payments-gateway-reconciler", "fraud-scoring", "ledger-writer", "refunds-worker", "invoice-renderer"],
        ),
        (
            "orders",
            ["order-service", "fulfilment-orchestrator", "inventory-sync", "shipping-quotes", "returns-service"],
        ),
        ("catalog", ["catalog-service", "pricing-engine", "recommendations", "image-resizer", "reviews-service"]),
        ("data", ["postgres-primary", "postgres-replica", "redis-cache", "kafka-broker", "elasticsearch-data"]),
        ("monitoring", ["prometheus-server", "alertmanager", "grafana", "blackbox-exporter", "kube-state-metrics"]),
        ("logging", ["fluent-bit-aggregator", "loki-ingester", "loki-querier", "vector-router", "log-archiver"]),
        (
            "kube-system",
            ["coredns", "metrics-server", "cluster-autoscaler", "konnectivity-agent", "snapshot-controller"],
        ),
    ];
    let mut y = String::new();
    for (ns, workloads) in spaces {
        let _ = write!(y, "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
        for w in workloads {
            let port = if w == "coredns" {
                "[{name: dns, containerPort: 53, protocol: UDP}]"
            } else {
                "[{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]"
            };
            let label = if w == "coredns" { "k8s-app: kube-dns" } else { "tier: app" };
            let _ = write!(
                y,
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {w}, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {w}}}}}\n  template:\n    metadata: {{labels: {{app: {w}, {label}}}}}\n    spec: {{containers: [{{name: main, image: example/{w}, ports: {port}}}]}}\n"
            );
        }
        if ["monitoring", "logging", "kube-system"].contains(&ns) {
            continue;
        }
        let _ = write!(y, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: default-deny, namespace: {ns}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}\n");
        let _ = write!(y, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: dns-and-scrapes, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n  egress: [{{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}], ports: [{{port: 53, protocol: UDP}}]}}, {{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: logging}}}}}}], ports: [{{port: 8080}}]}}]\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: monitoring}}}}}}], ports: [{{port: 9090}}]}}]\n");
    }
    // The chain: each namespace's workloads may open the next one's on 8080.
    for (from, to) in [
        ("ingress-system", "web"),
        ("web", "api"),
        ("api", "payments"),
        ("api", "orders"),
        ("api", "catalog"),
        ("payments", "data"),
        ("orders", "data"),
        ("catalog", "data"),
    ] {
        let _ = write!(y, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: to-{to}, namespace: {from}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {to}}}}}}}], ports: [{{port: 8080}}]}}]\n");
        let _ = write!(y, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: from-{from}, namespace: {to}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {from}}}}}}}], ports: [{{port: 8080}}]}}]\n");
    }
    y
}

#[test]
fn fifty_workloads_in_ten_namespaces_stay_readable() {
    if browser().is_none() {
        return;
    }
    let dir = scratch("fifty");
    let input = dir.join("cluster.yaml");
    std::fs::write(&input, fifty_workloads()).unwrap();
    let html = report(&dir, &[input.to_str().unwrap()]);
    let (_, g, _) = run(&["graph", "--output", "json", "--detail", "workloads", input.to_str().unwrap(), "-q"]);
    let g: Value = serde_json::from_str(&g).unwrap();
    let namespaces: Vec<String> =
        g["namespaces"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    assert_eq!(namespaces.len(), 10);
    let workloads = |ns: &str| -> Vec<String> {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["namespace"] == ns)
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(namespaces.iter().map(|n| workloads(n).len()).sum::<usize>(), 50);
    let top = audit(&html, "");
    readable(&top, &namespaces, "namespaces");
    for ns in &namespaces {
        let v = audit(&html, &format!("view={ns}"));
        readable(&v, &workloads(ns), ns);
    }
    let some = audit(&html, "view=api&ns=api,web,payments");
    readable(&some, &workloads("api"), "api, filtered");
    assert!(some["shown"].as_array().unwrap().iter().all(|n| !n.as_str().unwrap().starts_with("orders")), "{some}");
    // Search: the named workload is selected in its namespace's view.
    let found = audit(&html, "select=payments/deployment/fraud-scoring&view=payments&q=fraud");
    readable(&found, &workloads("payments"), "search");
    screenshot(&html, "", "fifty-namespaces");
    screenshot(&html, "view=api", "fifty-api");
    screenshot(&html, "view=payments&q=fraud", "fifty-search");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The 10,000-pod bench cluster (100 namespaces; no controllers, so every pod is a workload:
/// the worst case). The report is built in-process (lint aside: its time is not the report's;
/// `graph --output html` adds it) and must stay small and readable.
#[test]
fn ten_thousand_pods_stay_readable_and_small() {
    if browser().is_none() {
        return;
    }
    use palisade_bench::{generate, to_list_json, Shape};
    use palisade_review::connectivity::{Connectivity, Cuts};
    use palisade_review::overview::Overview;
    use palisade_review::workload::Workloads;
    let shape = Shape { pods: 10_000, policies: 5_000, namespaces: 100, pods_per_app: 10, seed: 1 };
    let text = to_list_json(&generate(&shape));
    let load = palisade_load::load_str("bench.json", &text, &Default::default());
    let cluster = load.cluster.expect("the bench cluster loads");
    let t = std::time::Instant::now();
    let conn = Connectivity::compute(&cluster, Cuts::of(&[&cluster]), || {});
    let connectivity = t.elapsed();
    let t = std::time::Instant::now();
    let overview = Overview::new(&cluster, &conn, &Workloads::new(&cluster));
    let html_text = palisade_review::report::html("bench", &overview, &[]);
    eprintln!(
        "10,000 pods: connectivity {connectivity:?}, overview and HTML {:?}, {} bytes, {} links in the namespace view",
        t.elapsed(),
        html_text.len(),
        overview.top.links.len()
    );
    assert!(html_text.len() < 25 << 20, "{} bytes", html_text.len());
    let dir = scratch("bench");
    let html = dir.join("report.html");
    std::fs::write(&html, html_text).unwrap();
    let top = audit(&html, "");
    let namespaces: Vec<String> = (0..100).map(|i| format!("ns-{i:03}")).collect();
    readable(&top, &namespaces, "100 namespaces");
    assert!(top["links"].as_u64().unwrap() < 20_000, "{}", top["links"]);
    let pods: Vec<String> = cluster
        .pods
        .iter()
        .filter(|p| cluster.namespaces[p.namespace].name == "ns-007")
        .map(|p| format!("ns-007/{}", p.name))
        .collect();
    let v = audit(&html, "view=ns-007");
    readable(&v, &pods, "ns-007");
    screenshot(&html, "", "bench-namespaces");
    screenshot(&html, "view=ns-007", "bench-ns-007");
    let _ = std::fs::remove_dir_all(&dir);
}
