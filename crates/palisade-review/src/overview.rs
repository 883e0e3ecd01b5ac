//! Who can talk to whom, for the HTML report at any size: namespaces first (with the
//! cluster's nodes and the outside world as two more groups), then each group's members
//! (workloads, nodes, pieces of the outside world) in a view of its own, where the other
//! groups stay whole. Links carry their ports, the pod pairs behind them and one example
//! connection, explained by the engine while a budget of decisions lasts. Pod pairs are only
//! counted, never listed: at 10,000 pods the links stay in the hundreds of thousands.

use std::collections::HashMap;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::verdict::{decide, Connection, Side, Step};
use serde::Serialize;

use crate::connectivity::{AddressKind, Connectivity};
use crate::graph::deciding_rule;
use crate::layout::layered;
use crate::workload::Workloads;

/// Connections explained by the engine (`check`'s trace) across the whole report: half for
/// the namespace view, the rest shared by the groups' views (at least [`EXPLAIN_PER_VIEW`]
/// each). Links beyond it show their example as a `palisade check` command instead.
pub const EXPLAIN_BUDGET: usize = 3000;
pub const EXPLAIN_PER_VIEW: usize = 10;

#[derive(Debug, Serialize)]
pub struct Overview {
    /// Probe labels (`80/TCP`, `81-442/TCP`); links name them by index.
    pub probes: Vec<String>,
    pub groups: Vec<Group>,
    pub members: Vec<Member>,
    /// Groups and the links between them.
    pub top: View,
    /// Per group: its members, the other groups it talks with, and their links.
    pub views: Vec<View>,
    /// The endpoints links take as examples (`ns/pod` or an address), by index.
    pub ends: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    /// The namespace's name, `nodes` or `outside`.
    pub name: String,
    /// `namespace`, `nodes` or `outside`.
    pub kind: &'static str,
    pub members: Vec<usize>,
    pub pods: usize,
}

#[derive(Debug, Serialize)]
pub struct Member {
    /// As the commands print and take it: `ns/deployment/web`, `node n1`, `outside 0.0.0.0/0`.
    pub id: String,
    /// Within its group: `deployment/web`, `node n1`.
    pub label: String,
    pub group: usize,
    pub pods: usize,
}

/// A node of a view: a member or a whole group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ref {
    Member(usize),
    Group(usize),
}

#[derive(Debug, Serialize)]
pub struct View {
    pub nodes: Vec<Ref>,
    /// Per node: its layer (column) and order in it ([`layered`]).
    pub layout: Vec<(usize, usize)>,
    pub links: Vec<Link>,
}

/// Serialized as an array, `[from, to, probes, pairs, [example from, to, probe], why]`: a
/// report holds hundreds of thousands at 10,000 pods.
#[derive(Debug)]
pub struct Link {
    /// Indexes into the view's nodes.
    pub from: usize,
    pub to: usize,
    /// Indexes into [`Overview::probes`] on which some pod pair is allowed.
    pub probes: Vec<usize>,
    /// Distinct endpoint pairs allowed on some of those probes.
    pub pairs: usize,
    /// One allowed connection: indexes into [`Overview::ends`] and [`Overview::probes`].
    pub example: (usize, usize, usize),
    /// The deciding rule on each side of the example, when explained.
    pub why: Option<Vec<String>>,
}

impl Serialize for Link {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.from, self.to, &self.probes, self.pairs, self.example, &self.why).serialize(s)
    }
}

/// One end of an allowed connection.
#[derive(Clone, Copy, Debug)]
enum End {
    Pod(PodId),
    Address(usize),
}

/// What is known of the connections between two view nodes while counting.
struct Tally {
    probes: Vec<usize>,
    pairs: usize,
    example: (End, End, usize),
}

impl Tally {
    fn add(&mut self, probe: usize, first_time: bool) {
        if let Err(i) = self.probes.binary_search(&probe) {
            self.probes.insert(i, probe);
        }
        self.pairs += usize::from(first_time);
    }
}

type Tallies<K> = HashMap<K, Tally>;

fn tally<K: std::hash::Hash + Eq>(t: &mut Tallies<K>, key: K, a: End, b: End, probe: usize, first: bool) {
    t.entry(key).or_insert_with(|| Tally { probes: Vec::new(), pairs: 0, example: (a, b, probe) }).add(probe, first);
}

