//! ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy decided by both
//! engine paths (the per-connection verdict with trace, and the bitset matrix), against
//! data (tests/cnp, docs/cnp-spec.md):
//! - the network-policy-api conformance suite transcribed as data (`tests/cnp/conformance`:
//!   v1alpha2 and v1alpha1, every step's objects, every upstream probe);
//! - the truth tables of `tests/cnp/cases` (grids, point checks with trace words, DNS facts,
//!   steps).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use common::suite::{files, suite_files, suite_model, suite_steps};
use common::{ends, expected_grid, grid_text, repo, End, Probe};
use palisade_core::cluster::Cluster;
use palisade_core::index::Index;
use palisade_core::port::Protocol;
use palisade_core::service::decide_service;
use palisade_core::verdict::{decide, Connection, Decision, Side, Verdict};
use palisade_ingest::BuildOptions;
use serde_json::Value;

fn pod_side(cluster: &Cluster, key: &str) -> Side {
    let (ns, name) = key.split_once('/').unwrap();
    Side::pod(cluster, cluster.pod(ns, name).unwrap_or_else(|| panic!("no pod {key}")))
}

fn allowed(d: &Decision) -> bool {
    d.verdict == Verdict::Allow
}

/// One conformance file: every step's probes by check, and by matrix where both ends are pods
/// on the pod network. Returns (probes, failures).
fn run_suite_file(path: &Path, model: &[Value]) -> (usize, Vec<String>) {
    let (mut probes, mut failures) = (0, Vec::new());
    for step in suite_steps(path, model) {
        let where_ = step.name();
        let cluster = step.cluster();
        let mut index = Index::new(&cluster);
        for p in &step.probes {
            probes += 1;
            let (port, protocol, address, expect) = (p.port, p.protocol, p.address, p.allow);
            let src = pod_side(&cluster, &p.from);
            let dst = Side::ip(&cluster, address);
            let d = decide(&cluster, &Connection::new(src, dst, port, protocol));
            let what = format!("{where_}: {} -> {} {address} {protocol}/{port}", p.from, p.to);
            if allowed(&d) != expect {
                failures.push(format!("{what}: check says {:?}, expected allow={expect}", d.verdict));
            }
            if let (Some(s), Some(t)) = (src.pod_id(), dst.pod_id()) {
                if allowed(&d) != index.matrix(port, protocol).allowed(s, t) {
                    failures.push(format!("{what}: matrix and check disagree"));
                }
                if index.matrix(port, protocol).allowed(s, t) != expect {
                    failures.push(format!("{what}: matrix says {}, expected {expect}", !expect));
                }
            }
        }
    }
    (probes, failures)
}

fn run_suite(version: &str, expected_probes: usize) {
    let model = suite_model();
    let list = suite_files(version);
    assert_eq!(list.len(), 24, "24 upstream tests per version");
    let (mut probes, mut failures) = (0, Vec::new());
    for f in &list {
        let (n, fails) = run_suite_file(f, &model);
        probes += n;
        failures.extend(fails);
    }
    assert_eq!(probes, expected_probes, "every upstream probe of {version}");
    assert!(failures.is_empty(), "{} of {probes} probes differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn conformance_suite_v1alpha2_cluster_network_policy() {
    run_suite("v1alpha2", 301);
}

#[test]
fn conformance_suite_v1alpha1_admin_and_baseline_admin_network_policy() {
    run_suite("v1alpha1", 289);
}

/// `ns/pod`, `node NAME`, an IP, or a Service `ns/svc/NAME` (its ClusterIP, DNATed).
fn decide_check(cluster: &Cluster, from: &str, to: &str, port: u16, protocol: Protocol) -> Decision {
    let side = |s: &str| -> Side {
        if let Some(node) = s.strip_prefix("node ") {
            let id = cluster.node_ids().find(|&n| cluster.nodes[n].name == node).unwrap();
            return Side::node(cluster, id);
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Side::ip(cluster, ip),
            Err(_) => pod_side(cluster, s),
        }
    };
    let src = side(from);
    if let [ns, "svc", name] = to.split('/').collect::<Vec<_>>()[..] {
        let id = cluster.service(ns, name).unwrap_or_else(|| panic!("no Service {to}"));
        let ip = cluster.services[id].cluster_ips[0];
        let conn = Connection::new(src, Side::ip(cluster, ip), port, protocol);
        return decide_service(cluster, &conn, id, Some(ip));
    }
    let dst = side(to);
    match dst.ip.and_then(|ip| cluster.service_by_ip(ip)) {
        Some(id) => decide_service(cluster, &Connection::new(src, dst, port, protocol), id, dst.ip),
        None => decide(cluster, &Connection::new(src, dst, port, protocol)),
    }
}

fn probes_of(v: &Value) -> Vec<Probe> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| Probe {
            port: p["port"].as_u64().unwrap() as u16,
            protocol: p["protocol"].as_str().unwrap().parse().unwrap(),
            expect: p["expect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["from"].as_str().unwrap().into(),
                        e["to"].as_str().unwrap().into(),
                        e["allow"].as_bool().unwrap(),
                    )
                })
                .collect(),
        })
        .collect()
}

