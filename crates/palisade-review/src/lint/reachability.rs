//! Checks on what the policies let through: allows that the other side's isolation defeats,
//! and namespaces where only some pods are isolated (DNS is `dns`).

use std::collections::{BTreeMap, HashMap};

use fixedbitset::FixedBitSet;
use palisade_core::cluster::{Cluster, PodId, PolicyId};
use palisade_core::field::FieldPath;
use palisade_core::index::{Admitted, Index, Sides};
use palisade_core::matching;
use palisade_core::policy::{Action, Direction, Policy};
use palisade_core::rule::Form;
use palisade_core::verdict::{decide, Connection, Side, Step};

use super::{some_of, Context, ONE_SIDED, PARTLY_ISOLATED};
use crate::probe::Probe;

pub(super) fn run(cx: &mut Context) {
    let mut index = Index::new(cx.cluster);
    let applicable = [index.applicable(Direction::Egress), index.applicable(Direction::Ingress)];
    let dns = super::dns::run(cx, &mut index, &applicable);
    partly_isolated(cx, &dns, &applicable);
    let probes = cx.conn.probes.clone();
    // The connectivity's matrices were made of these sides: read them again when it kept them.
    let sides: Vec<Sides> = match cx.conn.sides.len() == probes.len() {
        true => cx.conn.sides.clone(),
        false => probes.iter().map(|p| index.sides(p.port, p.protocol)).collect(),
    };
    let named = (!cx.cluster.uses_calico()).then(|| Named::new(cx.cluster, &mut index, applicable, &probes));
    one_sided(cx, &probes, &sides, named.as_ref());
}

/// Kubernetes rules that name pods by selector, with the pods they name (from the index), so
/// that the rule allowing a connection by name is found without tracing it.
struct Named {
    /// `[direction][policy]`: (rule index, pods its pod peers cover).
    rules: [Vec<Vec<(usize, FixedBitSet)>>; 2],
    /// `[direction][policy]`: rule index -> per probe, whether its ports admit it, for the
    /// rules whose ports are numbers only (the same answer for every destination pod).
    numeric: [Vec<HashMap<usize, Vec<bool>>>; 2],
    /// `[direction][pod]`: the policies that apply, in order.
    applicable: [Vec<Vec<PolicyId>>; 2],
}

fn slot(dir: Direction) -> usize {
    usize::from(dir == Direction::Ingress)
}

impl Named {
    fn new(cluster: &Cluster, index: &mut Index, applicable: [Vec<Vec<PolicyId>>; 2], probes: &[Probe]) -> Named {
        let mut rules: [Vec<Vec<(usize, FixedBitSet)>>; 2] = Default::default();
        for dir in [Direction::Egress, Direction::Ingress] {
            rules[slot(dir)] = cluster
                .policies
                .iter()
                .map(|pol| {
                    pol.written_rules(dir)
                        .filter_map(|rules| {
                            let mut pods = FixedBitSet::with_capacity(cluster.pods.len());
                            let Form::Peers { peers: Some(words), .. } = &rules[0].origin.written.form else {
                                return None;
                            };
                            for r in rules.iter().filter(|r| r.origin.peer.is_some_and(|j| words[j].by_labels)) {
                                if let Some(sel) = &super::peer_end(r, dir).selector {
                                    pods.union_with(&index.label_pods(sel));
                                }
                            }
                            (!pods.is_clear()).then_some((rules[0].origin.rule, pods))
                        })
                        .collect()
                })
                .collect();
        }
        let numeric = [Direction::Egress, Direction::Ingress].map(|dir| {
            let of = |pol: PolicyId, rule: usize| numeric_admits(cluster, pol, dir, rule, probes);
            (cluster.policy_ids().zip(&rules[slot(dir)]))
                .map(|(pol, named)| named.iter().filter_map(|(r, _)| Some((*r, of(pol, *r)?))).collect())
                .collect()
        });
        Named { rules, numeric, applicable }
    }
}

