// dom.js - builds the pages' DOM. Every string goes in as a text node or an attribute value,
// never as HTML: an event named `<script>` is shown as those characters (tests/web checks it).

/**
 * h('p', {class: 'x', onclick: f}, 'text', child, [more]) -> an element.
 * Attributes starting with `on` become listeners; `null`/`false` attributes and children are
 * skipped; strings and numbers become text nodes.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of element with children (same rules as h). */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}
