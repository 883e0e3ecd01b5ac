//! Who can talk to whom, for the HTML report at any size: namespaces first (with the
//! cluster's nodes and the outside world as two more groups), then each group's members
//! (workloads, nodes, pieces of the outside world) in a view of its own, where the other
//! groups stay whole. Links carry their ports, the pod pairs behind them and one example
//! connection, explained by the engine while a budget of decisions lasts. Pod pairs are only
//! counted, never listed: at 10,000 pods the links stay in the hundreds of thousands.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use fixedbitset::FixedBitSet;

use palisade_core::cluster::{Cluster, PodId};
use palisade_core::verdict::{decide_known, Connection, Side, Step};
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
    fn add(&mut self, probe: usize) {
        if let Err(i) = self.probes.binary_search(&probe) {
            self.probes.insert(i, probe);
        }
    }

    /// Takes in a later tally of the same two view nodes: its probes and pairs (the example
    /// stays the first met).
    fn merge(&mut self, later: &Tally) {
        later.probes.iter().for_each(|&p| self.add(p));
        self.pairs += later.pairs;
    }

    fn start(t: &Tally) -> Tally {
        Tally { probes: t.probes.clone(), pairs: t.pairs, example: t.example }
    }
}

/// Member pairs (arriving by source member) rolled up into the top view and each group's
/// view without a hash map: the top view in one slot per pair of groups; a source member's
/// links to whole groups in one slot per group until its turn ends; the links from a whole
/// group to each member in one slot per member, handed on when another group's member
/// reaches it (members of a group come one after another, so that is rare).
struct Rollup {
    groups: usize,
    top: Vec<Option<Tally>>,
    views: Vec<Tallies>,
    /// The source member whose turn it is, and its links to whole groups (by group).
    from: Option<usize>,
    to_group: Vec<Option<Tally>>,
    touched: Vec<usize>,
    /// Per destination member: the source group reaching it, and what is known of it.
    from_group: Vec<Option<(usize, Tally)>>,
}

impl Rollup {
    fn new(groups: usize, members: usize) -> Rollup {
        Rollup {
            groups,
            top: (0..groups * groups).map(|_| None).collect(),
            views: (0..groups).map(|_| Vec::new()).collect(),
            from: None,
            to_group: (0..groups).map(|_| None).collect(),
            touched: Vec::new(),
            from_group: (0..members).map(|_| None).collect(),
        }
    }

    fn add(&mut self, members: &[Member], (a, b): (usize, usize), t: Tally) {
        if self.from != Some(a) {
            self.end_turn(members);
            self.from = Some(a);
        }
        let (ga, gb) = (members[a].group, members[b].group);
        match &mut self.top[ga * self.groups + gb] {
            Some(slot) => slot.merge(&t),
            empty => *empty = Some(Tally::start(&t)),
        }
        if ga == gb {
            self.views[ga].push(((Ref::Member(a), Ref::Member(b)), t));
            return;
        }
        match &mut self.to_group[gb] {
            Some(slot) => slot.merge(&t),
            empty => {
                *empty = Some(Tally::start(&t));
                self.touched.push(gb);
            }
        }
        match &mut self.from_group[b] {
            Some((g, slot)) if *g == ga => slot.merge(&t),
            entry => {
                if let Some((g, done)) = entry.replace((ga, t)) {
                    self.views[gb].push(((Ref::Group(g), Ref::Member(b)), done));
                }
            }
        }
    }

    /// The source member's links to whole groups, into its group's view.
    fn end_turn(&mut self, members: &[Member]) {
        let Some(a) = self.from else { return };
        for gb in std::mem::take(&mut self.touched) {
            let t = self.to_group[gb].take().expect("touched groups have a tally");
            self.views[members[a].group].push(((Ref::Member(a), Ref::Group(gb)), t));
        }
    }

    fn finish(mut self, members: &[Member]) -> (Tallies, Vec<Tallies>) {
        self.end_turn(members);
        for (b, entry) in self.from_group.into_iter().enumerate() {
            if let Some((g, t)) = entry {
                self.views[members[b].group].push(((Ref::Group(g), Ref::Member(b)), t));
            }
        }
        let g = self.groups;
        let top = (self.top.into_iter().enumerate())
            .filter_map(|(k, t)| Some(((Ref::Group(k / g), Ref::Group(k % g)), t?)))
            .collect();
        (top, self.views)
    }
}

/// A view's links while counting, in the order they were met; one key may come more than
/// once (the view merges them, the first met first).
type Tallies = Vec<((Ref, Ref), Tally)>;

/// A multiply-rotate hash for the views' keys (small integers): the default SipHash, made to
/// resist keys chosen by an attacker, was a tenth of the overview's time over a million
/// member pairs. The views sort their links, so no output depends on the hash.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

