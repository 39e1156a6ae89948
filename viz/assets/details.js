// The selected span's details: what it is, where it ran, how long it took (in all and
// on its own), how its context arrived, and everything its process attached to it.

import { el } from './dom.js';
import { duration, offset } from './format.js';

export function renderDetails(aside, trace, span) {
  if (!span) {
    aside.replaceChildren(el('p', {}, 'Select a span to see its details.'));
    return;
  }
  const lane = trace.lanes[span.lane];
  const parent = trace.spans.find((s) => s.id === span.parent);
  const facts = [
    ['Process', `${lane.name}${lane.role && lane.role !== lane.name ? ` (${lane.role})` : ''}`],
    ['Start', offset(span.start_us)],
    ['Duration', duration(span.duration_us)],
    ['Self time', `${duration(span.self_us)} (not in any child)`],
    ['Status', span.status + (span.status_message ? `: ${span.status_message}` : '')],
    ['Kind', span.kind],
    ['Critical path', span.critical ? 'yes: the trace waited on it' : 'no'],
    ['Parent', parent ? `${parent.name} (${trace.lanes[parent.lane].name})` : span.missing_parent ? `${span.parent} (not received)` : 'none: a root'],
    span.seam ? ['Seam', `from ${trace.lanes[span.seam.from_lane].name}, via ${span.seam.carrier}`] : null,
    ['Scope', span.scope || '—'],
    ['Span id', span.id],
  ].filter(Boolean);
  // replaceChildren would write a null as the text "null": leave the empty parts out.
  aside.replaceChildren(...[
    el('h2', { class: `lane-color-${lane.color}` }, span.name),
    el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', { dataset: { fact: k } }, v)])),
    table('Attributes', span.attributes),
    span.events.length
      ? el('section', {}, el('h3', {}, 'Events'),
        el('ol', { class: 'events' }, span.events.map((e) =>
          el('li', {}, el('span', { class: 'when' }, offset(e.time_us)), ' ', el('strong', {}, e.name),
            e.attributes.length ? table(null, e.attributes) : null))))
      : null,
    table(`Process attributes (${lane.name})`, lane.attributes),
  ].filter(Boolean));
}

function table(title, attributes) {
  if (!attributes.length) return title ? el('section', {}, el('h3', {}, title), el('p', { class: 'none' }, 'none')) : null;
  return el('section', {},
    title ? el('h3', {}, title) : null,
    el('table', { class: 'attributes' },
      el('tbody', {}, attributes.map((a) => el('tr', {},
        el('th', { scope: 'row' }, a.key),
        el('td', { title: a.type }, a.value))))));
}
