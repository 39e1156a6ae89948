// The trace list: container starts first, newest first, with filters, an import, and
// the choice of two traces to compare.

import { listTraces, services, importOtlp } from './api.js';
import { el, announce } from './dom.js';
import { duration, when } from './format.js';

export async function renderList(main) {
  const [traces, known] = await Promise.all([listTraces(), services()]);
  const table = el('tbody');
  const compareButton = el('button', { type: 'button', disabled: true }, 'Compare the two selected');

  const selected = () => [...table.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value);
  const onSelect = () => {
    compareButton.disabled = selected().length !== 2;
  };
  compareButton.addEventListener('click', () => {
    const [a, b] = selected();
    location.hash = `#/compare/${a}/${b}`;
  });

  const fill = (lines) => {
    table.replaceChildren(...lines.map((t) => row(t, onSelect)));
    if (lines.length === 0) {
      table.append(el('tr', {}, el('td', { colspan: 7, class: 'empty' },
        'No traces yet. Send some: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 berth-runc run …')));
    }
    onSelect();
  };
  fill(traces);

  const form = filterForm(known, async (filter) => {
    const lines = await listTraces(filter);
    fill(lines);
    announce(`${lines.length} traces`);
  });

  main.replaceChildren(
    el('h1', {}, 'Traces'),
    form,
    el('div', { class: 'list-actions' }, compareButton, importForm()),
    el('table', { class: 'traces' },
      el('caption', { class: 'visually-hidden' }, 'Stored traces, container starts first'),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Select to compare')),
        el('th', { scope: 'col' }, 'Root span'),
        el('th', { scope: 'col' }, 'Processes'),
        el('th', { scope: 'col', class: 'num' }, 'Duration'),
        el('th', { scope: 'col', class: 'num' }, 'Spans'),
        el('th', { scope: 'col', class: 'num' }, 'Errors'),
        el('th', { scope: 'col' }, 'Started'))),
      table));
  document.title = 'berth-viz: traces';
}

function row(t, onSelect) {
  return el('tr', { dataset: { traceId: t.trace_id }, class: t.container_start ? 'container-start' : '' },
    el('td', {}, el('input', {
      type: 'checkbox', value: t.trace_id, onchange: onSelect,
      'aria-label': `Select ${t.root_name} (${t.trace_id}) to compare`,
    })),
    el('td', {},
      el('a', { href: `#/trace/${t.trace_id}` }, t.root_name || '(no root)'),
      t.container_start ? el('span', { class: 'badge' }, 'container start') : null,
      el('div', { class: 'trace-id' }, t.trace_id)),
    el('td', {}, t.services.join(' → ')),
    el('td', { class: 'num' }, duration(t.duration_us)),
    el('td', { class: 'num' }, String(t.span_count)),
    el('td', { class: 'num' }, t.error_count ? el('span', { class: 'error-count' }, String(t.error_count)) : '0'),
    el('td', {}, when(t.start_unix_ms)));
}

function filterForm(known, apply) {
  const service = el('select', { name: 'service', id: 'f-service' },
    el('option', { value: '' }, 'any'),
    known.map((s) => el('option', { value: s }, s)));
  const root = el('input', { name: 'root', id: 'f-root', type: 'search', placeholder: 'create' });
  const min = el('input', { name: 'min', id: 'f-min', type: 'number', min: 0, step: 'any', placeholder: 'ms' });
  const max = el('input', { name: 'max', id: 'f-max', type: 'number', min: 0, step: 'any', placeholder: 'ms' });
  const since = el('input', { name: 'since', id: 'f-since', type: 'datetime-local' });
  const ms = (input) => (input.value === '' ? '' : Math.round(Number(input.value) * 1000));
  return el('form', {
    class: 'filters', 'aria-label': 'Filter traces',
    onsubmit: (event) => {
      event.preventDefault();
      apply({
        service: service.value,
        root: root.value,
        min_duration_us: ms(min),
        max_duration_us: ms(max),
        since_unix_ms: since.value ? new Date(since.value).getTime() : '',
      }).catch((error) => announce(error.message));
    },
  },
  el('label', { for: 'f-service' }, 'Process'), service,
  el('label', { for: 'f-root' }, 'Root span'), root,
  el('label', { for: 'f-min' }, 'Min duration (ms)'), min,
  el('label', { for: 'f-max' }, 'Max duration (ms)'), max,
  el('label', { for: 'f-since' }, 'Since'), since,
  el('button', { type: 'submit' }, 'Filter'));
}

function importForm() {
  const file = el('input', { type: 'file', accept: '.json,application/json', id: 'import-file' });
  return el('form', {
    class: 'import', 'aria-label': 'Import a trace',
    onsubmit: async (event) => {
      event.preventDefault();
      if (!file.files[0]) return announce('Choose an OTLP/JSON file first');
      try {
        const { trace_ids: ids } = await importOtlp(await file.files[0].text());
        location.hash = ids.length === 1 ? `#/trace/${ids[0]}` : '#/';
        announce(`Imported ${ids.length} trace(s)`);
      } catch (error) {
        announce(`Import refused: ${error.message}`);
      }
    },
  },
  el('label', { for: 'import-file' }, 'Import OTLP/JSON'), file,
  el('button', { type: 'submit' }, 'Import'));
}
