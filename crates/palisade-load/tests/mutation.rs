//! A seeded mutation runner over the loader: the repository's manifests as corpus, mutated at
//! byte level (controls, NUL, invalid UTF-8, BOMs, cut and repeated ranges, YAML and JSON
//! punctuation) and at structure level (a scalar becomes a list, a map or a number; a map
//! becomes a list; keys are dropped, misspelt or repeated). Every input must load without a
//! panic, and whatever decodes without a problem must round-trip: each object Palisade uses,
//! written back from its typed form, holds every value of the input as written. So nothing is
//! dropped, reread as other text (`app: [db]` as `app`) or widened (`destination: []` as an
//! empty rule) silently.
//!
//! CI runs a bounded slice (`PALISADE_FUZZ_INPUTS`, default 3,000). For hours:
//! `PALISADE_FUZZ_SECONDS=14400 PALISADE_FUZZ_SEED=$RANDOM cargo test --release -p palisade-load --test mutation -- --nocapture`;
//! a failing input is written to `target/fuzz-failures/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_ingest::BuildOptions;
use palisade_load::Source;
use serde_json::Value;

/// splitmix64: deterministic for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["tests/conformance", "examples", "tests/corpus/np-guard/tests", "tests/lint", "tests/invalid"] {
        for e in walkdir::WalkDir::new(repo().join(dir)).sort_by_file_name() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "json") {
                out.push((p.strip_prefix(repo()).unwrap().display().to_string(), std::fs::read(p).unwrap()));
            }
        }
    }
    assert!(out.len() > 100, "the corpus is the repository's manifests");
    out
}

const TOKENS: &[&str] = &[
    "\0", "\u{1}", "\u{7f}", "\u{85}", "\u{feff}", "\u{2028}", "\t", "\r", "\n", "\n---\n", ": ", ": [", "[]", "{}",
    "- ", "&a ", "*a", "<<: ", "!!str ", "!!int ", "\"", "'", "#", ",", "}", "]", "~", "null", "y", "0x1f", "1.0",
    ".inf", "NaN", "-", "  ",
];

fn mutate_bytes(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.insert(at, [0x00, 0x1b, 0x7f, 0xc2, 0xff, 0xfe, 0x80][rng.below(7)]),
            2 => {
                let end = (at + rng.below(40)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(80)).min(b.len());
                let piece = b[at..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, piece);
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
        }
    }
    b
}

/// Visits every value of a JSON tree (pre-order) and lets `f` replace the `n`-th.
fn edit_nth(v: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *n == 0 {
        f(v);
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| edit_nth(x, n, f)),
        Value::Object(m) => m.values_mut().any(|x| edit_nth(x, n, f)),
        _ => false,
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

fn mutate_structure(rng: &mut Rng, text: &str) -> Option<String> {
    let docs = palisade_load::yaml::parse(text).ok()?;
    let mut values: Vec<Value> = docs.iter().map(|d| d.to_json()).collect();
    let doc = values.get_mut(rng.below(docs.len()))?;
    let mut n = rng.below(count(doc));
    let choice = rng.below(9);
    let key = ["app", "x", "selector", "ports", "nets", "action"][rng.below(6)];
    edit_nth(doc, &mut n, &mut |v| {
        *v = match (choice, v.take()) {
            (0, x) => Value::Array(vec![x]),
            (1, x) => serde_json::json!({ key: x }),
            (2, _) => Value::Array(vec![]),
            (3, _) => serde_json::json!(1),
            (4, _) => Value::Bool(true),
            (5, _) => Value::Null,
            (6, Value::Object(mut m)) if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().expect("non-empty");
                let moved = m.shift_remove(&k).expect("present");
                m.insert(format!("{k}x"), moved);
                Value::Object(m)
            }
            (7, Value::Object(mut m)) if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().expect("non-empty");
                m.shift_remove(&k);
                Value::Object(m)
            }
            (_, Value::Object(m)) => Value::Array(m.into_values().collect()),
            (_, x) => Value::String(x.to_string()),
        };
    });
    Some(palisade_load::yaml::emit(&values))
}

