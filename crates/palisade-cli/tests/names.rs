//! Names on the command line: every name the commands print (reach, diff, graph, check's
//! trace) is taken back as input, and a misspelt pod, workload, namespace, Service, node, port
//! name, lint check or flag is answered with the closest names that exist.

mod common;

use std::collections::BTreeSet;

use common::run;
use serde_json::Value;

fn json(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert!(code == 0 || code == 1, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn strings_at(v: &Value, keys: &[&str], into: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x.as_str() {
                    Some(s) if keys.contains(&k.as_str()) => {
                        into.insert(s.to_string());
                    }
                    _ => strings_at(x, keys, into),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings_at(x, keys, into)),
        _ => {}
    }
}

/// Every endpoint name the commands print for `input`: graph nodes, reach's endpoint, targets
/// and hop paths (from and to the first workload), and the endpoints of check's trace.
fn printed_names(input: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let graph = json(&[&["graph", "--output", "json", "--detail", "workloads", "-q"][..], input].concat());
    strings_at(&graph["nodes"], &["id"], &mut names);
    let first = graph["nodes"][0]["id"].as_str().unwrap().to_string();
    for dir in ["--from", "--to"] {
        let reach = json(&[&["reach", dir, &first, "--hops", "2", "--output", "json", "-q"][..], input].concat());
        strings_at(&reach, &["endpoint", "name"], &mut names);
        for h in reach["hops"].as_array().into_iter().flatten() {
            for step in h["path"].as_array().unwrap() {
                names.insert(step[0].as_str().unwrap().to_string());
            }
        }
    }
    for to in names.clone() {
        let check = json(
            &[&["check", "--from", &first, "--to", &to, "--port", "80", "--output", "json", "-q"][..], input].concat(),
        );
        strings_at(&check["trace"], &["endpoint", "pod", "workload"], &mut names);
    }
    names
}

/// Each printed name works as `check --from` and `--to` and as `reach --from`.
fn taken_back(names: &BTreeSet<String>, input: &[&str]) {
    for name in names {
        let (code, _, err) = run(&[&["check", "--from", name, "--to", name, "--port", "80", "-q"][..], input].concat());
        assert_eq!(code, 0, "check --from {name:?} --to {name:?}: {err}");
        let (code, _, err) = run(&[&["reach", "--from", name, "-q"][..], input].concat());
        assert_eq!(code, 0, "reach --from {name:?}: {err}");
    }
}

#[test]
fn every_name_reach_graph_and_check_print_is_taken_back() {
    let inputs: [&[&str]; 6] = [
        &["tests/review/cluster.yaml", "tests/review/open.yaml"],
        &["tests/review/nodes.yaml"],
        &["tests/review/replicas.yaml"],
        &["examples/lateral-movement"],
        &["tests/dumps/cluster.yaml"],
        &["tests/conformance/model.yaml", "tests/conformance/cases/calico-18-node-to-its-own-pods.yaml"],
    ];
    let mut kinds = BTreeSet::new();
    for input in inputs {
        let names = printed_names(input);
        for n in &names {
            // What each name is: a workload key, a pod, a node (with its address as traces
            // print it), a host endpoint, a piece of the outside world, an address.
            let kind = match n.split(' ').next().unwrap() {
                "node" if n.ends_with(')') => "node (address)",
                "node" | "host" | "outside" => n.split(' ').next().unwrap(),
                _ if n.parse::<std::net::IpAddr>().is_ok() => "address",
                _ if n.matches('/').count() == 2 => "workload",
                _ => "pod",
            };
            kinds.insert(kind.to_string());
        }
        taken_back(&names, input);
    }
    for kind in ["workload", "pod", "node", "node (address)", "host", "outside", "address"] {
        assert!(kinds.contains(kind), "no printed name of kind {kind} was fed back: {kinds:?}");
    }
}

/// How check takes a port diff prints: as `--port`, whatever it is (`8080/TCP`, `1-79/UDP`,
/// `ICMP`, `ICMPv6`, `protocol 47`).
fn port_args(printed: &str) -> [&str; 2] {
    ["--port", printed]
}

#[test]
fn every_name_and_port_diff_prints_is_taken_back() {
    // (the cluster, before, after): ports, ICMP and ICMPv6, a protocol by number.
    let changes = [
        ("cluster", "deny", "open"),
        ("cluster", "except-7", "except-8"),
        ("cluster", "icmp-closed", "icmp-open"),
        ("families", "families-closed", "families-open"),
        ("families", "gre-closed", "gre"),
    ];
    let mut printed = std::collections::BTreeSet::new();
    let mut groups = 0;
    for (with, old, new) in changes {
        let [with, old, new] = [with, old, new].map(|f| format!("tests/review/{f}.yaml"));
        let d = json(&["diff", &old, &new, "--with", &with, "--output", "json"]);
        let input = [with.as_str(), new.as_str(), "-q"];
        for g in d["gained"].as_array().unwrap().iter().chain(d["lost"].as_array().unwrap()) {
            groups += 1;
            // The pair as grouped, on the example's port (as printed).
            let [from, to, port] = [&g["from"], &g["to"], &g["example"][2]].map(|v| v.as_str().unwrap());
            let (code, _, err) = run(&[&["check", "--from", from, "--to", to][..], &port_args(port), &input].concat());
            assert_eq!(code, 0, "check --from {from:?} --to {to:?} --port {port:?}: {err}");
            // The example itself, as check takes it.
            let ex: Vec<&str> = g["example"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let (code, _, err) =
                run(&[&["check", "--from", ex[0], "--to", ex[1]][..], &port_args(ex[2]), &input].concat());
            assert_eq!(code, 0, "{ex:?}: {err}");
            // Every stretch of ports it names.
            for stretch in g["pairs"].as_object().unwrap().keys() {
                let (code, _, err) =
                    run(&[&["check", "--from", from, "--to", to][..], &port_args(stretch), &input].concat());
                assert_eq!(code, 0, "--port {stretch}: {err}");
                printed.insert(stretch.split('/').next_back().unwrap().to_string());
            }
        }
    }
    assert!(groups > 5);
    for form in ["TCP", "UDP", "ICMP", "ICMPv6", "protocol 47"] {
        assert!(printed.contains(form), "no port of the form {form:?} was fed back: {printed:?}");
    }
    let input = ["tests/review/cluster.yaml", "tests/review/open.yaml", "-q"];
    let (code, _, err) = run(&[
        "check",
        "--from",
        "app/db",
        "--to",
        "app/web",
        "--port",
        "53/UDP",
        "--protocol",
        "SCTP",
        "-q",
        input[0],
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--port 53/UDP says UDP, --protocol says SCTP"), "{err}");
}

/// (arguments, what stderr must say).
const MISSPELT: &[(&[&str], &str)] = &[
    (
        &[
            "check",
            "--from",
            "netpol-test/alpin",
            "--to",
            "default/svc/kubernetes",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
        "--from netpol-test/alpin: no pod or workload of that name (did you mean netpol-test/alpine?)",
    ),
    (
        &[
            "check",
            "--from",
            "netpol-tst/alpine",
            "--to",
            "default/svc/kubernetes",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
        "--from netpol-tst/alpine: no namespace netpol-tst (did you mean netpol-test/alpine?)",
    ),
    (
        &[
            "check",
            "--from",
            "netpol-tst/zzz",
            "--to",
            "default/svc/kubernetes",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
        "no namespace netpol-tst (did you mean namespace netpol-test?)",
    ),
    (
        &[
            "check",
            "--from",
            "netpol-test/alpine",
            "--to",
            "default/kubernetes",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
        "--to default/kubernetes: no pod or workload of that name, but a Service: write default/svc/kubernetes",
    ),
    (
        &[
            "check",
            "--from",
            "netpol-test/alpine",
            "--to",
            "default/svc/kubernets",
            "--port",
            "443",
            "examples/node-network-egress",
        ],
        "no Service kubernets in namespace default (did you mean default/svc/kubernetes?)",
    ),
    (
        &[
            "check",
            "--from",
            "shop/frontend",
            "--to",
            "shop/deployment/backnd",
            "--port",
            "9090",
            "examples/lateral-movement",
        ],
        "(did you mean shop/deployment/backend?)",
    ),
    (
        &["reach", "--to", "shop/backnd", "examples/lateral-movement"],
        "--to shop/backnd: no pod or workload of that name (did you mean shop/backend?)",
    ),
    (
        &["check", "--from", "node n3", "--to", "app/web", "--port", "80", "tests/review/cluster.yaml"],
        "no such node (nodes: n1, n2)",
    ),
    (
        &[
            "check",
            "--from",
            "traefik/traefik-0",
            "--to",
            "wordpress/wordpress-0",
            "--port",
            "htpp",
            "examples/calico-wordpress",
            "-q",
        ],
        "declares no TCP port named \"htpp\" (did you mean http?)",
    ),
    (&["lint", "--allow", "egress-without-dn", "tests/review/cluster.yaml"], "(did you mean egress-without-dns?)"),
    (&["check", "--form", "x/a"], "tip: a similar argument exists: '--from'"),
    (&["chek"], "tip: a similar subcommand exists: 'check'"),
    (&["matrix", "--prot", "80"], "tip: a similar argument exists: '--port'"),
];

#[test]
fn misspelt_names_and_flags_get_the_closest_ones() {
    for (args, says) in MISSPELT {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(says), "{args:?}: want {says:?} in:\n{err}");
    }
}
