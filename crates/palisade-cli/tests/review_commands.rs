//! lint, diff, reach and graph as users run them: exit codes, JSON/SARIF shapes, git
//! revisions (the HTML report in a browser: `report_browser.rs`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{conformance_cases, load_case, palisade, repo, run};
use palisade_core::family::Families;
use palisade_core::verdict::{decide, Connection, Side, Verdict};
use palisade_review::connectivity::{Connectivity, Cuts};
use palisade_review::diff::{diff, Version};
use palisade_review::workload::Workloads;
use serde_json::Value;

const ONE_SIDED: [&str; 2] = ["tests/lint/cluster.yaml", "tests/lint/one-sided.yaml"];

#[test]
fn lint_exit_code_follows_fail_on_and_allow() {
    let with = |extra: &[&str]| {
        let mut args = vec!["lint"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&ONE_SIDED);
        run(&args).0
    };
    assert_eq!(with(&[]), 1, "errors fail by default");
    assert_eq!(with(&["--fail-on", "never"]), 0);
    assert_eq!(with(&["--allow", "PAL011", "--allow", "egress-without-dns"]), 0, "only warnings are left");
    assert_eq!(with(&["--allow", "PAL011", "--allow", "PAL003", "--fail-on", "warning"]), 1);
    assert_eq!(with(&["--allow", "PAL999"]), 2, "an unknown check is a usage error");
    let (code, _, _) = run(&["lint", "tests/lint/cluster.yaml", "tests/lint/clean.yaml", "--fail-on", "warning"]);
    assert_eq!(code, 0, "the clean case has no finding");
    let (code, _, err) = run(&["lint", "tests/invalid/calico-ports-without-protocol.yaml"]);
    assert_eq!(code, 2, "invalid input is not linted: {err}");
}

#[test]
fn lint_lists_its_checks() {
    let (code, out, _) = run(&["lint", "--list-checks"]);
    assert_eq!(code, 0);
    for c in palisade_review::lint::CHECKS {
        assert!(out.contains(c.code) && out.contains(c.name), "{} missing from --list-checks", c.code);
    }
}

