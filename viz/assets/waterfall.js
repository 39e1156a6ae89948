// One trace: the waterfall. Rows are spans in tree order (the server sends them so);
// each row sits in its process's lane and colour, and a row whose parent is in another
// process carries a seam mark naming how the context crossed. Around it: the lane
// legend, a minimap of the whole trace with the visible window, a time axis, zoom and
// pan, collapse and expand, the critical path, and the selected span's details.
//
// Keyboard (the tree follows the WAI-ARIA tree pattern):
//   ↑ ↓ Home End   move between spans        → ←   expand / collapse, or child / parent
//   + −  0         zoom in, out, reset       z     zoom to the selected span
//   Shift+← →      pan                       c     critical path on/off

import { getTrace, listTraces, exportUrl } from './api.js';
import { el, announce } from './dom.js';
import { duration, offset } from './format.js';
import { renderDetails } from './details.js';

export async function renderTrace(main, id) {
  const trace = await getTrace(id);
  const total = Math.max(trace.duration_us, 1);
  const state = {
    collapsed: new Set(),
    from: 0, to: total, // the visible window, in µs after the trace's start
    selected: trace.spans[0]?.id,
    critical: true,
  };
  const byId = new Map(trace.spans.map((s) => [s.id, s]));
  const segments = new Map();
  for (const seg of trace.critical_path) {
    if (!segments.has(seg.span)) segments.set(seg.span, []);
    segments.get(seg.span).push(seg);
  }

  const tree = el('div', { class: 'waterfall', role: 'tree', 'aria-label': 'Spans, in tree order', 'aria-multiselectable': 'false' });
  const axis = el('div', { class: 'axis', 'aria-hidden': 'true' });
  const details = el('aside', { class: 'details', 'aria-label': 'Selected span' });
  const minimap = buildMinimap(trace, total, (from, to) => zoomTo(from, to));
  const criticalToggle = el('input', { type: 'checkbox', id: 'critical-toggle', checked: true,
    onchange: () => { state.critical = criticalToggle.checked; draw(); } });

  // Rows that are visible: those with no collapsed ancestor.
  function visibleSpans() {
    const out = [];
    let hideBelow = Infinity;
    for (const span of trace.spans) {
      if (span.depth > hideBelow) continue;
      hideBelow = Infinity;
      out.push(span);
      if (state.collapsed.has(span.id)) hideBelow = span.depth;
    }
    return out;
  }

  const pct = (us) => `${((us - state.from) / (state.to - state.from)) * 100}%`;
  const width = (us) => `${(us / (state.to - state.from)) * 100}%`;

  function draw(focus = false) {
    tree.classList.toggle('show-critical', state.critical);
    // Redrawing replaces every row: if the keyboard was in the tree (a zoom, a pan,
    // `c`), it must land on the new selected row, not fall back to <body>.
    const hadFocus = tree.contains(document.activeElement);
    const visible = visibleSpans();
    // A collapsed ancestor may have hidden the selected span: the selection moves up
    // to the nearest row still shown, so that the keys have a row to start from.
    let selected = byId.get(state.selected);
    while (selected && !visible.includes(selected) && byId.has(selected.parent)) selected = byId.get(selected.parent);
    if (selected && visible.includes(selected)) state.selected = selected.id;
    const rows = [];
    let previousLane = null;
    for (const span of visible) {
      const lane = trace.lanes[span.lane];
      const firstOfRun = span.lane !== previousLane;
      previousLane = span.lane;
      rows.push(buildRow(span, lane, firstOfRun));
    }
    tree.replaceChildren(...rows);
    drawAxis();
    minimap.show(state.from, state.to);
    const current = tree.querySelector(`[data-span-id="${state.selected}"]`) || tree.firstElementChild;
    if (current) {
      current.tabIndex = 0;
      current.setAttribute('aria-selected', 'true');
      if (focus || hadFocus) current.focus();
    }
    renderDetails(details, trace, byId.get(state.selected));
  }

  function buildRow(span, lane, firstOfRun) {
    const hasChildren = span.child_count > 0;
    const collapsed = state.collapsed.has(span.id);
    const bar = el('div', {
      class: 'bar',
      style: { left: pct(span.start_us), width: `max(2px, ${width(span.duration_us)})` },
    });
    // Critical segments sit in the track beside the bar, on the same scale.
    const track = el('div', { class: 'track' }, bar,
      (segments.get(span.id) || []).map((seg) =>
        el('div', { class: 'crit', title: 'on the critical path',
          style: { left: pct(seg.start_us), width: `max(1px, ${width(seg.end_us - seg.start_us)})` } })),
      el('span', { class: 'dur', style: { left: `min(calc(${pct(span.start_us + span.duration_us)} + 4px), calc(100% - 6em))` } },
        duration(span.duration_us)));
    const seam = span.seam
      ? el('span', { class: `seam-mark seam-${span.seam.kind.replace(/\s+/g, '-')}`,
        title: `Context came from ${trace.lanes[span.seam.from_lane].name} via ${span.seam.carrier}` },
        `⇢ ${span.seam.kind}`)
      : null;
    const row = el('div', {
      role: 'treeitem',
      'aria-level': span.depth + 1,
      'aria-expanded': hasChildren ? String(!collapsed) : null,
      'aria-selected': 'false',
      'aria-label': `${span.name}, ${lane.name}, ${duration(span.duration_us)}${span.critical ? ', on the critical path' : ''}${span.seam ? `, crossed by ${span.seam.kind}` : ''}`,
      tabindex: -1,
      class: ['row', `lane-color-${lane.color}`, firstOfRun ? 'lane-start' : '', span.critical ? 'critical' : '',
        span.seam ? 'seam' : '', span.status === 'error' ? 'status-error' : '', span.id === state.selected ? 'selected' : ''].join(' '),
      dataset: { spanId: span.id, lane: lane.name, depth: span.depth, critical: span.critical },
      onclick: () => select(span.id, true),
    },
    el('div', { class: 'lane-cell' }, firstOfRun ? lane.name : ''),
    el('div', { class: 'label', style: { paddingLeft: `${span.depth * 14 + 4}px` } },
      hasChildren
        ? el('button', { type: 'button', class: 'toggle', tabindex: -1, 'aria-hidden': 'true',
          onclick: (event) => { event.stopPropagation(); toggle(span.id); } }, collapsed ? '▸' : '▾')
        : el('span', { class: 'toggle-space' }),
      el('span', { class: 'name' }, span.name),
      span.missing_parent ? el('span', { class: 'missing-parent', title: 'its parent span was not received' }, 'parent missing') : null,
      seam),
    track);
    return row;
  }

  function drawAxis() {
    const ticks = [];
    for (let i = 0; i <= 4; i += 1) {
      const us = Math.round(state.from + ((state.to - state.from) * i) / 4);
      ticks.push(el('span', { class: 'tick', style: { left: `${i * 25}%` } }, offset(us)));
    }
    axis.replaceChildren(el('div', { class: 'lane-cell' }, 'process'), el('div', { class: 'label' }, 'span'),
      el('div', { class: 'track' }, ticks));
  }

  function select(spanId, focus) {
    state.selected = spanId;
    draw(focus);
  }

  function toggle(spanId) {
    if (state.collapsed.has(spanId)) state.collapsed.delete(spanId);
    else state.collapsed.add(spanId);
    draw(true);
  }

  function zoomTo(from, to) {
    const span = Math.max(to - from, 10); // never closer than 10 µs: below that, nothing to see
    state.from = Math.max(0, Math.min(from, total - span));
    state.to = Math.min(total, state.from + span);
    draw();
    announce(`Showing ${offset(Math.round(state.from))} to ${offset(Math.round(state.to))}`);
  }
  const zoom = (factor) => {
    const selected = byId.get(state.selected);
    const center = selected ? selected.start_us + selected.duration_us / 2 : (state.from + state.to) / 2;
    const half = ((state.to - state.from) * factor) / 2;
    zoomTo(center - half, center + half);
  };
  const pan = (fraction) => {
    const shift = (state.to - state.from) * fraction;
    zoomTo(state.from + shift, state.to + shift);
  };

  tree.addEventListener('keydown', (event) => {
    const visible = visibleSpans();
    const at = visible.findIndex((s) => s.id === state.selected);
    const span = visible[at];
    const go = (i) => { if (visible[i]) select(visible[i].id, true); };
    let handled = true;
    if (event.shiftKey && event.key === 'ArrowLeft') pan(-0.2);
    else if (event.shiftKey && event.key === 'ArrowRight') pan(0.2);
    else if (event.key === 'ArrowDown') go(at + 1);
    else if (event.key === 'ArrowUp') go(at - 1);
    else if (event.key === 'Home') go(0);
    else if (event.key === 'End') go(visible.length - 1);
    else if (event.key === 'ArrowRight') {
      if (span.child_count && state.collapsed.has(span.id)) toggle(span.id);
      else if (span.child_count) go(at + 1);
    } else if (event.key === 'ArrowLeft') {
      if (span.child_count && !state.collapsed.has(span.id)) toggle(span.id);
      else if (span.parent && byId.has(span.parent)) select(span.parent, true);
    } else if (event.key === 'Enter' || event.key === ' ') toggle(span.id);
    else if (event.key === '+' || event.key === '=') zoom(0.5);
    else if (event.key === '-') zoom(2);
    else if (event.key === '0') zoomTo(0, total);
    else if (event.key === 'z') zoomTo(span.start_us, span.start_us + Math.max(span.duration_us, 10));
    else if (event.key === 'c') criticalToggle.click();
    else handled = false;
    if (handled) event.preventDefault();
  });
  // Ctrl + wheel zooms around the pointer, as in most timeline tools.
  tree.addEventListener('wheel', (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    const track = tree.querySelector('.track').getBoundingClientRect();
    const at = state.from + ((event.clientX - track.left) / track.width) * (state.to - state.from);
    const factor = event.deltaY < 0 ? 0.8 : 1.25;
    zoomTo(at - (at - state.from) * factor, at + (state.to - at) * factor);
  }, { passive: false });

  const root = trace.spans[0];
  const others = await listTraces({ limit: 50 }).catch(() => []);
  const compareWith = el('select', { id: 'compare-with', onchange: (event) => {
    if (event.target.value) location.hash = `#/compare/${trace.trace_id}/${event.target.value}`;
  } }, el('option', { value: '' }, 'choose a trace…'),
  others.filter((t) => t.trace_id !== trace.trace_id).map((t) =>
    el('option', { value: t.trace_id }, `${t.root_name} · ${duration(t.duration_us)} · ${t.trace_id.slice(0, 8)}`)));

  main.replaceChildren(el('section', { class: 'trace', dataset: { traceId: trace.trace_id } },
    el('header', { class: 'trace-head' },
      el('h1', {}, root ? root.name : trace.trace_id),
      el('p', { class: 'facts' },
        el('span', {}, duration(trace.duration_us)), ' · ',
        el('span', {}, `${trace.spans.length} spans`), ' · ',
        el('span', {}, `${trace.lanes.length} processes`), ' · ',
        el('code', { class: 'trace-id' }, trace.trace_id)),
      el('div', { class: 'trace-actions' },
        el('a', { href: exportUrl(trace.trace_id), download: `trace-${trace.trace_id}.json` }, 'Export OTLP/JSON'),
        el('label', { for: 'compare-with' }, 'Compare with'), compareWith)),
    el('ul', { class: 'lanes', 'aria-label': 'Processes (lanes)' },
      trace.lanes.map((lane) => el('li', { class: `lane-legend lane-color-${lane.color}`, dataset: { lane: lane.name } },
        el('span', { class: 'swatch', 'aria-hidden': 'true' }),
        el('strong', {}, lane.name),
        lane.role && lane.role !== lane.name ? el('span', { class: 'role' }, lane.role) : null,
        el('span', { class: 'count' }, `${lane.span_count} spans`)))),
    el('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Timeline' },
      el('button', { type: 'button', onclick: () => zoom(0.5), title: 'Zoom in (+)' }, 'Zoom in'),
      el('button', { type: 'button', onclick: () => zoom(2), title: 'Zoom out (−)' }, 'Zoom out'),
      el('button', { type: 'button', onclick: () => zoomTo(0, total), title: 'Whole trace (0)' }, 'Whole trace'),
      el('button', { type: 'button', onclick: () => pan(-0.2), title: 'Pan left (Shift+←)' }, '◀'),
      el('button', { type: 'button', onclick: () => pan(0.2), title: 'Pan right (Shift+→)' }, '▶'),
      el('button', { type: 'button', onclick: () => { state.collapsed.clear(); draw(); } }, 'Expand all'),
      el('button', { type: 'button', onclick: () => {
        trace.spans.filter((s) => s.child_count && s.depth > 0).forEach((s) => state.collapsed.add(s.id)); draw();
      } }, 'Collapse all'),
      el('span', { class: 'critical-switch' }, criticalToggle,
        el('label', { for: 'critical-toggle' }, 'Critical path (c)'))),
    minimap.node,
    el('div', { class: 'trace-body' },
      el('div', { class: 'timeline' }, axis, tree),
      details)));
  document.title = `berth-viz: ${root ? root.name : trace.trace_id}`;
  draw();
}