impl Overview {
    pub fn new(cluster: &Cluster, conn: &Connectivity, workloads: &Workloads) -> Overview {
        let (groups, members) = groups(cluster, conn, workloads);
        let mut rollup = Rollup::new(groups.len(), members.len());
        member_pairs(cluster, conn, workloads, |(a, b), t| rollup.add(&members, (a, b), t));
        let (top, views_of) = rollup.finish(&members);
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
                    tallies.iter().flat_map(|((a, b), _)| [*a, *b]).filter(|r| matches!(r, Ref::Group(_))).collect();
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

/// What is known of one destination member while a source member's pods are counted.
#[derive(Default)]
struct Slot {
    probes: Vec<usize>,
    pairs: usize,
    /// The first allowed connection in (probe, source, destination) order, and that order.
    example: Option<(Order, Example)>,
}

/// Where an allowed connection comes in the counting order: probe, source, destination.
type Order = (usize, usize, usize);
/// An allowed connection: its two ends and the probe.
type Example = (End, End, usize);

impl Slot {
    fn allow(&mut self, probe: usize, order: Order, example: Example) {
        if let Err(i) = self.probes.binary_search(&probe) {
            self.probes.insert(i, probe);
        }
        if self.example.is_none_or(|(first, _)| order < first) {
            self.example = Some((order, example));
        }
    }
}

/// Per source member, the destination members it reaches, gathered in a slot per member.
struct Slots {
    slots: Vec<Slot>,
    touched: Vec<usize>,
}

impl Slots {
    fn at(&mut self, member: usize) -> &mut Slot {
        let slot = &mut self.slots[member];
        if slot.example.is_none() && slot.pairs == 0 {
            self.touched.push(member);
        }
        slot
    }

    /// Hands out the member pairs from `from` in order of destination, and empties the slots.
    fn flush(&mut self, from: usize, emit: &mut impl FnMut((usize, usize), Tally)) {
        self.touched.sort_unstable();
        self.touched.dedup();
        for to in std::mem::take(&mut self.touched) {
            let slot = std::mem::take(&mut self.slots[to]);
            let Some((_, example)) = slot.example else { continue };
            emit((from, to), Tally { probes: slot.probes, pairs: slot.pairs, example });
        }
    }
}

/// Every pair of members with an allowed connection, in order of (from, to): the probes on
/// which some endpoint pair is allowed, the endpoint pairs allowed on any of them (each once)
/// and the first allowed connection in probe order, then the endpoints' order. Gathered
/// source member by source member, so that no pair of members is kept longer than its own
/// member's turn (at 10,000 pods, each its own workload, they are millions).
fn member_pairs(
    cluster: &Cluster,
    conn: &Connectivity,
    workloads: &Workloads,
    mut emit: impl FnMut((usize, usize), Tally),
) {
    let first_address = workloads.list.len();
    let mut slots = Slots {
        slots: (0..first_address + conn.addresses.len()).map(|_| Slot::default()).collect(),
        touched: Vec::new(),
    };
    let mut any = FixedBitSet::with_capacity(cluster.pods.len());
    for (from, workload) in workloads.list.iter().enumerate() {
        for &s in &workload.pods {
            let s = s.index();
            any.clear();
            for (i, m) in conn.matrices.iter().enumerate() {
                for d in m.rows[s].ones().filter(|&d| d != s) {
                    let example = (End::Pod(PodId::new(s)), End::Pod(PodId::new(d)), i);
                    slots.at(workloads.of_pod[d]).allow(i, (i, s, d), example);
                }
                any.union_with(&m.rows[s]);
            }
            any.set(s, false);
            any.ones().for_each(|d| slots.slots[workloads.of_pod[d]].pairs += 1);
            for e in 0..conn.addresses.len() {
                let on = (0..conn.probes.len()).filter(|&i| conn.to_address[i][e].contains(s));
                let mut reached = false;
                for i in on {
                    let example = (End::Pod(PodId::new(s)), End::Address(e), i);
                    slots.at(first_address + e).allow(i, (i, s, 0), example);
                    reached = true;
                }
                slots.slots[first_address + e].pairs += usize::from(reached);
            }
        }
        slots.flush(from, &mut emit);
    }
    for e in 0..conn.addresses.len() {
        any.clear();
        for (i, by_address) in conn.from_address.iter().enumerate() {
            for p in by_address[e].ones() {
                let example = (End::Address(e), End::Pod(PodId::new(p)), i);
                slots.at(workloads.of_pod[p]).allow(i, (i, p, 0), example);
            }
            any.union_with(&by_address[e]);
        }
        any.ones().for_each(|p| slots.slots[workloads.of_pod[p]].pairs += 1);
        slots.flush(first_address + e, &mut emit);
    }
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
fn view(ends: &mut Ends, nodes: Vec<Ref>, tallies: Tallies, budget: &mut usize) -> View {
    let index: HashMap<Ref, usize, BuildHasherDefault<Mix>> = nodes.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    // Each link's place looked up once, not at every comparison of the sort; a stable sort
    // keeps one key's tallies in the order met, so the first met gives the example.
    let mut tallies: Vec<((usize, usize), Tally)> =
        tallies.into_iter().map(|((a, b), t)| ((index[&a], index[&b]), t)).collect();
    tallies.sort_by_key(|(k, _)| *k);
    tallies.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1.merge(&later.1);
        }
        same
    });
    let links: Vec<Link> = tallies
        .into_iter()
        .map(|((from, to), t)| {
            let (x, y, probe) = t.example;
            Link {
                from,
                to,
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
    let connection = Connection::new(side(cluster, conn, a), side(cluster, conn, b), p.port, p.protocol);
    let decision = decide_known(cluster, &connection, &conn.applicable);
    Some(decision.trace.iter().filter_map(deciding_rule).chain(restricted(&decision.trace)).collect())
}

/// A closing remark when no policy isolates either side.
fn restricted(trace: &[Step]) -> Option<String> {
    let isolated = trace.iter().any(|s| matches!(s, Step::Policies { isolated: true, .. }));
    (!isolated).then(|| "no policy isolates either side: allowed because nothing restricts it".to_string())
}