/// Per probe, whether a written rule's ports admit it, when they are numbers only (no named
/// port, which would resolve at each destination pod): [`rule_ports_admit`] for every pod.
fn numeric_admits(
    cluster: &Cluster,
    pol: PolicyId,
    dir: Direction,
    rule: usize,
    probes: &[Probe],
) -> Option<Vec<bool>> {
    let rules: Vec<&palisade_core::rule::Rule> =
        cluster.policies[pol].rules(dir).into_iter().flatten().filter(|r| r.origin.rule == rule).collect();
    if !rules.iter().all(|r| matching::ports_are_numeric(&r.destination)) {
        return None;
    }
    let anyone = Side { endpoint: palisade_core::endpoint::Endpoint::External, ip: None };
    let admits = |probe: &Probe| {
        let conn = Connection::new(anyone, anyone, probe.port, probe.protocol);
        rules.iter().any(|r| {
            matching::packet(r, &conn).is_ok()
                && matching::ports_match(cluster, &r.destination, &anyone, probe.port, probe.protocol)
        })
    };
    Some(probes.iter().map(admits).collect())
}

fn partly_isolated(cx: &mut Context, (egress, ingress): &Sides, applicable: &[Vec<Vec<PolicyId>>; 2]) {
    let cluster = cx.cluster;
    for dir in [Direction::Ingress, Direction::Egress] {
        let side = if dir == Direction::Ingress { ingress } else { egress };
        let mut by_ns: BTreeMap<String, (Vec<PodId>, Vec<PodId>)> = BTreeMap::new();
        for p in cluster.pods_sorted().into_iter().filter(|&p| cluster.is_policy_subject(p)) {
            let entry = by_ns.entry(cluster.namespaces[cluster.pods[p].namespace].name.clone()).or_default();
            if side[p.index()].is_some() {
                entry.0.push(p)
            } else {
                entry.1.push(p)
            }
        }
        for (ns, (isolated, open)) in by_ns {
            if isolated.is_empty() || open.is_empty() {
                continue;
            }
            let mut open_workloads: Vec<String> =
                open.iter().map(|&p| cx.workloads.key(cluster, cx.workloads.of_pod[p.index()])).collect();
            open_workloads.dedup();
            let pol = applicable[slot(dir)][isolated[0].index()][0];
            let message = format!(
                "in namespace {ns}, {} pod(s) are isolated for {dir} but {} are not: {}",
                isolated.len(),
                open.len(),
                some_of(&open_workloads, 4)
            );
            let location = cx.locate(pol, &FieldPath::root());
            let help = if super::is_calico(cluster, pol) {
                let kind = if dir == Direction::Ingress { "Ingress" } else { "Egress" };
                format!("isolate the whole namespace: a Calico NetworkPolicy there with selector: all() and types: [{kind}], ordered after the allows (no rules: the end of the tier denies; a final Pass hands the rest to a later tier)")
            } else {
                format!("add a default-deny {dir} policy for the namespace (podSelector: {{}}) and allow what each workload needs")
            };
            cx.push(&PARTLY_ISOLATED, format!("namespace {ns}"), FieldPath::root(), message, help, location);
        }
    }
}

/// Whether a written rule names its peers by labels: a Kubernetes peer with a non-empty
/// podSelector or namespaceSelector (`podSelector: {}` or `namespaceSelector: {}` alone is a
/// blanket allow, not an intent to reach particular pods), or a selector on the peer end.
fn names_pods(pol: &Policy, dir: Direction, rule: usize) -> bool {
    let Some(rules) = pol.written_rules(dir).find(|r| r[0].origin.rule == rule) else { return false };
    match &rules[0].origin.written.form {
        Form::Peers { peers, .. } => peers.iter().flatten().any(|p| p.by_labels),
        Form::Entities { .. } => rules
            .iter()
            .any(|r| super::peer_end(r, dir).selector.as_ref().is_some_and(|s| *s != palisade_core::expr::Expr::All)),
    }
}

