// Small DOM helpers. Every string that came from Redis reaches the DOM through textContent (or
// a property such as `title`), never as HTML: these helpers are the only way the page writes text.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new element with an optional class and text (as text, never parsed). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Sets a node's text only when it differs (no needless style or layout work). */
export function setText(node, text) {
  const t = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== t) node.textContent = t;
}

/** A short message at the bottom of the page for a few seconds. */
export function toast(message) {
  const t = $('toast');
  t.textContent = message;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 4000);
}
