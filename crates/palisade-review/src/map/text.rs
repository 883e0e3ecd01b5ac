//! The map as text, grouped by workload: one line `source => destination : ports` per
//! workload pair whose every pod pair may use the same ports, pod lines where they differ.

use std::collections::HashMap;

use palisade_core::cluster::Cluster;

use super::{End, Map};
use crate::probe::describe;
use crate::workload::Workloads;

/// No pair of the unit pair may connect.
const NONE: usize = usize::MAX;

/// A workload, or one address endpoint, as a source or destination of lines.
struct Unit {
    name: String,
    ends: Vec<End>,
}

/// The map as text (see the module's doc).
pub fn render(map: &Map, cluster: &Cluster) -> String {
    let workloads = Workloads::new(cluster);
    let mut units: Vec<Unit> = (workloads.list.iter().enumerate())
        .map(|(w, wl)| Unit { name: workloads.key(cluster, w), ends: wl.pods.iter().map(|&p| End::Pod(p)).collect() })
        .collect();
    let pod_units = units.len();
    units.extend(
        (0..map.addresses.len())
            .map(|x| Unit { name: map.name(cluster, End::Address(x)), ends: vec![End::Address(x)] }),
    );
    let slot = |e: End| match e {
        End::Pod(p) => p.index(),
        End::Address(x) => cluster.pods.len() + x,
    };
    let mut by_src: HashMap<End, Vec<(End, usize)>> = HashMap::new();
    for p in &map.pairs {
        by_src.entry(p.src).or_default().push((p.dst, p.set));
    }
    let mut out = header(map, cluster, pod_units);
    let mut row = vec![NONE; cluster.pods.len() + map.addresses.len()];
    for src in &units {
        let rows: Vec<Vec<usize>> = (src.ends.iter())
            .map(|s| {
                row.fill(NONE);
                by_src.get(s).into_iter().flatten().for_each(|&(d, set)| row[slot(d)] = set);
                row.clone()
            })
            .collect();
        let mut lines = Vec::new();
        for dst in &units {
            unit_lines(map, cluster, src, dst, &rows, &slot, &mut lines);
        }
        if !lines.is_empty() {
            out.push('\n');
            lines.iter().for_each(|l| out.push_str(l));
        }
    }
    out
}

fn header(map: &Map, cluster: &Cluster, workloads: usize) -> String {
    let (outside, nodes) = map.addresses.iter().fold((0, 0), |(o, n), a| match a.kind {
        crate::connectivity::AddressKind::Outside => (o + 1, n),
        crate::connectivity::AddressKind::Node => (o, n + 1),
    });
    let pods = map.pairs.iter().filter(|p| matches!((p.src, p.dst), (End::Pod(_), End::Pod(_)))).count();
    format!(
        "{} pods in {workloads} workloads, {outside} outside pieces, {nodes} nodes and host endpoints; ports cut into {} stretches ({})\n{pods} pod pairs and {} pod-address pairs may connect; lines read `source => destination : ports`, a workload's line holding for each of its pods\n",
        cluster.pods.len(),
        map.probes.len(),
        describe(&map.probes, &map.probes),
        map.pairs.len() - pods,
    )
}

/// One line for the unit pair when every pod pair of it may use the same ports, else one per
/// pod pair that may connect. `rows[i]` holds `src.ends[i]`'s set per destination slot.
fn unit_lines(
    map: &Map,
    cluster: &Cluster,
    src: &Unit,
    dst: &Unit,
    rows: &[Vec<usize>],
    slot: &impl Fn(End) -> usize,
    lines: &mut Vec<String>,
) {
    // A pod's own pair is not in the map (loopback) unless it stands for several replicas.
    let cells = || {
        (src.ends.iter().zip(rows)).flat_map(move |(&s, row)| {
            dst.ends
                .iter()
                .filter(move |&&d| d != s || is_replica_group(cluster, s))
                .map(move |&d| (s, d, row[slot(d)]))
        })
    };
    let first = cells().next().map(|c| c.2);
    let Some(first) = first else { return };
    let shown = |set: usize| describe(&map.probes, &map.sets[set].iter().map(|&p| map.probes[p]).collect::<Vec<_>>());
    if cells().all(|c| c.2 == first) {
        if first != NONE {
            lines.push(format!("{} => {} : {}\n", src.name, dst.name, shown(first)));
        }
        return;
    }
    for (s, d, set) in cells().filter(|c| c.2 != NONE) {
        lines.push(format!("{} => {} : {}\n", map.name(cluster, s), map.name(cluster, d), shown(set)));
    }
}

fn is_replica_group(cluster: &Cluster, e: End) -> bool {
    matches!(e, End::Pod(p) if cluster.pods[p].is_replica_group())
}