/// Whether every value written in `input` is in `echo` (the typed object written back).
fn holds(input: &Value, echo: &Value) -> bool {
    match (input, echo) {
        (Value::Null, _) => true,
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| {
            let quantities = matches!(k.as_str(), "limits" | "requests");
            v.is_null() || b.get(k).is_some_and(|e| if quantities { holds_quantities(v, e) } else { holds(v, e) })
        }),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| holds(x, y)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Resource quantities (`cpu: 1`): Kubernetes' Quantity takes a number and writes it back as
/// the same digits in a string; nowhere else may a number come back as a string.
fn holds_quantities(input: &Value, echo: &Value) -> bool {
    match (input, echo) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| {
            v.is_null()
                || b.get(k).is_some_and(|e| match (v, e) {
                    (Value::Number(n), Value::String(s)) => n.to_string() == *s,
                    _ => holds(v, e),
                })
        }),
        _ => holds(input, echo),
    }
}

/// The objects a document holds: itself, or the items of a list.
fn objects(doc: &Value, out: &mut Vec<Value>) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    match doc.get("items") {
        Some(Value::Array(items)) if kind.ends_with("List") => {
            let implied = kind.strip_suffix("List").filter(|k| !k.is_empty());
            for item in items {
                let mut item = item.clone();
                if let (Some(k), Value::Object(m)) = (implied, &mut item) {
                    m.entry("kind").or_insert_with(|| k.into());
                    m.entry("apiVersion").or_insert_with(|| doc["apiVersion"].clone());
                }
                objects(&item, out);
            }
        }
        _ => out.push(doc.clone()),
    }
}

/// apiVersion, kind, namespace, name: an object of a group Palisade does not read (ignored)
/// is never compared with a read object of the same name.
fn identity(v: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&v["apiVersion"]), s(&v["kind"]), s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"]))
}

/// Loads one input; `Err` names a broken invariant, `Ok(true)` that it decoded without a
/// problem and round-tripped.
fn check(name: &str, bytes: &[u8]) -> Result<bool, String> {
    let text = palisade_load::text::decode_bytes(bytes.to_vec());
    let sources = vec![Source { name: name.into(), text: text.clone().into() }];
    let decoded = std::panic::catch_unwind(|| palisade_load::manifest::decode(&sources))
        .map_err(|_| "the decoder panicked".to_string())?;
    std::panic::catch_unwind(|| palisade_load::load_sources(sources.clone(), &BuildOptions::default()))
        .map_err(|_| "loading panicked".to_string())?;
    if !decoded.problems.is_empty() {
        return Ok(false);
    }
    // Decoded without a problem (warnings name fields that are not taken): every object
    // Palisade uses must round-trip.
    let echoes: Vec<Value> = decoded.inputs.iter().map(|i| echo(&i.object)).collect();
    let docs = if palisade_load::json::is_json(&text) {
        palisade_load::json::parse(&text).map_err(|e| format!("decoded, yet the JSON does not parse: {}", e.message))?
    } else {
        palisade_load::yaml::parse(&text).map_err(|e| format!("decoded, yet the YAML does not parse: {}", e.message))?
    };
    let mut taken = vec![false; echoes.len()];
    let mut raw = Vec::new();
    for d in &docs {
        objects(&d.to_json(), &mut raw);
    }
    for mut object in raw {
        // Calico's storage form is read as the v3 object it stores: compare with that.
        if object["apiVersion"].as_str() == Some(palisade_load::crd::STORAGE_API) {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            if palisade_load::crd::to_v3(&mut object, &kind).is_err() {
                continue;
            }
        }
        let id = identity(&object);
        let (api, kind, ns, name) = id.clone();
        // Ignored with a warning (an apiVersion Palisade does not read, `poliCy.networking...`):
        // not an object of the input set, so no echo stands for it, even one of the same name.
        if decoded.ignored.contains_key(&format!("{api} {kind}")) {
            continue;
        }
        let used = palisade_load::manifest::api_version_of(&kind).is_some()
            || object["apiVersion"].as_str().is_some_and(|a| a == "projectcalico.org/v3");
        // In input order: two objects may share a name (an error only when building).
        let found = echoes.iter().enumerate().find(|(i, e)| !taken[*i] && identity(e) == id);
        let Some((i, e)) = found else {
            if used && decoded.ignored.keys().all(|k| !k.ends_with(&format!(" {kind}"))) {
                return Err(format!("{kind} {ns}/{name} decoded without an error but is missing"));
            }
            continue;
        };
        taken[i] = true;
        strip(&mut object, e["__unknown_peer_fields"].as_array().map(Vec::as_slice).unwrap_or_default());
        if kind == "Pod" {
            stored_pod_fields(&mut object);
        }
        if !holds(&object, e) {
            return Err(format!(
                "{kind} {ns}/{name} decoded without an error but does not hold its input:\n{object}\n{e}"
            ));
        }
    }
    Ok(true)
}