impl Overview {
    pub fn new(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads) -> Overview {
        let (groups, members) = groups(cluster, conn, workloads);
        let member_of = |e: End| match e {
            End::Pod(p) => workloads.of_pod[p.index()],
            End::Address(a) => workloads.list.len() + a,
        };
        // Member pairs, counted once per pod pair however many probes allow it.
        let mut pairs: Tallies<(usize, usize)> = HashMap::new();
        for (i, m) in conn.matrices.iter().enumerate() {
            for s in cluster.pod_ids() {
                for d in m.rows[s.index()].ones().filter(|&d| d != s.index()) {
                    let first = !conn.matrices[..i].iter().any(|e| e.rows[s.index()].contains(d));
                    let d = PodId::new(d);
                    tally(
                        &mut pairs,
                        (member_of(End::Pod(s)), member_of(End::Pod(d))),
                        End::Pod(s),
                        End::Pod(d),
                        i,
                        first,
                    );
                }
            }
            for (e, pods) in conn.to_address[i].iter().enumerate() {
                for p in pods.ones() {
                    let first = !conn.to_address[..i].iter().any(|t| t[e].contains(p));
                    let (a, b) = (End::Pod(PodId::new(p)), End::Address(e));
                    tally(&mut pairs, (member_of(a), member_of(b)), a, b, i, first);
                }
            }
            for (e, pods) in conn.from_address[i].iter().enumerate() {
                for p in pods.ones() {
                    let first = !conn.from_address[..i].iter().any(|t| t[e].contains(p));
                    let (a, b) = (End::Address(e), End::Pod(PodId::new(p)));
                    tally(&mut pairs, (member_of(a), member_of(b)), a, b, i, first);
                }
            }
        }
        let mut pairs: Vec<((usize, usize), Tally)> = pairs.into_iter().collect();
        pairs.sort_unstable_by_key(|(k, _)| *k);
        // Roll member pairs up into the top view and each group's view.
        let mut top: Tallies<(Ref, Ref)> = HashMap::new();
        let mut views_of: Vec<Tallies<(Ref, Ref)>> = (0..groups.len()).map(|_| HashMap::new()).collect();
        for ((a, b), t) in &pairs {
            let (ga, gb) = (members[*a].group, members[*b].group);
            let merge = |into: &mut Tallies<(Ref, Ref)>, key: (Ref, Ref)| {
                let slot =
                    into.entry(key).or_insert_with(|| Tally { probes: Vec::new(), pairs: 0, example: t.example });
                for &p in &t.probes {
                    slot.add(p, false);
                }
                slot.pairs += t.pairs;
            };
            merge(&mut top, (Ref::Group(ga), Ref::Group(gb)));
            if ga == gb {
                merge(&mut views_of[ga], (Ref::Member(*a), Ref::Member(*b)));
            } else {
                merge(&mut views_of[ga], (Ref::Member(*a), Ref::Group(gb)));
                merge(&mut views_of[gb], (Ref::Group(ga), Ref::Member(*b)));
            }
        }
        let ends = Ends {
            cluster,
            conn,
            index: vec![usize::MAX; cluster.pods.len() + conn.addresses.len()],
            names: Vec::new(),
        };
        let mut ends = ends;
        let mut budget = EXPLAIN_BUDGET / 2;
        let top_nodes: Vec<Ref> = (0..groups.len()).map(Ref::Group).collect();
        let top = view(&mut ends, top_nodes, top, &mut budget);
        let per_view = (budget + EXPLAIN_BUDGET / 2) / groups.len().max(1);
        let per_view = per_view.max(EXPLAIN_PER_VIEW);
        let views = views_of
            .into_iter()
            .enumerate()
            .map(|(g, tallies)| {
                let mut nodes: Vec<Ref> = groups[g].members.iter().map(|&m| Ref::Member(m)).collect();
                let mut others: Vec<Ref> =
                    tallies.keys().flat_map(|(a, b)| [*a, *b]).filter(|r| matches!(r, Ref::Group(_))).collect();
                others.sort_unstable();
                others.dedup();
                nodes.extend(others);
                view(&mut ends, nodes, tallies, &mut per_view.clone())
            })
            .collect();
        Overview {
            probes: conn.probes.iter().map(|p| p.to_string()).collect(),
            groups,
            members,
            top,
            views,
            ends: ends.names,
        }
    }
}

