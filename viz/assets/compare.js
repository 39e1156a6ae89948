// Two traces side by side, step by step. The server matched each step of A with the
// step of B at the same (process, span name) path; this draws one row per step with
// both durations, the difference, and both bars on one shared time scale.

import { compareTraces } from './api.js';
import { el } from './dom.js';
import { duration, diff } from './format.js';

export async function renderCompare(main, a, b) {
  const view = await compareTraces(a, b);
  const scale = Math.max(view.a.duration_us, view.b.duration_us, 1);
  const bar = (timing, side) => timing
    ? el('div', { class: `cbar cbar-${side}`, style: {
      left: `${(timing.start_us / scale) * 100}%`,
      width: `max(2px, ${(timing.duration_us / scale) * 100}%)`,
    } })
    : null;
  const total = view.b.duration_us - view.a.duration_us;
  main.replaceChildren(el('section', { class: 'compare' },
    el('h1', {}, 'Compare two traces'),
    el('dl', { class: 'sides' },
      el('dt', {}, 'A'), el('dd', {}, el('a', { href: `#/trace/${view.a.trace_id}` }, view.a.root_name),
        ` · ${duration(view.a.duration_us)} · ${view.a.span_count} spans`),
      el('dt', {}, 'B'), el('dd', {}, el('a', { href: `#/trace/${view.b.trace_id}` }, view.b.root_name),
        ` · ${duration(view.b.duration_us)} · ${view.b.span_count} spans`),
      el('dt', {}, 'B − A'), el('dd', { class: sign(total) }, diff(total))),
    el('p', {}, el('a', { href: `#/compare/${view.b.trace_id}/${view.a.trace_id}` }, 'Swap A and B')),
    el('table', { class: 'steps' },
      el('caption', {}, 'Steps matched by their (process, span name) path from the root'),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, 'Step'),
        el('th', { scope: 'col' }, 'Process'),
        el('th', { scope: 'col', class: 'num' }, 'A'),
        el('th', { scope: 'col', class: 'num' }, 'B'),
        el('th', { scope: 'col', class: 'num' }, 'B − A'),
        el('th', { scope: 'col', class: 'bars-head' }, 'A over B, on one scale'))),
      el('tbody', {}, view.steps.map((step) => el('tr', {
        class: `step lane-color-${step.color}`,
        dataset: { path: step.path, diff: step.diff_us ?? '', only: step.a ? (step.b ? '' : 'a') : 'b' },
      },
      el('th', { scope: 'row', style: { paddingLeft: `${step.depth * 14 + 4}px` } }, step.name),
      el('td', {}, el('span', { class: 'swatch', 'aria-hidden': 'true' }), step.process),
      el('td', { class: 'num' }, step.a ? duration(step.a.duration_us) : '—'),
      el('td', { class: 'num' }, step.b ? duration(step.b.duration_us) : '—'),
      el('td', { class: `num ${sign(step.diff_us)}` },
        step.diff_us === null ? (step.a ? 'only in A' : 'only in B') : diff(step.diff_us)),
      el('td', { class: 'bars' }, bar(step.a, 'a'), bar(step.b, 'b'))))))));
  document.title = 'berth-viz: compare';
}

function sign(us) {
  if (us === null || us === undefined || us === 0) return '';
  return us > 0 ? 'slower' : 'faster';
}