// The minimap: every span of the whole trace as a thin line, and the visible window as
// a frame. Drag across it to zoom to that stretch; focus it and use ← → to pan.
function buildMinimap(trace, total, onPick) {
  const frame = el('div', { class: 'viewport' });
  const rows = Math.max(trace.spans.length, 1);
  const node = el('div', {
    class: 'minimap', tabindex: 0, role: 'slider',
    'aria-label': 'Minimap of the whole trace: drag to zoom, arrows to pan',
    'aria-valuemin': 0, 'aria-valuemax': total,
  },
  trace.spans.map((span, i) => el('div', {
    class: `mini-bar lane-color-${trace.lanes[span.lane].color}`,
    style: {
      left: `${(span.start_us / total) * 100}%`,
      width: `max(1px, ${(span.duration_us / total) * 100}%)`,
      top: `${(i / rows) * 100}%`,
      height: `max(1px, ${100 / rows}%)`,
    },
  })), frame);
  let shown = [0, total];
  let dragFrom = null;
  const at = (event) => {
    const box = node.getBoundingClientRect();
    return Math.max(0, Math.min(total, ((event.clientX - box.left) / box.width) * total));
  };
  node.addEventListener('pointerdown', (event) => { dragFrom = at(event); node.setPointerCapture(event.pointerId); });
  node.addEventListener('pointerup', (event) => {
    if (dragFrom === null) return;
    const to = at(event);
    const [a, b] = [Math.min(dragFrom, to), Math.max(dragFrom, to)];
    dragFrom = null;
    if (b - a > total / 200) onPick(a, b);
    else { const half = (shown[1] - shown[0]) / 2; onPick(a - half, a + half); } // a click centres the window
  });
  node.addEventListener('keydown', (event) => {
    const step = (shown[1] - shown[0]) * 0.2;
    if (event.key === 'ArrowLeft') onPick(shown[0] - step, shown[1] - step);
    else if (event.key === 'ArrowRight') onPick(shown[0] + step, shown[1] + step);
    else return;
    event.preventDefault();
  });
  return {
    node,
    show(from, to) {
      shown = [from, to];
      frame.style.left = `${(from / total) * 100}%`;
      frame.style.width = `${((to - from) / total) * 100}%`;
      node.setAttribute('aria-valuenow', Math.round(from));
      node.setAttribute('aria-valuetext', `${offset(Math.round(from))} to ${offset(Math.round(to))}`);
    },
  };
}
