(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('data').textContent);
  const o = data.overview;
  const NS = 'http://www.w3.org/2000/svg';
  // Box height, row pitch, gaps between columns; columns wrap beyond ROWS boxes.
  const H = 26, ROW = 40, GAP = 110, SUBGAP = 36, MARGIN = 24, PAD = 10, ROWS = 24;
  // Links are arrays: [from, to, probes, pairs, [example from, to, probe], why].
  const L = l => ({ from: l[0], to: l[1], probes: l[2], pairs: l[3], example: l[4], why: l[5] });
  for (const v of [o.top, ...o.views]) v.links = v.links.map(L);
  const st = { view: -1, hidden: new Set(), port: '', query: '', selected: null };

  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const sv = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const isGroup = r => r.group !== undefined;
  const groupOf = r => isGroup(r) ? r.group : o.members[r.member].group;
  const nameOf = r => isGroup(r) ? o.groups[r.group].name : o.members[r.member].id;
  const plural = (n, one, many) => n + ' ' + (n === 1 ? one : (many || one + 's'));
  function labelOf(r) {
    if (isGroup(r)) {
      const g = o.groups[r.group];
      const what = g.kind === 'namespace' ? plural(g.members.length, 'workload') : plural(g.members.length, g.kind === 'nodes' ? 'node' : 'piece');
      return [g.kind === 'namespace' ? g.name : (g.kind === 'nodes' ? 'nodes' : 'outside the cluster'), what];
    }
    const m = o.members[r.member];
    return [m.label, m.pods > 1 ? m.pods + ' pods' : ''];
  }
  const cur = () => st.view < 0 ? o.top : o.views[st.view];
  const groupShown = g => o.groups[g].kind !== 'namespace' || !st.hidden.has(o.groups[g].name);
  const nodeShown = r => groupShown(groupOf(r));
  const ports = l => l.probes.map(p => o.probes[p]).join(', ');
  const linkShown = (v, l) => nodeShown(v.nodes[l.from]) && nodeShown(v.nodes[l.to]) &&
    (st.port === '' || l.probes.includes(Number(st.port)));
  const svg = document.getElementById('graph');
  const details = document.getElementById('details-body');

  // Text widths, measured once per label in the SVG itself.
  const widths = new Map();
  function measure(text, cls) {
    const key = cls + '\u0000' + text;
    if (!widths.has(key)) {
      const t = sv('text', { class: cls, 'font-size': '12' }, text);
      svg.append(t);
      widths.set(key, t.getComputedTextLength());
      t.remove();
    }
    return widths.get(key);
  }

  /// Boxes in columns by layer, each column as wide as its widest label; columns of more than
  /// ROWS boxes wrap into several. Hidden boxes take no place.
  function place(v, shown) {
    const byLayer = new Map();
    for (const i of shown) {
      const l = v.layout[i][0];
      if (!byLayer.has(l)) byLayer.set(l, []);
      byLayer.get(l).push(i);
    }
    const pos = new Map();
    const columns = [];
    let x = MARGIN;
    for (const l of [...byLayer.keys()].sort((a, b) => a - b)) {
      const col = byLayer.get(l).sort((a, b) => v.layout[a][1] - v.layout[b][1]);
      for (let c = 0; c < col.length; c += ROWS) {
        const chunk = col.slice(c, c + ROWS);
        const w = Math.max(...chunk.map(i => {
          const [name, count] = labelOf(v.nodes[i]);
          return measure(name, 'name') + (count ? measure(count, 'count') + 8 : 0) + 2 * PAD;
        }));
        columns.push({ chunk, x, w });
        x += w + (c + ROWS < col.length ? SUBGAP : GAP);
      }
    }
    const tallest = Math.max(1, ...columns.map(c => c.chunk.length));
    for (const c of columns) {
      const top = MARGIN + (tallest - c.chunk.length) * ROW / 2;
      c.chunk.forEach((i, k) => pos.set(i, { x: c.x, y: top + k * ROW, w: c.w }));
    }
    return { pos, width: x - GAP + MARGIN, height: 2 * MARGIN + (tallest - 1) * ROW + H };
  }

  /// A link's curve: out of the source's right side into the target's left side; backwards
  /// and within a column it bends out to the right, and a box's link to itself is a loop.
  function curve(a, b, self) {
    const ay = a.y + H / 2, by = b.y + H / 2;
    if (self) {
      const x = a.x + a.w;
      return `M${x},${ay - 6} C${x + 36},${ay - 28} ${x + 36},${ay + 28} ${x},${ay + 6}`;
    }
    if (b.x > a.x + a.w) {
      const sx = a.x + a.w, tx = b.x, dx = (tx - sx) / 2;
      return `M${sx},${ay} C${sx + dx},${ay} ${tx - dx},${by} ${tx},${by}`;
    }
    if (b.x + b.w < a.x) {
      const sx = a.x, tx = b.x + b.w, bend = 40 + Math.abs(ay - by) * 0.15;
      return `M${sx},${ay} C${sx - bend},${ay + bend} ${tx + bend},${by + bend} ${tx},${by}`;
    }
    const sx = a.x + a.w, tx = b.x + b.w, bend = Math.max(sx, tx) + 30 + Math.abs(ay - by) * 0.2;
    return `M${sx},${ay} C${bend},${ay} ${bend},${by} ${tx},${by}`;
  }

  function draw() {
    const v = cur();
    svg.textContent = '';
    svg.append(sv('defs', {}));
    svg.firstChild.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>';
    const shown = v.nodes.map((_, i) => i).filter(i => nodeShown(v.nodes[i]));
    const { pos, width, height } = place(v, shown);
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const links = sv('g', { id: 'links' });
    v.links.forEach((l, i) => {
      if (!linkShown(v, l)) return;
      const d = curve(pos.get(l.from), pos.get(l.to), l.from === l.to);
      const g = sv('g', { class: 'link', 'data-link': String(i), 'data-from': String(l.from), 'data-to': String(l.to) });
      g.append(sv('title', {}, nameOf(v.nodes[l.from]) + ' -> ' + nameOf(v.nodes[l.to]) + ': ' + ports(l)));
      g.append(sv('path', { class: 'line', d, 'marker-end': 'url(#arrow)' }), sv('path', { class: 'hit', d }));
      g.addEventListener('click', () => selectLink(i));
      links.append(g);
    });
    svg.append(links);
    // Hundreds of links draw a wall: faint until a box or link is hovered or selected.
    svg.classList.toggle('dense', links.childElementCount > 300);
    const boxes = sv('g', { id: 'boxes' });
    for (const i of shown) {
      const r = v.nodes[i], p = pos.get(i), [name, count] = labelOf(r);
      const kind = isGroup(r) ? 'group ' + o.groups[r.group].kind + (st.view >= 0 ? ' other' : '') : 'member';
      const g = sv('g', { class: 'node ' + kind, 'data-node': String(i), 'data-name': nameOf(r) });
      g.append(sv('title', {}, nameOf(r) + (isGroup(r) && st.view < 0 ? ' (select to open)' : '')));
      g.append(sv('rect', { x: p.x, y: p.y, width: p.w, height: H, rx: isGroup(r) ? 6 : 3 }));
      g.append(sv('text', { class: 'name', x: p.x + PAD, y: p.y + 17 }, name));
      if (count) g.append(sv('text', { class: 'count', x: p.x + PAD + measure(name, 'name') + 8, y: p.y + 17 }, count));
      g.addEventListener('click', () => clickNode(i));
      g.addEventListener('mouseenter', () => hot(i, true));
      g.addEventListener('mouseleave', () => hot(i, false));
      boxes.append(g);
    }
    svg.append(boxes);
    highlight();
  }

  function hot(i, on) {
    svg.querySelectorAll('.link').forEach(x => {
      const mine = x.dataset.from === String(i) || x.dataset.to === String(i);
      x.classList.toggle('hot', on && mine);
      x.classList.toggle('dim', on && !mine);
    });
  }

  /// The search: matching boxes stand out, the rest fade.
  function highlight() {
    const q = st.query.trim().toLowerCase();
    svg.querySelectorAll('.node').forEach(x => {
      const hit = q !== '' && x.dataset.name.toLowerCase().includes(q);
      x.classList.toggle('match', hit);
      x.classList.toggle('faint', q !== '' && !hit);
    });
  }

  function open(view, select) {
    st.view = view;
    st.selected = null;
    details.textContent = 'Select a box or an arrow.';
    render();
    if (select !== undefined) selectNode(select);
  }

  function clickNode(i) {
    const r = cur().nodes[i];
    if (isGroup(r) && (st.view < 0 || r.group !== st.view)) return open(r.group);
    selectNode(i);
  }

  function check(l) {
    const [from, to, port] = l.example;
    return `palisade check --from '${o.ends[from]}' --to '${o.ends[to]}' --port ${o.probes[port]} ...`;
  }

  function selectLink(i) {
    const v = cur(), l = v.links[i];
    mark('.link', 'data-link', i);
    details.textContent = '';
    details.append(el('p', { id: 'selected-link' }, nameOf(v.nodes[l.from]) + ' -> ' + nameOf(v.nodes[l.to]) + ': ' + ports(l)));
    details.append(el('p', {}, plural(l.pairs, 'endpoint pair') + ' allowed on some of these ports. For example:'));
    const p = el('p');
    p.append(el('code', {}, check(l)));
    details.append(p);
    if (l.why) {
      const list = el('ul', { id: 'why' });
      for (const s of l.why) list.append(el('li', {}, s));
      details.append(list);
    } else {
      details.append(el('p', {}, 'Not explained in this report (it explains up to ' + data.explained + ' links, the namespace view first): the command above prints the trace.'));
    }
  }

  function selectNode(i) {
    const v = cur(), r = v.nodes[i];
    mark('.node', 'data-node', i);
    hot(i, true);
    details.textContent = '';
    details.append(el('p', { id: 'selected-node' }, nameOf(r)));
    for (const [title, mine, other] of [['opens', l => l.from === i, l => l.to], ['opened by', l => l.to === i, l => l.from]]) {
      const rows = v.links.filter(l => mine(l) && linkShown(v, l));
      details.append(el('h3', {}, title + ' (' + rows.length + ')'));
      const list = el('ul');
      for (const l of rows) list.append(el('li', {}, nameOf(v.nodes[other(l)]) + ': ' + ports(l)));
      details.append(list);
    }
  }

  function mark(sel, attr, i) {
    svg.querySelectorAll('.selected').forEach(x => x.classList.remove('selected'));
    const x = svg.querySelector(sel + '[' + attr + '="' + i + '"]');
    if (x) x.classList.add('selected');
  }

  const matrix = document.getElementById('matrix');
  function drawMatrix() {
    const v = cur();
    matrix.textContent = '';
    const shown = v.nodes.map((_, i) => i).filter(i => nodeShown(v.nodes[i]));
    const byPair = new Map(v.links.map((l, i) => [l.from + ':' + l.to, i]));
    const head = el('tr');
    head.append(el('th', {}, 'from \\ to'));
    for (const c of shown) head.append(el('th', {}, nameOf(v.nodes[c])));
    matrix.append(head);
    for (const r of shown) {
      const row = el('tr');
      row.append(el('th', {}, nameOf(v.nodes[r])));
      for (const c of shown) {
        const i = byPair.get(r + ':' + c);
        const on = i !== undefined && linkShown(v, v.links[i]);
        const label = on ? (v.links[i].probes.length > 3 ? v.links[i].probes.slice(0, 2).map(p => o.probes[p]).join(', ') + ', +' + (v.links[i].probes.length - 2) : ports(v.links[i])) : '';
        const cell = el('td', on ? { class: 'on', 'data-link': String(i) } : {}, label);
        if (on) cell.addEventListener('click', () => selectLink(i));
        row.append(cell);
      }
      matrix.append(row);
    }
  }

  function render() {
    const crumbs = document.getElementById('crumbs');
    crumbs.textContent = '';
    const all = el('a', { id: 'crumb-top' }, 'All namespaces');
    all.addEventListener('click', () => open(-1));
    crumbs.append(all);
    if (st.view >= 0) crumbs.append(' \u203a ' + o.groups[st.view].name);
    document.getElementById('view-title').textContent = st.view < 0
      ? 'Namespaces, nodes and the outside world'
      : o.groups[st.view].name + ': its ' + (o.groups[st.view].kind === 'namespace' ? 'workloads' : 'members') + ' and the groups they talk with';
    draw();
    drawMatrix();
    const v = cur();
    const shownLinks = v.links.filter(l => linkShown(v, l)).length;
    const count = k => o.groups.filter(g => g.kind === k).length;
    const workloads = o.groups.filter(g => g.kind === 'namespace').reduce((n, g) => n + g.members.length, 0);
    document.getElementById('summary').textContent = plural(count('namespace'), 'namespace') + ', ' + plural(workloads, 'workload') + ', ' +
      plural(o.members.length - workloads, 'node and piece', 'nodes and pieces') + ' of the outside world; this view: ' + plural(v.links.length, 'link') + ' (' + shownLinks + ' shown); ' +
      plural(data.findings.length, 'lint finding') + '.';
    document.getElementById('ns-summary').textContent = 'Namespaces (' + (count('namespace') - st.hidden.size) + ' of ' + count('namespace') + ' shown)';
  }

  // Controls.
  const nsBox = document.getElementById('ns-filter');
  const boxes = [];
  for (const g of o.groups.filter(g => g.kind === 'namespace')) {
    const box = el('input', { type: 'checkbox', 'data-ns': g.name });
    box.checked = true;
    box.addEventListener('change', () => { box.checked ? st.hidden.delete(g.name) : st.hidden.add(g.name); render(); });
    const label = el('label');
    label.append(box, ' ' + g.name);
    nsBox.append(label);
    boxes.push(box);
  }
  const setAll = on => { boxes.forEach(b => { b.checked = on; on ? st.hidden.delete(b.dataset.ns) : st.hidden.add(b.dataset.ns); }); render(); };
  document.getElementById('ns-all').addEventListener('click', () => setAll(true));
  document.getElementById('ns-none').addEventListener('click', () => setAll(false));
  const portSel = document.getElementById('port-filter');
  o.probes.forEach((p, i) => portSel.append(el('option', { value: String(i) }, p)));
  portSel.addEventListener('change', () => { st.port = portSel.value; render(); });
  const names = document.getElementById('names');
  for (const g of o.groups) names.append(el('option', { value: g.name }));
  for (const m of o.members) names.append(el('option', { value: m.id }));
  const search = document.getElementById('search');
  search.addEventListener('input', () => { st.query = search.value; highlight(); });
  search.addEventListener('change', () => go(search.value.trim()));

  /// Opens what a name names: a group's view, or a member selected in its group's view.
  function go(name) {
    const g = o.groups.findIndex(x => x.name === name);
    if (g >= 0) return open(g);
    const m = o.members.findIndex(x => x.id === name);
    if (m < 0) return;
    const view = o.members[m].group;
    open(view, o.views[view].nodes.findIndex(r => r.member === m));
  }

  const tbody = document.querySelector('#findings tbody');
  for (const f of data.findings) {
    const row = el('tr', { 'data-code': f.code });
    const where = f.location ? f.location.file + ':' + f.location.line + ':' + f.location.column : '';
    row.append(el('td', {}, f.code + ' ' + f.name), el('td', { class: 'sev-' + f.severity }, f.severity),
      el('td', {}, where + (f.object ? ' (' + f.object + ')' : '')), el('td', {}, f.message), el('td', {}, f.help));
    tbody.append(row);
  }

  const state = new URLSearchParams(location.hash.slice(1));
  if (state.get('ns')) {
    const keep = new Set(state.get('ns').split(','));
    boxes.forEach(b => { if (!keep.has(b.dataset.ns)) { st.hidden.add(b.dataset.ns); b.checked = false; } });
  }
  if (state.get('port')) {
    const i = o.probes.indexOf(state.get('port'));
    if (i >= 0) { st.port = String(i); portSel.value = st.port; }
  }
  if (state.get('q')) { st.query = state.get('q'); search.value = st.query; }
  const view = state.get('view');
  st.view = view ? o.groups.findIndex(g => g.name === view) : -1;
  render();
  if (state.get('select')) {
    const i = cur().nodes.findIndex(r => nameOf(r) === state.get('select'));
    if (i >= 0) selectNode(i);
  }
  if (state.get('edge')) {
    const [from, to] = state.get('edge').split('->');
    const v = cur();
    const i = v.links.findIndex(l => nameOf(v.nodes[l.from]) === from && nameOf(v.nodes[l.to]) === to);
    if (i >= 0) selectLink(i);
  }
})();
