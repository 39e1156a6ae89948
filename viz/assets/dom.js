// Building DOM nodes. Span names and attributes come from whatever sent the trace, so
// they only ever become text nodes (append of a string), never HTML: nothing in a
// trace can inject markup into the page.

/** el('a', {href: '#/', class: 'x', onclick: f}, 'text', childNode, [more]) */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'style') Object.assign(node.style, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Says something to screen readers and sighted users alike, in the header. */
export function announce(text) {
  document.getElementById('status').textContent = text;
}