fn dns_of(v: &Value) -> BTreeMap<String, Vec<IpAddr>> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, ips)| {
            (k.clone(), ips.as_array().unwrap().iter().map(|i| i.as_str().unwrap().parse().unwrap()).collect())
        })
        .collect()
}

fn object_key(o: &Value) -> String {
    let m = &o["metadata"];
    match m["namespace"].as_str() {
        Some(ns) => format!("{}/{ns}/{}", o["kind"].as_str().unwrap(), m["name"].as_str().unwrap()),
        None => format!("{}/{}", o["kind"].as_str().unwrap(), m["name"].as_str().unwrap()),
    }
}

/// Loads the conformance model and YAML documents (as text: YAML 1.1 scalars such as `y`
/// keep the loader's reading).
fn build_text(docs: &[String], dns: BTreeMap<String, Vec<IpAddr>>, what: &str) -> Cluster {
    let sources = vec![
        palisade_load::Source { name: "model.yaml".into(), text: common::model_text().into() },
        palisade_load::Source { name: what.into(), text: docs.join("\n---\n").into() },
    ];
    let load = palisade_load::load_sources(sources, &BuildOptions { dns, ..Default::default() });
    let errors: Vec<String> = load.problems.iter().map(|p| format!("{:?}: {}", p.location, p.message)).collect();
    load.cluster.unwrap_or_else(|| panic!("{what} does not load: {errors:#?}"))
}

/// One case (or one step of it): grids through matrix and check, then point checks.
fn run_case_step(
    file: &str,
    docs: &[String],
    dns: BTreeMap<String, Vec<IpAddr>>,
    step: &Value,
) -> (usize, Vec<String>) {
    let cluster = build_text(docs, dns, file);
    let order = ends(&cluster);
    let mut index = Index::new(&cluster);
    let (mut n, mut failures) = (0, Vec::new());
    for probe in probes_of(&step["probes"]) {
        n += 1;
        let expected = expected_grid(&cluster, &order, &probe);
        let m = index.matrix(probe.port, probe.protocol);
        let by_check = |s: End, d: End| {
            allowed(&decide(&cluster, &Connection::new(s.side(&cluster), d.side(&cluster), probe.port, probe.protocol)))
        };
        let from_check: Vec<Vec<bool>> =
            order.iter().map(|&s| order.iter().map(|&d| by_check(s, d)).collect()).collect();
        let from_matrix: Vec<Vec<bool>> = order
            .iter()
            .map(|&s| {
                order
                    .iter()
                    .map(|&d| match (s, d) {
                        (End::Pod(a), End::Pod(b)) => m.allowed(a, b),
                        _ => by_check(s, d),
                    })
                    .collect()
            })
            .collect();
        for (path, got) in [("matrix", &from_matrix), ("check", &from_check)] {
            if *got != expected {
                failures.push(format!(
                    "{file} {}/{} via {path}\nexpected:\n{}got:\n{}",
                    probe.protocol,
                    probe.port,
                    grid_text(&cluster, &order, &expected),
                    grid_text(&cluster, &order, got)
                ));
            }
        }
    }
    for c in step["checks"].as_array().into_iter().flatten() {
        n += 1;
        let (from, to) = (c["from"].as_str().unwrap(), c["to"].as_str().unwrap());
        let port = c["port"].as_u64().unwrap_or(0) as u16;
        let protocol: Protocol = c["protocol"].as_str().unwrap().parse().unwrap();
        let d = decide_check(&cluster, from, to, port, protocol);
        let expect = c["allow"].as_bool().unwrap();
        let trace = serde_json::to_string(&d.trace).unwrap();
        if allowed(&d) != expect {
            failures.push(format!(
                "{file}: {from} -> {to} {protocol}/{port}: {:?}, expected allow={expect}\n{trace}",
                d.verdict
            ));
        }
        for word in c["trace"].as_array().into_iter().flatten() {
            let word = word.as_str().unwrap();
            if !trace.contains(word) {
                failures.push(format!(
                    "{file}: {from} -> {to} {protocol}/{port}: the trace does not say {word:?}\n{trace}"
                ));
            }
        }
    }
    (n, failures)
}