/// Namespaces (sorted), then `nodes` and `outside`, each with its members.
fn groups(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads) -> (Vec<Group>, Vec<Member>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut members = Vec::new();
    let group_of = |name: &str, kind: &'static str, groups: &mut Vec<Group>| -> usize {
        match groups.iter().position(|g| g.name == name && g.kind == kind) {
            Some(g) => g,
            None => {
                groups.push(Group { name: name.to_string(), kind, members: Vec::new(), pods: 0 });
                groups.len() - 1
            }
        }
    };
    for (w, wl) in workloads.list.iter().enumerate() {
        let g = group_of(&cluster.namespaces[wl.namespace].name, "namespace", &mut groups);
        members.push(Member { id: workloads.key(cluster, w), label: wl.name.clone(), group: g, pods: wl.pods.len() });
    }
    for a in &conn.addresses {
        let (name, kind) = match a.kind {
            AddressKind::Node => ("nodes", "nodes"),
            AddressKind::Outside => ("outside", "outside"),
        };
        let g = group_of(name, kind, &mut groups);
        members.push(Member { id: a.name.clone(), label: a.name.clone(), group: g, pods: 0 });
    }
    for (m, member) in members.iter().enumerate() {
        groups[member.group].members.push(m);
        groups[member.group].pods += member.pods;
    }
    (groups, members)
}

/// The example endpoints, each named once.
struct Ends<'a> {
    cluster: &'a Cluster,
    conn: &'a Connectivity,
    /// Pods, then address endpoints: the index in `names`, or `usize::MAX`.
    index: Vec<usize>,
    names: Vec<String>,
}

impl Ends<'_> {
    fn of(&mut self, e: End) -> usize {
        let slot = match e {
            End::Pod(p) => p.index(),
            End::Address(a) => self.cluster.pods.len() + a,
        };
        if self.index[slot] == usize::MAX {
            self.index[slot] = self.names.len();
            self.names.push(match e {
                End::Pod(p) => self.cluster.pod_key(p),
                End::Address(a) => self.conn.addresses[a].address.to_string(),
            });
        }
        self.index[slot]
    }
}

/// The view of `nodes` with the links the tallies hold, laid out, explained while the budget lasts.
fn view(ends: &mut Ends, nodes: Vec<Ref>, tallies: Tallies<(Ref, Ref)>, budget: &mut usize) -> View {
    let index: HashMap<Ref, usize> = nodes.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let mut tallies: Vec<((Ref, Ref), Tally)> = tallies.into_iter().collect();
    tallies.sort_unstable_by_key(|(k, _)| (index[&k.0], index[&k.1]));
    let links: Vec<Link> = tallies
        .into_iter()
        .map(|((a, b), t)| {
            let (x, y, probe) = t.example;
            Link {
                from: index[&a],
                to: index[&b],
                probes: t.probes,
                pairs: t.pairs,
                example: (ends.of(x), ends.of(y), probe),
                why: explain(ends.cluster, ends.conn, t.example, budget),
            }
        })
        .collect();
    let edges: Vec<(usize, usize)> = links.iter().map(|l| (l.from, l.to)).collect();
    View { layout: layered(nodes.len(), &edges), nodes, links }
}

fn side(cluster: &Cluster, conn: &Connectivity, e: End) -> Side {
    match e {
        End::Pod(p) => Side::pod(cluster, p),
        End::Address(a) => Side::ip(cluster, conn.addresses[a].address),
    }
}

/// The deciding rule on each side of the example, while decisions remain in the budget.
fn explain(
    cluster: &Cluster,
    conn: &Connectivity,
    (a, b, probe): (End, End, usize),
    budget: &mut usize,
) -> Option<Vec<String>> {
    *budget = budget.checked_sub(1)?;
    let p = conn.probes[probe];
    let decision =
        decide(cluster, &Connection::new(side(cluster, conn, a), side(cluster, conn, b), p.port, p.protocol));
    Some(decision.trace.iter().filter_map(deciding_rule).chain(restricted(&decision.trace)).collect())
}

/// A closing remark when no policy isolates either side.
fn restricted(trace: &[Step]) -> Option<String> {
    let isolated = trace.iter().any(|s| matches!(s, Step::Policies { isolated: true, .. }));
    (!isolated).then(|| "no policy isolates either side: allowed because nothing restricts it".to_string())
}