fn unknown_peer_fields(o: &palisade_ingest::Object) -> Vec<palisade_core::field::FieldPath> {
    match o {
        palisade_ingest::Object::ClusterNetworkPolicy(x) => x.unknown_peer_fields.clone(),
        palisade_ingest::Object::AdminNetworkPolicy(x) => x.unknown_peer_fields.clone(),
        palisade_ingest::Object::BaselineAdminNetworkPolicy(x) => x.unknown_peer_fields.clone(),
        _ => Vec::new(),
    }
}

/// Removes the fields at `paths` (as printed: `spec.egress[0].to[2].x`) from an object.
fn strip(object: &mut Value, paths: &[Value]) {
    for p in paths.iter().filter_map(Value::as_str) {
        let path = palisade_core::field::FieldPath::parse(p);
        let Some((palisade_core::field::Seg::Key(last), parent)) = path.0.split_last() else { continue };
        let pointer: String = parent
            .iter()
            .map(|seg| match seg {
                palisade_core::field::Seg::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
                palisade_core::field::Seg::Index(i) => format!("/{i}"),
            })
            .collect();
        if let Some(Value::Object(m)) = object.pointer_mut(&pointer) {
            m.remove(last);
        }
    }
}

/// What a Pod is kept as (`StoredPod`, stated here on its own): metadata without managed
/// fields and annotations; of the spec the node, host network, service account and each
/// container's name, ports and restart policy; of the status the phase and addresses.
fn stored_pod_fields(pod: &mut Value) {
    let keep = |v: &mut Value, fields: &[&str]| {
        if let Value::Object(m) = v {
            m.retain(|k, _| fields.contains(&k.as_str()));
        }
    };
    if let Some(Value::Object(meta)) = pod.get_mut("metadata") {
        meta.remove("managedFields");
        meta.remove("annotations");
    }
    if let Some(spec) = pod.get_mut("spec") {
        keep(spec, &["containers", "initContainers", "hostNetwork", "nodeName", "serviceAccountName"]);
        for list in ["containers", "initContainers"] {
            for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                keep(c, &["name", "ports", "restartPolicy"]);
            }
        }
    }
    if let Some(status) = pod.get_mut("status") {
        keep(status, &["phase", "podIP", "podIPs"]);
    }
}