#[test]
fn lint_json_and_sarif_carry_the_same_findings() {
    let mut args = vec!["lint", "--fail-on", "never", "--output", "json"];
    args.extend_from_slice(&ONE_SIDED);
    let json: Value = serde_json::from_str(&run(&args).1).unwrap();
    let findings = json.as_array().unwrap();
    assert_eq!(findings.len(), 5);
    let f = findings.iter().find(|f| f["code"] == "PAL011").unwrap();
    assert_eq!(f["severity"], "error");
    assert_eq!(f["location"]["file"], "tests/lint/one-sided.yaml");
    assert!(f["location"]["line"].as_u64().unwrap() > 0);
    args[4] = "sarif";
    let sarif: Value = serde_json::from_str(&run(&args).1).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run0 = &sarif["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run0["results"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    for (r, f) in results.iter().zip(findings) {
        assert_eq!(r["ruleId"], f["code"]);
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"], "ruleIndex points at the rule");
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startLine"], f["location"]["line"]);
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn diff_compares_a_git_revision_with_the_working_tree() {
    let dir = std::env::temp_dir().join(format!("palisade-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let example = repo().join("examples/lateral-movement");
    std::fs::copy(example.join("cluster.yaml"), dir.join("cluster.yaml")).unwrap();
    std::fs::copy(example.join("protect-db.yaml"), dir.join("policies/protect-db.yaml")).unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "protect the database"]);
    std::fs::copy(example.join("least-privilege.yaml"), dir.join("policies/least-privilege.yaml")).unwrap();
    let diff_out = |args: &[&str]| {
        let out = palisade().current_dir(&dir).args(args).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    // Tightening loses connections and gains none: a pull-request check passes.
    let (code, text) = diff_out(&["diff", "git:HEAD:.", ".", "--exit-code"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("- shop/deployment/frontend -> shop/deployment/backend"), "{text}");
    assert!(text.contains("gained 0 connection(s)"), "{text}");
    // The other way round every one of those is gained, and --exit-code fails.
    let (code, json) = diff_out(&["diff", ".", "git:HEAD:.", "--exit-code", "--output", "json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(v["lost"].as_array().unwrap().is_empty());
    let gained = v["gained"].as_array().unwrap();
    let pair = gained.iter().find(|g| g["from"] == "shop/deployment/frontend" && g["to"] == "shop/deployment/backend");
    assert!(pair.is_some(), "{json}");
    // Only the policies from git, the cluster shared by both sides.
    let (_, only_policies) = diff_out(&["diff", "git:HEAD:policies", "policies", "--with", "cluster.yaml"]);
    assert_eq!(only_policies, text);
    let (code, _) = diff_out(&["diff", "git:no-such-rev:.", "."]);
    assert_eq!(code, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The diff's counts equal a brute-force comparison of per-connection verdicts between every
/// two endpoints: pods (a template pod with itself: two of its replicas), nodes, host
/// endpoints and pieces of the outside world (at the piece's address), both ways; only one
/// piece of the outside world to another is no connection of the cluster's, and nothing is
/// one in a family an end has no address of.
#[test]
fn diff_agrees_with_deciding_every_connection() {
    let cases = conformance_cases();
    let mut compared = 0;
    let mut outside = 0;
    for pair in cases.windows(2).filter(|w| !w[0].file.contains("calico") || !w[1].file.contains("calico")) {
        let (old, new) = (load_case(&pair[0]), load_case(&pair[1]));
        // Pod ids must name the same pods on both sides (a case may add pods of its own).
        let keys = |c: &palisade_core::cluster::Cluster| c.pod_ids().map(|p| c.pod_key(p)).collect::<Vec<_>>();
        if keys(&old) != keys(&new) {
            continue;
        }
        let cuts = Cuts::of(&[&old, &new]);
        let (oc, nc) =
            (Connectivity::compute(&old, cuts.clone(), || {}), Connectivity::compute(&new, cuts.clone(), || {}));
        let (ow, nw) = (Workloads::new(&old), Workloads::new(&new));
        let d = diff(
            &Version { cluster: &old, conn: &oc, workloads: &ow },
            &Version { cluster: &new, conn: &nc, workloads: &nw },
        );
        let mut from_diff: BTreeMap<(bool, String, String, String), usize> = BTreeMap::new();
        for (gained, groups) in [(true, &d.gained), (false, &d.lost)] {
            for g in groups.iter() {
                for (probe, n) in &g.pairs {
                    from_diff.insert((gained, g.from.clone(), g.to.clone(), probe.clone()), *n);
                }
            }
        }
        // Endpoints by name and how each version sees them: every pod, then every address
        // endpoint (pieces, nodes, host endpoints), and whether it is outside.
        assert_eq!(oc.addresses, nc.addresses, "{}: the same nodes on both sides", pair[1].file);
        let mut ends: Vec<(String, Side, Side, bool)> = new
            .pod_ids()
            .map(|p| (nw.key(&new, nw.of_pod[p.index()]), Side::pod(&old, p), Side::pod(&new, p), false))
            .collect();
        ends.extend(nc.addresses.iter().map(|a| {
            let outside = a.kind == palisade_review::connectivity::AddressKind::Outside;
            (a.name.clone(), Side::ip(&old, a.address), Side::ip(&new, a.address), outside)
        }));
        let pods = new.pods.len();
        // The families of each end: a pod's addresses' (both when it has none), an address's own.
        let families: Vec<Families> = new
            .pods
            .iter()
            .map(|p| Families::of_addresses(&p.ips))
            .chain(nc.addresses.iter().map(|a| Families::of(a.address)))
            .collect();
        let replicas = |s: usize| s < pods && new.pods[palisade_core::cluster::PodId::new(s)].is_replica_group();
        let mut brute: BTreeMap<(bool, String, String, String), usize> = BTreeMap::new();
        for probe in &cuts.probes {
            for (s, (from, old_s, new_s, s_out)) in ends.iter().enumerate() {
                for (t, (to, old_t, new_t, t_out)) in ends.iter().enumerate() {
                    let shared = [families[s], families[t], probe.protocol.families()];
                    if (s == t && !replicas(s)) || (*s_out && *t_out) || !Families::meet(shared) {
                        continue;
                    }
                    let allowed = |c: &palisade_core::cluster::Cluster, a: Side, b: Side| {
                        decide(c, &Connection::new(a, b, probe.port, probe.protocol)).verdict == Verdict::Allow
                    };
                    let (before, after) = (allowed(&old, *old_s, *old_t), allowed(&new, *new_s, *new_t));
                    if before != after {
                        outside += usize::from(s >= pods || t >= pods);
                        *brute.entry((after, from.clone(), to.clone(), probe.to_string())).or_default() += 1;
                    }
                }
            }
        }
        assert_eq!(from_diff, brute, "{} -> {}", pair[0].file, pair[1].file);
        compared += 1;
    }
    assert!(compared > 40, "only {compared} case pairs compared");
    assert!(outside > 100, "only {outside} changes with the outside world compared");
}

/// The pull-request gate sees a pod opened to the whole internet; a changed `except` is
/// judged on its own piece, not as the loss of `0.0.0.0/0`.
#[test]
fn diff_sees_the_outside_world() {
    let (code, out, err) = run(&[
        "diff",
        "--exit-code",
        "tests/review/deny.yaml",
        "tests/review/open.yaml",
        "--with",
        "tests/review/cluster.yaml",
    ]);
    assert_eq!(code, 1, "opening web to everyone is a gain: {out}{err}");
    for line in ["+ outside 0.0.0.0/0 -> app/web  any TCP, any UDP", "+ node n2 -> app/web"] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // web has an IPv4 address only: IPv6 never reaches it, and it takes no ICMPv6.
    assert!(!out.contains("outside ::/0") && !out.contains("ICMPv6"), "{out}");
    let (code, out, _) = run(&[
        "diff",
        "tests/review/except-7.yaml",
        "tests/review/except-8.yaml",
        "--with",
        "tests/review/cluster.yaml",
    ]);
    assert_eq!(code, 0);
    let changes: Vec<&str> = out.lines().filter(|l| l.starts_with(['+', '-'])).collect();
    assert_eq!(changes.len(), 2, "{out}");
    assert!(changes[0].starts_with("+ app/web -> outside 203.0.113.7/32  443/TCP  (1 connection(s)"), "{out}");
    assert!(changes[1].starts_with("- app/web -> outside 203.0.113.8/32  443/TCP  (1 connection(s)"), "{out}");
    assert!(!out.contains("0.0.0.0/0"), "the rest of the world is the same in both: {out}");
    // Without the pods nothing is compared, and the gate says so instead of passing.
    let (code, _, err) = run(&["diff", "--exit-code", "tests/review/deny.yaml", "tests/review/open.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pods in tests/review/deny.yaml and tests/review/open.yaml"), "{err}");
}

#[test]
fn reach_follows_lateral_movement() {
    let (code, out, _) =
        run(&["reach", "--from", "shop/frontend", "--hops", "2", "--output", "json", "examples/lateral-movement"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let reaches: Vec<&Value> =
        v["reaches"].as_array().unwrap().iter().filter(|t| t["name"].as_str().unwrap().starts_with("shop/")).collect();
    assert_eq!(reaches.len(), 1, "least privilege: the frontend opens only the backend in the cluster: {out}");
    assert_eq!(reaches[0]["name"], "shop/deployment/backend");
    assert_eq!(reaches[0]["ports"], "9090/TCP");
    let world = v["reaches"].as_array().unwrap().iter().find(|t| t["name"] == "outside 0.0.0.0/0");
    assert!(world.is_some(), "no egress policy: the frontend opens the internet: {out}");
    let db = v["hops"].as_array().unwrap().iter().find(|h| h["workload"] == "shop/statefulset/db").unwrap();
    assert_eq!(db["hops"], 2, "the database is two hops away, through the backend");
    let (_, out, _) = run(&["reach", "--to", "shop/db", "--output", "json", "examples/lateral-movement"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["reached_by"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shop/deployment/backend"]);
    let (code, _, err) = run(&["reach", "--from", "shop/nope", "examples/lateral-movement"]);
    assert_eq!(code, 2, "{err}");
}

/// A pod no policy selects can open the whole world, in both families; the world can open it;
/// and every name reach prints is taken back as input.
#[test]
fn reach_counts_the_outside_world_and_takes_its_own_names() {
    let json = |args: &[&str]| -> Value {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
    };
    let v = json(&["reach", "--from", "app/db", "--output", "json", "tests/review/cluster.yaml"]);
    let reached = names(&v, "reaches");
    for want in ["outside 0.0.0.0/0", "node n1", "node n2", "app/web"] {
        assert!(reached.iter().any(|n| n == want), "{want} missing from {reached:?}");
    }
    assert!(!reached.iter().any(|n| n == "outside ::/0"), "db has no IPv6 address: {reached:?}");
    let by = names(
        &json(&["reach", "--to", "app/web", "--output", "json", "tests/review/cluster.yaml", "tests/review/open.yaml"]),
        "reached_by",
    );
    assert!(by.iter().any(|n| n == "outside 0.0.0.0/0"), "{by:?}");
    // Each printed name is an endpoint reach and check accept.
    for name in &by {
        let v =
            json(&["reach", "--from", name, "--output", "json", "tests/review/cluster.yaml", "tests/review/open.yaml"]);
        assert_eq!(v["endpoint"], name.as_str());
        let (code, out, err) = run(&[
            "check",
            "--from",
            name,
            "--to",
            "app/web",
            "--port",
            "80",
            "tests/review/cluster.yaml",
            "tests/review/open.yaml",
        ]);
        assert_eq!(code, 0, "check --from {name}: {err}");
        assert!(out.starts_with("ALLOW"), "{name}: {out}");
    }
    let (code, _, err) = run(&["reach", "tests/review/cluster.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("<--from <FROM>|--to <TO>>"), "both are named: {err}");
}

#[test]
fn graph_json_edges_agree_with_the_matrix() {
    let (code, out, _) =
        run(&["graph", "--output", "json", "--detail", "workloads", "examples/calico-wordpress", "-q"]);
    assert_eq!(code, 0);
    let g: Value = serde_json::from_str(&out).unwrap();
    let (_, m, _) = run(&["matrix", "--port", "80", "--output", "json", "examples/calico-wordpress", "-q"]);
    let m: Value = serde_json::from_str(&m).unwrap();
    let nodes = g["nodes"].as_array().unwrap();
    let probe = g["probe_labels"].as_array().unwrap().iter().position(|p| p == "80/TCP").unwrap();
    for (src, dsts) in m["allowed"].as_object().unwrap() {
        for dst in nodes.iter().flat_map(|n| n["pods"].as_array().unwrap()) {
            if dst == src {
                continue;
            }
            let node_of =
                |pod: &str| nodes.iter().position(|n| n["pods"].as_array().unwrap().iter().any(|p| p == pod)).unwrap();
            let (a, b) = (node_of(src), node_of(dst.as_str().unwrap()));
            let on_graph =
                g["edges"].as_array().unwrap().iter().any(|e| {
                    e["from"] == a && e["to"] == b && e["probes"].as_array().unwrap().iter().any(|p| p == probe)
                });
            let in_matrix = dsts.as_array().unwrap().contains(dst);
            assert_eq!(on_graph, in_matrix, "{src} -> {dst} on 80/TCP");
        }
    }
}

/// Outside addresses are decided once per class of pods (and by a shortcut for Kubernetes-only
/// clusters); that must agree with the engine's per-connection path, pod by pod, on every truth
/// table, example and review case, for every piece of the outside world and every node.
#[test]
fn address_block_shortcut_agrees_with_deciding_each_connection() {
    use palisade_review::connectivity::AddressKind;
    let mut clusters: Vec<(String, palisade_core::cluster::Cluster)> =
        conformance_cases().iter().map(|c| (c.file.clone(), load_case(c))).collect();
    let examples: [&[&str]; 3] = [
        &["node-network-egress"],
        &["egress-guide/cluster.yaml", "egress-guide/dns-any-ip", "egress-guide/internet-egress.yaml"],
        &["lateral-movement"],
    ];
    for paths in examples {
        let opts = palisade_ingest::BuildOptions { default_namespace: Some("app".into()), ..Default::default() };
        let paths: Vec<_> = paths.iter().map(|p| repo().join("examples").join(p)).collect();
        let load = palisade_load::load_paths(&paths, &opts).unwrap();
        clusters.push((format!("{paths:?}"), load.cluster.expect("the example loads")));
    }
    for paths in [&["tests/review/cluster.yaml", "tests/review/open.yaml"][..], &["tests/review/nodes.yaml"]] {
        let paths: Vec<_> = paths.iter().map(|p| repo().join(p)).collect();
        let load = palisade_load::load_paths(&paths, &Default::default()).unwrap();
        clusters.push((format!("{paths:?}"), load.cluster.expect("the review case loads")));
    }
    let (mut with_blocks, mut with_nodes) = (0, 0);
    for (name, cluster) in &clusters {
        let fast = Connectivity::compute(cluster, Cuts::of(&[cluster]), || {});
        let slow = Connectivity::compute_by_decide(cluster, Cuts::of(&[cluster]));
        with_blocks += usize::from(fast.addresses.iter().filter(|a| a.kind == AddressKind::Outside).count() > 2);
        with_nodes += usize::from(fast.addresses.iter().any(|a| a.kind == AddressKind::Node));
        assert_eq!(fast.addresses, slow.addresses);
        // [probe][address]: the pods, as lists.
        let ones = |v: &[Vec<fixedbitset::FixedBitSet>]| -> Vec<Vec<Vec<usize>>> {
            v.iter().map(|per| per.iter().map(|s| s.ones().collect()).collect()).collect()
        };
        assert_eq!(ones(&fast.to_address), ones(&slow.to_address), "{name}: pods to address endpoints");
        assert_eq!(ones(&fast.from_address), ones(&slow.from_address), "{name}: address endpoints to pods");
    }
    assert!(with_blocks >= 5, "only {with_blocks} inputs name address blocks");
    assert!(with_nodes >= 2, "only {with_nodes} inputs have nodes");
}

/// A workload given without its pods stands for its replicas: traffic from one replica to
/// another is a connection every review command shows (command, a line it must print).
#[test]
fn replicas_of_a_template_pod_are_endpoints_of_each_other() {
    const DENY: &str = "tests/review/template-deny.yaml";
    const OPEN: &str = "tests/review/template-open.yaml";
    let cases: &[(&[&str], &str)] = &[
        (&["diff", DENY, OPEN], "+ app/deployment/web -> app/deployment/web  8080/TCP"),
        (&["diff", OPEN, DENY], "- app/deployment/web -> app/deployment/web  8080/TCP"),
        (&["reach", "--from", "app/web", OPEN], "  app/deployment/web: 8080/TCP"),
        (&["reach", "--to", "app/web", OPEN], "  app/deployment/web: 8080/TCP"),
        (&["graph", OPEN], "n0 -> n0 [label=\"8080/TCP\"]"),
    ];
    for (args, line) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(line), "{args:?}: {line:?} missing:\n{out}");
    }
    let (code, _, _) = run(&["diff", "--exit-code", DENY, OPEN]);
    assert_eq!(code, 1, "one replica opened to another is a gain");
}

/// Nodes, host endpoints and the outside world are sources and destinations among each other
/// too: opening a host endpoint's egress shows in diff (and fails the gate) and in reach, and
/// Felix's failsafe ports are judged apart (command, a line it must print).
#[test]
fn diff_and_reach_decide_between_address_endpoints() {
    const WITH: &str = "tests/review/hosts.yaml";
    const DENY: &str = "tests/review/host-deny.yaml";
    const OPEN: &str = "tests/review/host-open.yaml";
    let cases: &[(&[&str], &str)] = &[
        (&["diff", DENY, OPEN, "--with", WITH], "+ node n1 -> outside 0.0.0.0/0  1-178/TCP"),
        (&["diff", DENY, OPEN, "--with", WITH], "+ node n1 -> node n2  1-178/TCP"),
        (&["diff", OPEN, DENY, "--with", WITH], "- node n1 -> outside 0.0.0.0/0  1-178/TCP"),
        (&["reach", "--from", "node n1", WITH, OPEN], "  outside 0.0.0.0/0: any TCP"),
        (
            &["reach", "--from", "node n1", WITH, DENY],
            "  outside 0.0.0.0/0: 179/TCP, 2379-2380/TCP, 5473/TCP, 6443/TCP, 6666-6667/TCP, 53/UDP, 67/UDP",
        ),
        (&["reach", "--to", "node n2", WITH, OPEN], "  node n1: any TCP"),
        (&["reach", "--from", "outside 0.0.0.0/0", WITH, OPEN], "  node n1: 22/TCP, 179/TCP"),
        (&["reach", "--from", "outside 0.0.0.0/0", WITH, OPEN], "  node n2: any TCP, any UDP"),
        (&["graph", WITH, OPEN], "n3 -> n4 [label=\"any TCP, 53/UDP, 67/UDP\"]"),
    ];
    for (args, line) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(line), "{args:?}: {line:?} missing:\n{out}");
    }
    let (_, out, _) = run(&["reach", "--from", "node n1", WITH, OPEN]);
    assert!(!out.contains("outside ::/0"), "an IPv4 node opens no IPv6 address:\n{out}");
    let (code, _, _) = run(&["diff", "--exit-code", DENY, OPEN, "--with", WITH]);
    assert_eq!(code, 1, "a host endpoint opened to the world is a gain");
}

/// Review counts a connection only in a family both ends have addresses of and its protocol
/// runs over: ICMPv6 and IPv6 pieces of the outside world never meet an IPv4-only pod, while
/// dual-stack pods keep both (command, a line it must print, a text it must not print).
#[test]
fn review_counts_connections_only_in_families_both_ends_have() {
    const WITH: &str = "tests/review/families.yaml";
    const CLOSED: &str = "tests/review/families-closed.yaml";
    const OPEN: &str = "tests/review/families-open.yaml";
    let diff: &[&str] = &["diff", CLOSED, OPEN, "--with", WITH];
    let cases: &[(&[&str], &str, &str)] = &[
        (diff, "+ fam/dual-a -> fam/dual-b  ICMP, ICMPv6  (2 connection(s)", "+ outside ::/0 -> fam/v4"),
        (diff, "+ fam/v4 -> fam/dual-a  ICMP  (1 connection(s)", "fam/v4 -> fam/dual-a  ICMP, ICMPv6"),
        (diff, "+ fam/dual-a -> fam/v4  ICMP  (1 connection(s)", "fam/dual-a -> fam/v4  ICMP, ICMPv6"),
        (diff, "+ outside ::/0 -> fam/dual-a  ICMPv6  (1 connection(s)", "outside ::/0 -> fam/dual-a  ICMP,"),
        (diff, "+ outside 0.0.0.0/0 -> fam/v4  ICMP  (1 connection(s)", "outside 0.0.0.0/0 -> fam/v4  ICMP, ICMPv6"),
        (&["reach", "--to", "fam/v4", WITH, OPEN], "  outside 0.0.0.0/0: ICMP\n", "outside ::/0"),
        (&["reach", "--to", "fam/dual-a", WITH, OPEN], "  outside ::/0: ICMPv6\n", "outside ::/0: ICMP,"),
        (&["reach", "--from", "fam/v4", WITH, OPEN], "fam/dual-a: ICMP\n", "fam/dual-a: ICMP, ICMPv6"),
    ];
    for (args, line, absent) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(line), "{args:?}: {line:?} missing:\n{out}");
        assert!(!out.contains(absent), "{args:?}: {absent:?} printed:\n{out}");
    }
    // matrix --all-ports: nothing between v4 and IPv6; the dual-stack pods keep both families.
    let (code, out, err) = run(&["matrix", "--all-ports", WITH, OPEN]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "fam/v4 => fam/dual-a : ICMP\n",
        "fam/dual-a => fam/dual-b : ICMP, ICMPv6\n",
        "outside ::/0 => fam/dual-a : ICMPv6\n",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(!out.contains("fam/v4 => outside ::/0") && !out.contains("outside ::/0 => fam/v4"), "{out}");
    // matrix --protocol ICMPv6: v4 opens nothing and nothing opens it.
    let (_, out, _) = run(&["matrix", "--protocol", "ICMPv6", "--output", "json", WITH, OPEN]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"]["fam/v4"], serde_json::json!([]), "{out}");
    assert_eq!(v["allowed"]["fam/dual-a"], serde_json::json!(["fam/dual-a", "fam/dual-b"]), "{out}");
    // lint: a rule shadowed only on ICMPv6 to an IPv4-only pod would be shadowed on nothing.
    let (code, out, err) = run(&["lint", "--output", "json", WITH, OPEN, "tests/review/families-v6-shadowed.yaml"]);
    assert!(code == 0 || code == 1, "{err}");
    assert!(!out.contains("PAL013"), "the ICMPv6 Allow for v4 matches no connection that can exist:\n{out}");
}

/// Findings on a Calico rule speak Calico (source, selector, nets), never Kubernetes' words.
#[test]
fn lint_speaks_calico_words_for_calico_rules() {
    let (_, out, err) =
        run(&["lint", "--output", "json", "tests/review/families.yaml", "tests/review/families-open.yaml"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let any_peer: Vec<&Value> = v.as_array().unwrap().iter().filter(|f| f["code"] == "PAL005").collect();
    assert_eq!(any_peer.len(), 2, "{out}");
    for f in any_peer {
        let words = format!("{} {}", f["message"], f["help"]);
        assert!(words.contains("no source selector or nets") && words.contains("namespaceSelector, nets"), "{words}");
        assert!(!words.contains("podSelector") && !words.contains("from:") && !words.contains("ipBlock"), "{words}");
    }
}

/// diff reads two versions that share files (`--with`): each warning is printed once.
#[test]
fn diff_prints_each_warning_once() {
    let (old, new) = ("tests/review/families-closed.yaml", "tests/review/families-open.yaml");
    let with = ["--with", "tests/review/families.yaml", "--with", "tests/review/warns.yaml"];
    for args in [[&["diff", old, new][..], &with].concat(), [&["diff", new, new][..], &with].concat()] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        for warning in ["left out 1 finished pod(s)", "ignored 1 object(s) of kinds Palisade does not use"] {
            assert_eq!(err.matches(warning).count(), 1, "{args:?}: {warning:?} once:\n{err}");
        }
    }
    let (_, _, err) = run(&[&["diff", "-q", old, new][..], &with].concat());
    assert!(!err.contains("warning"), "{err}");
}

/// PAL013's example names one port of the shadowed rule's range, and at that port the rule
/// matches and something earlier decides (as check shows).
#[test]
fn a_shadowed_range_is_shown_at_one_of_its_ports() {
    let input = ["tests/review/families.yaml", "tests/review/shadowed-range.yaml"];
    let (_, out, err) = run(&[&["lint", "--output", "json"][..], &input].concat());
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let finding =
        v.as_array().unwrap().iter().find(|f| f["code"] == "PAL013").unwrap_or_else(|| panic!("no PAL013: {out}"));
    let message = finding["message"].as_str().unwrap();
    let example = message.split("for example ").nth(1).unwrap();
    let (pair, rest) = example.split_once(" on ").unwrap();
    let (from, to) = pair.split_once(" -> ").unwrap();
    let port = rest.split(',').next().unwrap();
    let number: u16 = port.strip_suffix("/TCP").unwrap_or_else(|| panic!("one TCP port: {message}")).parse().unwrap();
    assert!((8000..=9000).contains(&number), "{message}");
    // At that port the earlier Deny decides; without it, the shadowed Allow would.
    let (code, trace, err) = run(&[&["check", "--from", from, "--to", to, "--port", port][..], &input].concat());
    assert_eq!(code, 0, "{err}");
    assert!(trace.contains("rule [0] of fam/deny-tcp (tier default) says Deny"), "{trace}");
    let text = std::fs::read_to_string(repo().join(input[1])).unwrap();
    let alone = std::env::temp_dir().join(format!("palisade-allow-range-{}.yaml", std::process::id()));
    std::fs::write(&alone, text.split("\n---\n").nth(1).unwrap()).unwrap();
    let args = ["check", "--from", from, "--to", to, "--port", port, input[0], alone.to_str().unwrap()];
    let (code, trace, err) = run(&args);
    std::fs::remove_file(&alone).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(trace.contains("rule [0] of fam/allow-range (tier default) says Allow"), "{trace}");
}

/// A change that opens ICMP (and nothing else) shows in diff, fails the gate, and shows in
/// reach (command, a line it must print).
#[test]
fn diff_and_reach_see_protocols_without_ports() {
    const WITH: &str = "tests/review/cluster.yaml";
    const CLOSED: &str = "tests/review/icmp-closed.yaml";
    const OPEN: &str = "tests/review/icmp-open.yaml";
    let cases: &[(&[&str], &str)] = &[
        (&["diff", CLOSED, OPEN, "--with", WITH], "+ outside 0.0.0.0/0 -> app/web  ICMP  (1 connection(s)"),
        (
            &["diff", CLOSED, OPEN, "--with", WITH],
            "+ app/db -> app/web  ICMP  (1 connection(s) between 1 endpoint pair(s); e.g. app/db -> app/web on ICMP)",
        ),
        (&["diff", OPEN, CLOSED, "--with", WITH], "- node n1 -> app/web  ICMP"),
        (&["reach", "--to", "app/web", WITH, OPEN], "  outside 0.0.0.0/0: any TCP, ICMP\n"),
        (&["reach", "--to", "app/web", WITH, CLOSED], "  outside 0.0.0.0/0: any TCP\n"),
    ];
    for (args, line) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(line), "{args:?}: {line:?} missing:\n{out}");
    }
    let (code, _, _) = run(&["diff", "--exit-code", CLOSED, OPEN, "--with", WITH]);
    assert_eq!(code, 1, "opening ICMP is a gain");
}