/// Whether the rule that decided `dir` in this trace names its peer by selector (an explicit
/// intent to talk to that pod), rather than admitting everyone or an address block.
fn explicit(
    cluster: &Cluster,
    keys: &HashMap<String, PolicyId>,
    trace: &[Step],
    dir: Direction,
) -> Option<(PolicyId, usize)> {
    trace.iter().find_map(|s| match s {
        Step::Policies { direction, policies, .. } if *direction == dir => {
            policies.iter().filter(|p| p.reached).find_map(|p| {
                let rule = p.rules.iter().find(|r| r.decisive && r.action == Action::Allow)?;
                let pol = *keys.get(&p.policy)?;
                names_pods(&cluster.policies[pol], dir, rule.index).then_some((pol, rule.index))
            })
        }
        _ => None,
    })
}

/// What one allowing rule lets through that the other side denies: the probes, the workload
/// pairs, and one pod pair as an example.
#[derive(Default)]
struct OneSided {
    probes: Vec<Probe>,
    /// Distinct workload pairs (traced), and how many more were counted (by index).
    pairs: std::collections::BTreeSet<(usize, usize)>,
    counted: usize,
    example: (PodId, PodId),
    /// Where the example was found: (probe, allowing pod), the first in that order.
    first: (usize, usize),
}

fn one_sided(cx: &mut Context, probes: &[Probe], sides: &[Sides], named: Option<&Named>) {
    let cluster = cx.cluster;
    // (direction that allows, policy, rule) -> what it lets through in vain.
    let mut found: Found = BTreeMap::new();
    match named {
        Some(named) => one_sided_by_index(cx, probes, sides, named, &mut found),
        None => one_sided_by_trace(cx, probes, sides, &mut found),
    }
    for ((allowing, pol, rule), f) in found {
        let ports = crate::probe::describe(&cx.conn.probes, &f.probes);
        let (src, dst) = (cluster.pod_key(f.example.0), cluster.pod_key(f.example.1));
        let others = match f.pairs.len() + f.counted {
            1 => String::new(),
            n => format!(" (and {} more workload pair(s))", n - 1),
        };
        let message = match allowing {
            Direction::Egress => format!("egress rule [{rule}] lets {src} open {dst} on {ports}{others}, but {dst} is isolated for ingress and does not admit it: the connection fails"),
            Direction::Ingress => format!("ingress rule [{rule}] admits {src} to {dst} on {ports}{others}, but {src} is isolated for egress and may not open it: the connection fails"),
        };
        let help = match (allowing, super::is_calico(cluster, pol)) {
            (Direction::Egress, false) => format!("allow it on the other side too: an ingress rule at {dst} from {src}'s pods"),
            (Direction::Ingress, false) => format!("allow it on the other side too: an egress rule at {src} to {dst}'s pods (palisade generate --complement-egress)"),
            (Direction::Egress, true) => format!("allow it on the other side too: an ingress Allow at {dst} whose source selector names {src}'s pods"),
            (Direction::Ingress, true) => format!("allow it on the other side too: an egress Allow at {src} whose destination selector names {dst}'s pods"),
        };
        cx.at_policy(&ONE_SIDED, pol, super::rule_path(allowing, rule), message, help);
    }
}

type Found = BTreeMap<(Direction, PolicyId, usize), OneSided>;

fn record(
    found: &mut Found,
    key: (Direction, PolicyId, usize),
    pair: (usize, usize),
    example: (PodId, PodId),
    probe: &Probe,
) {
    let entry = found.entry(key).or_insert_with(|| OneSided { example, ..Default::default() });
    if !entry.probes.contains(probe) {
        entry.probes.push(*probe);
    }
    entry.pairs.insert(pair);
}