fn echo(o: &palisade_ingest::Object) -> Value {
    use palisade_ingest::Object::*;
    let v = match o {
        Namespace(x) => serde_json::to_value(x),
        Pod(x) => serde_json::to_value(x),
        Deployment(x) => serde_json::to_value(x),
        ReplicaSet(x) => serde_json::to_value(x),
        StatefulSet(x) => serde_json::to_value(x),
        DaemonSet(x) => serde_json::to_value(x),
        Job(x) => serde_json::to_value(x),
        CronJob(x) => serde_json::to_value(x),
        Service(x) => serde_json::to_value(x),
        EndpointSlice(x) => serde_json::to_value(x),
        Node(x) => serde_json::to_value(x),
        NetworkPolicy(x) => serde_json::to_value(x),
        ServiceAccount(x) => serde_json::to_value(x),
        CalicoNetworkPolicy(x) => serde_json::to_value(x),
        CalicoGlobalNetworkPolicy(x) => serde_json::to_value(x),
        CalicoStagedNetworkPolicy(x) => serde_json::to_value(x),
        CalicoStagedGlobalNetworkPolicy(x) => serde_json::to_value(x),
        CalicoStagedKubernetesNetworkPolicy(x) => serde_json::to_value(x),
        CalicoTier(x) => serde_json::to_value(x),
        CalicoNetworkSet(x) => serde_json::to_value(x),
        CalicoGlobalNetworkSet(x) => serde_json::to_value(x),
        CalicoHostEndpoint(x) => serde_json::to_value(x),
        ClusterNetworkPolicy(x) => serde_json::to_value(x),
        AdminNetworkPolicy(x) => serde_json::to_value(x),
        BaselineAdminNetworkPolicy(x) => serde_json::to_value(x),
    };
    let mut v = v.expect("serializable");
    // Fields a cluster network policy's peer does not know are kept aside (the rule fails
    // closed): the echo holds them as they were written.
    if let Value::Object(m) = &mut v {
        m.insert("__unknown_peer_fields".into(), unknown_peer_fields(o).iter().map(|p| p.to_string()).collect());
    }
    // Calico kinds are written back under their own kind.
    if let Value::Object(m) = &mut v {
        m.entry("kind").or_insert_with(|| o.kind().trim_start_matches("Calico ").into());
        // The stored form of a Pod does not write its apiVersion back.
        if let Some(api) = palisade_load::manifest::api_version_of(o.kind()) {
            m.entry("apiVersion").or_insert_with(|| api.into());
        }
    }
    v
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn the_corpus_round_trips_unmutated() {
    let mut failures = Vec::new();
    for (name, bytes) in corpus().iter().filter(|(n, _)| !n.starts_with("tests/invalid")) {
        if let Err(e) = check(name, bytes) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mutated_manifests_load_soundly() {
    // Small files, so that a bounded run tries many inputs (the large ones are lists of pods).
    let corpus: Vec<_> = corpus().into_iter().filter(|(_, b)| b.len() <= 8 << 10).collect();
    let seed = env_number("PALISADE_FUZZ_SEED", 14);
    let inputs = env_number("PALISADE_FUZZ_INPUTS", 3_000);
    let until = Instant::now() + Duration::from_secs(env_number("PALISADE_FUZZ_SECONDS", 0));
    let mut rng = Rng(seed);
    let (mut done, mut decoded) = (0u64, 0u64);
    while done < inputs || Instant::now() < until {
        let (name, bytes) = &corpus[rng.below(corpus.len())];
        let structural = rng.below(2) == 0;
        let mutated = match structural.then(|| mutate_structure(&mut rng, &String::from_utf8_lossy(bytes))).flatten() {
            Some(text) => text.into_bytes(),
            None => mutate_bytes(&mut rng, bytes.clone()),
        };
        let outcome = check(name, &mutated);
        decoded += u64::from(outcome == Ok(true));
        if let Err(e) = outcome {
            let dir = repo().join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("seed{seed}-input{done}.yaml"));
            std::fs::write(&file, &mutated).unwrap();
            panic!("input {done} (seed {seed}, from {name}, saved as {}): {e}", file.display());
        }
        done += 1;
    }
    eprintln!("{done} mutated inputs, {decoded} of them decoded without a problem and round-tripped");
    assert!(decoded > done / 20, "the mutations should leave some inputs valid ({decoded} of {done})");
}