#[test]
fn truth_tables_of_cluster_network_policies_hold_for_matrix_and_check() {
    let cases = files(&repo().join("tests/cnp/cases"));
    assert_eq!(cases.len(), 14);
    let (mut n, mut failures) = (0, Vec::new());
    for f in &cases {
        let file = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let mut docs: Vec<String> = text.split("\n---\n").map(str::to_string).collect();
        let head = palisade_load::yaml::parse(&docs.remove(0)).unwrap()[0].to_json();
        assert_eq!(head["kind"], "ConformanceCase", "{file}");
        let key = |d: &String| palisade_load::yaml::parse(d).unwrap().first().map(|n| object_key(&n.to_json()));
        match head["steps"].as_array() {
            None => {
                let (k, fails) = run_case_step(&file, &docs, dns_of(&head["dns"]), &head);
                n += k;
                failures.extend(fails);
            }
            Some(steps) => {
                for (i, step) in steps.iter().enumerate() {
                    let keys: Vec<&str> =
                        step["objects"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
                    let chosen: Vec<String> =
                        docs.iter().filter(|d| key(d).is_some_and(|k| keys.contains(&k.as_str()))).cloned().collect();
                    assert_eq!(chosen.len(), keys.len(), "{file} step {i}: every object it names");
                    let (k, fails) = run_case_step(&format!("{file} step {i}"), &chosen, dns_of(&step["dns"]), step);
                    n += k;
                    failures.extend(fails);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {n} grids and checks differ:\n{}", failures.len(), failures.join("\n"));
}

/// A step's objects with every cluster network policy replaced by the GlobalNetworkPolicy
/// `convert --to calico` makes of it; `Err` with the refusals when one has no Calico form.
fn converted_to_calico(step: &common::suite::SuiteStep) -> Result<Vec<Value>, Vec<String>> {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": step.objects});
    let source = palisade_load::Source { name: step.name().into(), text: serde_json::to_string(&list).unwrap().into() };
    let load = palisade_load::load_sources(vec![source], &BuildOptions::default());
    let (mut out, mut refused) = (Vec::new(), Vec::new());
    for (input, original) in load.inputs.iter().zip(&step.objects) {
        let name = input.object.metadata().name.clone().unwrap_or_default();
        match palisade_ingest::clusterpolicy::to_calico(&input.object, &name) {
            None => out.push(original.clone()),
            Some((Ok(gnp), _)) => out.push(serde_json::to_value(gnp).unwrap()),
            Some((Err(why), _)) => refused.extend(why.iter().map(|r| format!("{name}: {r}"))),
        }
    }
    assert_eq!(load.inputs.len(), step.objects.len(), "{}: one input per object", step.name());
    if refused.is_empty() {
        Ok(out)
    } else {
        Err(refused)
    }
}

/// `convert --to calico` keeps every verdict: each conformance step, its policies converted to
/// Calico 3.32's GlobalNetworkPolicies in kube-admin/kube-baseline, decides every upstream probe
/// and every pod pair on the suite's ports as the original does. Only `nodes` peers, which
/// Calico 3.32 cannot express, are refused.
#[test]
fn converted_to_calico_the_conformance_suite_decides_alike() {
    let model = suite_model();
    let (mut steps, mut refused, mut compared, mut failures) = (0, Vec::new(), 0, Vec::new());
    for version in ["v1alpha2", "v1alpha1"] {
        for file in suite_files(version) {
            for step in suite_steps(&file, &model) {
                let objects = match converted_to_calico(&step) {
                    Ok(o) => o,
                    Err(why) => {
                        refused.extend(why);
                        continue;
                    }
                };
                steps += 1;
                let (original, calico) = (step.cluster(), common::suite::build(objects, BTreeMap::new(), &step.name()));
                assert!(calico.policies.iter().all(|p| !p.kind.is_cluster_network_policy()), "{}", step.name());
                let ports: Vec<(u16, Protocol)> = step.probes.iter().map(|p| (p.port, p.protocol)).collect();
                let (mut a, mut b) = (Index::new(&original), Index::new(&calico));
                for &(port, protocol) in &ports {
                    let (ma, mb) = (a.matrix(port, protocol), b.matrix(port, protocol));
                    for s in original.pod_ids() {
                        for d in original.pod_ids() {
                            compared += 1;
                            if ma.allowed(s, d) != mb.allowed(s, d) {
                                failures.push(format!(
                                    "{}: {} -> {} {protocol}/{port}: original {}, converted {}",
                                    step.name(),
                                    original.pod_key(s),
                                    original.pod_key(d),
                                    ma.allowed(s, d),
                                    mb.allowed(s, d)
                                ));
                            }
                        }
                    }
                }
                for p in &step.probes {
                    let (ns, name) = p.from.split_once('/').unwrap();
                    let verdict = |c: &Cluster| {
                        let src = Side::pod(c, c.pod(ns, name).unwrap());
                        allowed(&decide(c, &Connection::new(src, Side::ip(c, p.address), p.port, p.protocol)))
                    };
                    compared += 1;
                    if verdict(&original) != verdict(&calico) {
                        failures.push(format!(
                            "{}: probe {} -> {} {}/{}",
                            step.name(),
                            p.from,
                            p.to,
                            p.protocol,
                            p.port
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {compared} verdicts differ:\n{}", failures.len(), failures.join("\n"));
    assert!(refused.iter().all(|r| r.contains("nodes: Calico 3.32 has no form for nodes peers")), "{refused:#?}");
    // 10 steps of the node-peer tests (both versions, both tiers) hold 26 nodes peers.
    assert_eq!((steps, refused.len()), (178, 26), "{refused:#?}");
}

/// `diff` between two policy sets over the same model: (gained, lost) groups.
fn diff_steps(old: &Cluster, new: &Cluster) -> palisade_review::diff::Diff {
    use palisade_review::connectivity::{Connectivity, Cuts};
    use palisade_review::diff::{diff, Version};
    use palisade_review::workload::Workloads;
    let (wo, wn) = (Workloads::new(old), Workloads::new(new));
    let co = Connectivity::compute(old, Cuts::of(&[old, new]), || {});
    let cn = Connectivity::compute(new, Cuts::of(&[old, new]), || {});
    diff(&Version { cluster: old, conn: &co, workloads: &wo }, &Version { cluster: new, conn: &cn, workloads: &wn })
}

/// Whether a probe stretch label (`80/TCP`, `81-34344/TCP`) holds `port`/`protocol`.
fn stretch_holds(label: &str, port: u16, protocol: Protocol) -> bool {
    let Some((ports, proto)) = label.split_once('/') else { return false };
    let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
    proto == protocol.to_string() && a.parse::<u16>().unwrap() <= port && port <= b.parse::<u16>().unwrap()
}

fn group_lines(groups: &[palisade_review::diff::Group]) -> Vec<String> {
    groups.iter().map(|g| format!("{} -> {} {}", g.from, g.to, g.ports)).collect()
}

/// `diff` between steps of one conformance subtest says what changed, in the upstream's own
/// expectations: CNPAdminTierIngressTCP's swap of its Accept and Deny rules loses ravenclaw ->
/// gryffindor on every port (of IPv4) and gains nothing; swapping its slytherin Deny and Pass at port 80
/// gains slytherin -> gryffindor on 80/TCP only. And across both versions, every upstream probe
/// whose expectation differs from what the step before decided is among the gained or lost.
#[test]
fn diff_between_conformance_steps_reports_the_connections_upstream_expects_to_change() {
    let model = suite_model();
    let path = suite_files("v1alpha2").into_iter().find(|f| f.ends_with("10-CNPAdminTierIngressTCP.yaml")).unwrap();
    let steps = suite_steps(&path, &model);
    let (g, l) = (
        "network-policy-conformance-gryffindor/statefulset/harry-potter",
        "network-policy-conformance-ravenclaw/statefulset/luna-lovegood",
    );
    let d = diff_steps(&steps[1].cluster(), &steps[2].cluster());
    assert_eq!(
        (group_lines(&d.gained), group_lines(&d.lost)),
        // No ICMPv6: the suite's pods have IPv4 addresses only.
        (vec![], vec![format!("{l} -> {g} any TCP, any UDP, ICMP")])
    );
    let d = diff_steps(&steps[4].cluster(), &steps[5].cluster());
    let s = "network-policy-conformance-slytherin/statefulset/draco-malfoy";
    assert_eq!((group_lines(&d.gained), group_lines(&d.lost)), (vec![format!("{s} -> {g} 80/TCP")], vec![]));

    let (mut checked, mut failures) = (0, Vec::new());
    for version in ["v1alpha2", "v1alpha1"] {
        for file in suite_files(version) {
            let steps = suite_steps(&file, &model);
            for pair in steps.windows(2) {
                let (old, new) = (pair[0].cluster(), pair[1].cluster());
                let d = diff_steps(&old, &new);
                // Review probes SCTP only where something names it (palisade_review::probe).
                let reviewed = palisade_review::probe::probes_of(&[&old, &new]);
                let workloads = palisade_review::workload::Workloads::new(&new);
                for p in pair[1].probes.iter().filter(|p| reviewed.iter().any(|r| r.protocol == p.protocol)) {
                    let (ns, name) = p.from.split_once('/').unwrap();
                    let src = Side::pod(&old, old.pod(ns, name).unwrap());
                    let before =
                        allowed(&decide(&old, &Connection::new(src, Side::ip(&old, p.address), p.port, p.protocol)));
                    let (Some(to), true) = (Side::ip(&new, p.address).pod_id(), before != p.allow) else { continue };
                    checked += 1;
                    let key = |pod| workloads.key(&new, workloads.of_pod[pod_index(pod)]);
                    let from = key(new.pod(ns, name).unwrap());
                    let groups = if p.allow { &d.gained } else { &d.lost };
                    let found = groups.iter().any(|g| {
                        g.from == from
                            && g.to == key(to)
                            && g.pairs.keys().any(|k| stretch_holds(k, p.port, p.protocol))
                    });
                    if !found {
                        failures.push(format!(
                            "{}: {} -> {} {}/{} should be {}",
                            pair[1].name(),
                            p.from,
                            p.to,
                            p.protocol,
                            p.port,
                            if p.allow { "gained" } else { "lost" }
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} changed probes missing from diff:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} upstream probes changed between steps, each found in diff");
    assert!(checked >= 50, "only {checked} probes changed between steps");
}

fn pod_index(p: palisade_core::cluster::PodId) -> usize {
    p.index()
}

/// `graph` and the HTML report explain an allowed connection in the policy's own words: the
/// tier, kind, priority and rule name, and what a Pass handed over to.
#[test]
fn graph_names_the_tier_priority_and_rule_that_acted() {
    let model = suite_model();
    let path = suite_files("v1alpha2").into_iter().find(|f| f.ends_with("10-CNPAdminTierIngressTCP.yaml")).unwrap();
    let step = &suite_steps(&path, &model)[4];
    let cluster = step.cluster();
    let side = |key: &str| pod_side(&cluster, key);
    let conn = Connection::new(
        side("network-policy-conformance-ravenclaw/luna-lovegood-0"),
        side("network-policy-conformance-gryffindor/harry-potter-0"),
        80,
        Protocol::TCP,
    );
    let words: Vec<String> =
        decide(&cluster, &conn).trace.iter().filter_map(palisade_review::graph::deciding_rule).collect();
    let ingress = words.iter().find(|w| w.starts_with("ingress")).unwrap();
    assert!(
        ingress.contains(
            "Admin tier: ClusterNetworkPolicy ingress-tcp priority 3, rule pass-from-ravenclaw-everything [0]"
        ) && ingress.contains(" passes, then every tier passed"),
        "{words:#?}"
    );
}