/// Kubernetes only: the pairs one side allows and the other denies, charged to the first rule
/// of the allowing pod's policies that names the other pod (a rule's pods, from the index, are
/// one bitset). Only the pods those rules name can be charged, so only they are looked up in
/// the other side's admitted sets, bit by bit: no side is turned around (transposed).
/// Pod by pod over every probe, so that a pair refused on many probes is counted once.
fn one_sided_by_index(cx: &Context, probes: &[Probe], sides: &[Sides], named: &Named, found: &mut Found) {
    for allowing in [Direction::Egress, Direction::Ingress] {
        // Per probe: the allowing side's admitted sets, then the other side's.
        let per_probe: Vec<(&Vec<Admitted>, &Vec<Admitted>)> = sides
            .iter()
            .map(|(egress, ingress)| match allowing {
                Direction::Egress => (egress, ingress),
                Direction::Ingress => (ingress, egress),
            })
            .collect();
        // Workload by workload: the pairs are counted per workload pair, so the other ends
        // one workload's pods reach are gathered before they are counted.
        let mut seen = vec![usize::MAX; cx.workloads.list.len()];
        for (w, workload) in cx.workloads.list.iter().enumerate() {
            // (policy, rule) -> the other pods refused to any pod of the workload (repeats allowed).
            let mut others: BTreeMap<(PolicyId, usize), Vec<usize>> = BTreeMap::new();
            for x in workload.pods.iter().map(|p| p.index()) {
                one_sided_from(cx, probes, &per_probe, named, allowing, x, found, &mut others);
            }
            for (key, ys) in others {
                let entry = found.get_mut(&(allowing, key.0, key.1)).expect("recorded with its example");
                for &y in &ys {
                    let wy = cx.workloads.of_pod[y];
                    if seen[wy] != w {
                        seen[wy] = w;
                        entry.counted += 1;
                    }
                }
                // The next key counts afresh.
                ys.iter().for_each(|&y| seen[cx.workloads.of_pod[y]] = usize::MAX);
            }
        }
    }
}

/// Per rule, what one pod's rule let through in vain: the other pods refused (repeats
/// allowed), the probes (by index), and the first (probe, other pod) refused.
type Refused = (Vec<usize>, Vec<usize>, (usize, usize));

/// The pods that the named rules of `x`'s policies on the `allowing` side name: the only
/// ones a refusal can be charged to.
fn named_by(named: &Named, allowing: Direction, x: usize, n: usize) -> FixedBitSet {
    let mut out = FixedBitSet::with_capacity(n);
    for &pol in &named.applicable[slot(allowing)][x] {
        named.rules[slot(allowing)][pol.index()].iter().for_each(|(_, pods)| out.union_with(pods));
    }
    out
}

/// What pod `x`'s rules on the `allowing` side let through in vain, on every probe: the
/// example and probes go into `found`, the other pods into `others` (to be counted by workload).
#[allow(clippy::too_many_arguments)]
fn one_sided_from(
    cx: &Context,
    probes: &[Probe],
    per_probe: &[(&Vec<Admitted>, &Vec<Admitted>)],
    named: &Named,
    allowing: Direction,
    x: usize,
    found: &mut Found,
    others: &mut BTreeMap<(PolicyId, usize), Vec<usize>>,
) {
    let cluster = cx.cluster;
    let n = cluster.pods.len();
    let names = named_by(named, allowing, x, n);
    if names.is_clear() {
        return;
    }
    let mut by_rule: BTreeMap<(PolicyId, usize), Refused> = BTreeMap::new();
    for (k, (probe, (this, that))) in probes.iter().zip(per_probe).enumerate() {
        let Some(own) = &this[x] else { continue };
        // The named pods this side admits whose own side is isolated and does not admit x.
        let mut refused = FixedBitSet::clone(own);
        refused.intersect_with(&names);
        refused.set(x, false);
        let admitted: Vec<usize> =
            refused.ones().filter(|&y| that[y].as_ref().is_none_or(|admits| admits.contains(x))).collect();
        admitted.into_iter().for_each(|y| refused.set(y, false));
        if refused.is_clear() {
            continue;
        }
        for &pol in &named.applicable[slot(allowing)][x] {
            for (rule, pods) in &named.rules[slot(allowing)][pol.index()] {
                // Numbers only: the rule's ports admit the probe to every pod or to none.
                let numeric = named.numeric[slot(allowing)][pol.index()].get(rule).map(|by_probe| by_probe[k]);
                if numeric == Some(false) {
                    continue;
                }
                let hit: Vec<usize> = refused.intersection(pods).collect();
                for y in hit {
                    let dst = if allowing == Direction::Egress { y } else { x };
                    if numeric.is_none() && !rule_ports_admit(cluster, pol, allowing, *rule, PodId::new(dst), probe) {
                        continue;
                    }
                    refused.set(y, false);
                    let entry = by_rule.entry((pol, *rule)).or_insert_with(|| (Vec::new(), Vec::new(), (k, y)));
                    entry.0.push(y);
                    if entry.1.last() != Some(&k) {
                        entry.1.push(k);
                    }
                }
            }
        }
    }
    for ((pol, rule), (ys, on, (k, y))) in by_rule {
        others.entry((pol, rule)).or_default().extend(ys);
        let pair = |y: usize| match allowing {
            Direction::Egress => (x, y),
            Direction::Ingress => (y, x),
        };
        let (src, dst) = pair(y);
        let entry = found.entry((allowing, pol, rule)).or_insert_with(|| OneSided {
            example: (PodId::new(src), PodId::new(dst)),
            first: (k, x),
            ..Default::default()
        });
        // The example is the first refusal in probe order, then pod order.
        if (k, x) < entry.first {
            (entry.first, entry.example) = ((k, x), (PodId::new(src), PodId::new(dst)));
        }
        for k in on {
            if !entry.probes.contains(&probes[k]) {
                entry.probes.push(probes[k]);
            }
        }
    }
}

