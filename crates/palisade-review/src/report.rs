//! Pictures for people: an SVG of the workload graph, and one self-contained HTML report that
//! works offline (no CDN, no external file): namespaces first, each opened into its workloads,
//! laid out in layers ([`crate::layout`]), labels only inside boxes (a link's ports and rules
//! show on hover and selection), search, namespace and port filters, the view's matrix and the
//! lint findings.

use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::{edge_label, Graph};
use crate::lint::Finding;
use crate::overview::Overview;

const BOX_W: f64 = 210.0;
const BOX_H: f64 = 30.0;
const ROW: f64 = 56.0;
const COLUMN: f64 = 340.0;
const MARGIN: f64 = 40.0;
const TITLE: f64 = 36.0;
const GAP: f64 = 60.0;

/// Where each node sits: one box per namespace (nodes, then the outside world, last), laid out on a grid
/// of about square shape, workloads stacked inside their namespace's box.
struct Layout {
    pos: Vec<(f64, f64)>,
    /// Namespace boxes: title, x, y, number of rows.
    columns: Vec<(String, f64, f64, usize)>,
    width: f64,
    height: f64,
}

fn layout(g: &Graph) -> Layout {
    let mut pos = vec![(0.0, 0.0); g.nodes.len()];
    let mut groups: Vec<(String, Vec<usize>)> = g.namespaces.iter().map(|ns| (ns.clone(), Vec::new())).collect();
    groups.push(("nodes".into(), Vec::new()));
    groups.push(("outside the cluster".into(), Vec::new()));
    for (i, n) in g.nodes.iter().enumerate() {
        let col = match (&n.namespace, n.kind) {
            (Some(ns), _) => g.namespaces.iter().position(|x| x == ns).unwrap_or(0),
            (None, "node") => g.namespaces.len(),
            (None, _) => g.namespaces.len() + 1,
        };
        groups[col].1.push(i);
    }
    let groups: Vec<(String, Vec<usize>)> = groups.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let per_row = (groups.len() as f64).sqrt().ceil().max(1.0) as usize;
    let mut columns = Vec::new();
    let mut y = MARGIN;
    for row in groups.chunks(per_row) {
        let tallest = row.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
        for (c, (name, members)) in row.iter().enumerate() {
            let x = MARGIN + c as f64 * COLUMN;
            for (r, &i) in members.iter().enumerate() {
                pos[i] = (x, y + TITLE + r as f64 * ROW);
            }
            columns.push((name.clone(), x, y, members.len()));
        }
        y += TITLE + tallest as f64 * ROW + GAP;
    }
    let width = MARGIN * 2.0 + (per_row as f64 - 1.0) * COLUMN + BOX_W + 120.0;
    Layout { pos, columns, width, height: y + MARGIN - GAP }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The path of an edge (a cubic curve) and where its label goes. Edges leave a box on the
/// side facing their target; edges within a column bulge to the right, and a workload's edge
/// to itself is a loop.
fn edge_path(l: &Layout, from: usize, to: usize) -> (String, (f64, f64)) {
    let (a, b) = (l.pos[from], l.pos[to]);
    let mid = |y: f64| y + BOX_H / 2.0;
    let curve = |p0: (f64, f64), c1: (f64, f64), c2: (f64, f64), p3: (f64, f64)| {
        // The label sits 40% along, so that A->B and B->A labels do not overlap.
        let t: f64 = 0.4;
        let at = |i: usize| {
            let v = [p0, c1, c2, p3].map(|p| if i == 0 { p.0 } else { p.1 });
            (1.0 - t).powi(3) * v[0]
                + 3.0 * (1.0 - t).powi(2) * t * v[1]
                + 3.0 * (1.0 - t) * t * t * v[2]
                + t.powi(3) * v[3]
        };
        let d = format!("M{},{} C{},{} {},{} {},{}", p0.0, p0.1, c1.0, c1.1, c2.0, c2.1, p3.0, p3.1);
        (d, (at(0), at(1)))
    };
    if from == to {
        let (x, y) = (a.0 + BOX_W, mid(a.1));
        return curve((x, y - 6.0), (x + 40.0, y - 26.0), (x + 40.0, y + 26.0), (x, y + 6.0));
    }
    if (a.0 - b.0).abs() < 1.0 {
        let x = a.0 + BOX_W;
        let bulge = x + 40.0 + (a.1 - b.1).abs() * 0.25;
        return curve((x, mid(a.1)), (bulge, mid(a.1)), (bulge, mid(b.1)), (x, mid(b.1)));
    }
    let (sx, tx) = if b.0 > a.0 { (a.0 + BOX_W, b.0) } else { (a.0, b.0 + BOX_W) };
    let (sy, ty) = (mid(a.1), mid(b.1));
    let dx = (tx - sx) / 2.0;
    curve((sx, sy), (sx + dx, sy), (tx - dx, ty), (tx, ty))
}

/// The graph as a standalone SVG document. Elements carry `data-` attributes the HTML
/// report's script filters and selects by.
pub fn svg(g: &Graph) -> String {
    let l = layout(g);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
"##,
        w = l.width,
        h = l.height
    );
    for (name, x, y, n) in &l.columns {
        let _ = writeln!(
            out,
            r##"<g class="namespace" data-ns="{ns}"><rect x="{}" y="{}" width="{}" height="{}" rx="8" fill="#f4f6fa" stroke="#c5ccd8"/><text x="{}" y="{}" font-weight="bold">{ns}</text></g>"##,
            x - 12.0,
            y - 4.0,
            BOX_W + 24.0,
            TITLE + *n as f64 * ROW,
            x - 4.0,
            y + 14.0,
            ns = esc(name)
        );
    }
    for (i, e) in g.edges.iter().enumerate() {
        let (d, (lx, ly)) = edge_path(&l, e.from, e.to);
        let color = if e.unrestricted { "#9aa3b0" } else { "#2b6cb0" };
        let dash = if e.unrestricted { r#" stroke-dasharray="5 4""# } else { "" };
        let probes: Vec<String> = e.probes.iter().map(|p| p.to_string()).collect();
        let ns = |n: usize| g.nodes[n].namespace.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            r##"<g class="edge" data-edge="{i}" data-from="{}" data-to="{}" data-probes="{}"><title>{} -> {}: {}</title><path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"{dash} marker-end="url(#arrow)"/><path d="{d}" fill="none" stroke="transparent" stroke-width="10"/><text x="{lx}" y="{}" text-anchor="middle" fill="#333" font-size="10">{}</text></g>"##,
            esc(&ns(e.from)),
            esc(&ns(e.to)),
            probes.join(" "),
            esc(&g.nodes[e.from].id),
            esc(&g.nodes[e.to].id),
            esc(&edge_label(e)),
            ly - 3.0,
            esc(&e.label)
        );
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let (x, y) = l.pos[i];
        let (fill, rx) = if n.namespace.is_some() { ("#ffffff", 4.0) } else { ("#fff8e6", 15.0) };
        let pods = if n.pods.len() > 1 { format!(" ({} pods)", n.pods.len()) } else { String::new() };
        let _ = writeln!(
            out,
            r##"<g class="node" data-node="{i}" data-ns="{}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="{rx}" fill="{fill}" stroke="#4a5568"/><text x="{}" y="{}">{}{pods}</text></g>"##,
            esc(n.namespace.as_deref().unwrap_or("")),
            esc(&n.id),
            x + 8.0,
            y + 19.0,
            esc(&n.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[derive(Serialize)]
struct Data<'a> {
    title: &'a str,
    overview: &'a Overview,
    findings: &'a [Finding],
    explained: usize,
}

/// The report: one HTML file holding its data as JSON and the script that draws it.
pub fn html(title: &str, o: &Overview, findings: &[Finding]) -> String {
    let data = Data { title, overview: o, findings, explained: crate::overview::EXPLAIN_BUDGET };
    let data = serde_json::to_string(&data).expect("serializable");
    // Inside <script>, only "</" can end the element early.
    let data = data.replace("</", "<\\/");
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    );
    let _ = writeln!(out, "<header><h1>{}</h1><p id=\"summary\"></p></header>", esc(title));
    out.push_str(BODY);
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"data\">{data}</script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

const STYLE: &str = include_str!("report/report.css");
const BODY: &str = include_str!("report/body.html");
/// Draws the current view, filters, search, selection and the tables. The URL fragment
/// (`#view=NS&select=ID&edge=FROM->TO&port=80/TCP&ns=a,b&q=TEXT`) sets the first state, so
/// that a link (or a test) opens the report on one view.
const SCRIPT: &str = include_str!("report/report.js");
