//! `matrix --all-ports` as users run it: its JSON says what `matrix --port P --output json`
//! says for the first and last port of every stretch, its CSV holds the same ranges, and it
//! refuses `--port`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::run;
use serde_json::Value;

const EXAMPLES: [&str; 3] = ["examples/lateral-movement", "examples/calico-wordpress", "examples/node-network-egress"];

/// `(from, to, protocol, first, last)` per range.
type Ranges = BTreeSet<(String, String, String, u64, u64)>;

fn json_ranges(map: &Value) -> Ranges {
    let mut out = Ranges::new();
    for c in map["connections"].as_array().expect("connections") {
        for r in c["ports"].as_array().expect("ports") {
            let s = |v: &Value| v.as_str().expect("a string").to_string();
            let n = |v: &Value| v.as_u64().expect("a number");
            out.insert((s(&c["from"]), s(&c["to"]), s(&r["protocol"]), n(&r["first"]), n(&r["last"])));
        }
    }
    out
}

#[test]
fn all_ports_agrees_with_matrix_at_every_stretch_boundary() {
    for example in EXAMPLES {
        let (code, out, err) = run(&["matrix", "--all-ports", "--output", "json", example, "-q"]);
        assert_eq!(code, 0, "{example}: {err}");
        let map: Value = serde_json::from_str(&out).expect("JSON");
        let ranges = json_ranges(&map);
        let stretches = map["stretches"].as_array().expect("stretches");
        assert!(stretches.len() > 2, "{example}: ports are cut where something names them");
        for st in stretches {
            let protocol = st["protocol"].as_str().expect("protocol");
            for port in [st["first"].as_u64().expect("first"), st["last"].as_u64().expect("last")] {
                // ICMP stretches (where some rule tells ICMP apart) have no port to give.
                let port_text = port.to_string();
                let mut args = vec!["matrix", "--protocol", protocol, "--output", "json", example, "-q"];
                if !protocol.starts_with("ICMP") {
                    args.extend(["--port", port_text.as_str()]);
                }
                let (code, out, err) = run(&args);
                assert_eq!(code, 0, "{err}");
                let m: Value = serde_json::from_str(&out).expect("JSON");
                let allowed: BTreeMap<String, Vec<Value>> =
                    serde_json::from_value(m["allowed"].clone()).expect("allowed is a map of lists");
                for (src, dsts) in &allowed {
                    let dsts: BTreeSet<&str> = dsts.iter().map(|d| d.as_str().expect("a pod")).collect();
                    for dst in allowed.keys() {
                        let on_map = ranges
                            .iter()
                            .any(|(f, t, p, a, b)| f == src && t == dst && p == protocol && (*a..=*b).contains(&port));
                        // A pod's own pair is loopback: allowed, and not listed on the map.
                        let want = dsts.contains(dst.as_str()) && src != dst;
                        assert_eq!(on_map, want, "{example}: {src} -> {dst} on {port}/{protocol}");
                    }
                }
            }
        }
    }
}

#[test]
fn csv_holds_the_json_ranges() {
    for example in EXAMPLES {
        let json: Value =
            serde_json::from_str(&run(&["matrix", "--all-ports", "--output", "json", example, "-q"]).1).expect("JSON");
        let (code, csv, err) = run(&["matrix", "--all-ports", "--output", "csv", example, "-q"]);
        assert_eq!(code, 0, "{err}");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("from,to,protocol,first_port,last_port"));
        let rows: Ranges = lines
            .map(|l| {
                // Outside pieces may hold commas: they come quoted.
                let mut fields = Vec::new();
                let mut rest = l;
                while !rest.is_empty() {
                    let (field, next) = match rest.strip_prefix('"') {
                        Some(q) => {
                            let end = q.find("\",").unwrap_or(q.len() - 1);
                            (q[..end].to_string(), q.get(end + 2..).unwrap_or(""))
                        }
                        None => match rest.split_once(',') {
                            Some((f, n)) => (f.to_string(), n),
                            None => (rest.to_string(), ""),
                        },
                    };
                    fields.push(field);
                    rest = next;
                }
                let n = |i: usize| fields[i].parse::<u64>().expect("a port");
                (fields[0].clone(), fields[1].clone(), fields[2].clone(), n(3), n(4))
            })
            .collect();
        assert_eq!(rows, json_ranges(&json), "{example}");
    }
}

#[test]
fn all_ports_refuses_a_port() {
    let (code, _, err) = run(&["matrix", "--all-ports", "--port", "80", "examples/lateral-movement"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--port"), "{err}");
}
