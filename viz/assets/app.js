// The router: the part of the URL after '#' says which view to draw.
//   #/                 the trace list            (list.js)
//   #/trace/ID         one trace                 (waterfall.js)
//   #/compare/A/B      two traces side by side   (compare.js)
// When a view has finished drawing, <body data-ready="..."> names it: the headless
// browser tests wait for nothing else.

import { renderList } from './list.js';
import { renderTrace } from './waterfall.js';
import { renderCompare } from './compare.js';
import { el } from './dom.js';

const main = document.getElementById('main');

async function route() {
  const [view, a, b] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  document.body.dataset.ready = '';
  try {
    if (view === 'trace' && a) {
      await renderTrace(main, a);
      document.body.dataset.ready = 'trace';
    } else if (view === 'compare' && a && b) {
      await renderCompare(main, a, b);
      document.body.dataset.ready = 'compare';
    } else {
      await renderList(main);
      document.body.dataset.ready = 'list';
    }
  } catch (error) {
    main.replaceChildren(
      el('div', { class: 'error', role: 'alert' },
        el('h1', {}, 'Cannot show this'),
        el('p', {}, error.message),
        el('p', {}, el('a', { href: '#/' }, 'Back to the trace list'))));
    document.body.dataset.ready = 'error';
  }
}

window.addEventListener('hashchange', route);
route();