/// Whether a written rule's ports admit the probe to `dst` (named ports resolve there): the
/// packet conditions and destination ports of one of its rules.
fn rule_ports_admit(cluster: &Cluster, pol: PolicyId, dir: Direction, rule: usize, dst: PodId, probe: &Probe) -> bool {
    let rules = cluster.policies[pol].rules(dir).into_iter().flatten().filter(|r| r.origin.rule == rule);
    let dst = Side::pod(cluster, dst);
    let conn = Connection::new(dst, dst, probe.port, probe.protocol);
    rules.into_iter().any(|r| {
        matching::packet(r, &conn).is_ok()
            && matching::ports_match(cluster, &r.destination, &dst, probe.port, probe.protocol)
    })
}

/// Calico: the deciding rule comes from a trace, once per workload pair and probe.
fn one_sided_by_trace(cx: &Context, probes: &[Probe], sides: &[Sides], found: &mut Found) {
    let cluster = cx.cluster;
    let keys: HashMap<String, PolicyId> = cluster.policy_ids().map(|i| (cluster.policy_key(i), i)).collect();
    type Traced = HashMap<(Direction, usize, usize, usize), Option<(PolicyId, usize)>>;
    let mut traced: Traced = HashMap::new();
    for (n, (probe, (egress, ingress))) in probes.iter().zip(sides).enumerate() {
        for (s, out) in cluster.pod_ids().zip(egress) {
            for d in cluster.pod_ids().filter(|&d| d != s) {
                let e = out.as_ref().map(|x| x.contains(d.index()));
                let i = ingress[d.index()].as_ref().map(|x| x.contains(s.index()));
                let allowing = match (e, i) {
                    (Some(true), Some(false)) => Direction::Egress,
                    (Some(false), Some(true)) => Direction::Ingress,
                    _ => continue,
                };
                let pair = (cx.workloads.of_pod[s.index()], cx.workloads.of_pod[d.index()]);
                let rule = *traced.entry((allowing, pair.0, pair.1, n)).or_insert_with(|| {
                    let conn =
                        Connection::new(Side::pod(cluster, s), Side::pod(cluster, d), probe.port, probe.protocol);
                    explicit(cluster, &keys, &decide(cluster, &conn).trace, allowing)
                });
                if let Some((pol, rule)) = rule {
                    record(found, (allowing, pol, rule), pair, (s, d), probe);
                }
            }
        }
    }
}
