// dom.js - building the page without HTML strings. Every text a partner,
// a user or the server controls goes in as a text node (never as markup,
// never a string parsed as markup), so it renders as text (R12, XSS).
const SVGNS = 'http://www.w3.org/2000/svg';

function put(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' && 'value' in el) {
      el.value = v;
    } else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') {
      el[k] = !!v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h('div', {class: 'x', on: {click: fn}}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  put(el, attrs);
  return append(el, children);
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  put(el, attrs);
  return append(el, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  return append(clear(el), children);
}

let uid = 0;
export function newId(prefix) {
  uid += 1;
  return `${prefix || 'f'}-${uid}`;
}

// A labelled field: returns {row, input}. opts: type, value, required,
// autocomplete, help, options (for select), name.
export function field(label, opts = {}) {
  const id = newId('fld');
  const helpId = opts.help ? `${id}-help` : null;
  const errId = `${id}-err`;
  let input;
  if (opts.options) {
    input = h('select', { id, name: opts.name || id, 'aria-describedby': helpId },
      opts.options.map((o) => {
        const [v, t] = Array.isArray(o) ? o : [o, o];
        return h('option', { value: v, selected: String(v) === String(opts.value ?? '') }, t);
      }));
  } else if (opts.type === 'textarea') {
    input = h('textarea', { id, name: opts.name || id, rows: opts.rows || 4,
      'aria-describedby': helpId, required: opts.required });
    if (opts.value !== undefined && opts.value !== null) input.value = opts.value;
  } else if (opts.type === 'checkbox') {
    input = h('input', { id, type: 'checkbox', name: opts.name || id,
      checked: !!opts.value, 'aria-describedby': helpId });
  } else {
    input = h('input', { id, type: opts.type || 'text', name: opts.name || id,
      value: opts.value ?? '', required: opts.required,
      autocomplete: opts.autocomplete || 'off', inputmode: opts.inputmode,
      placeholder: opts.placeholder, 'aria-describedby': helpId,
      accept: opts.accept, multiple: opts.multiple });
  }
  const err = h('p', { class: 'field-error', id: errId, hidden: true });
  const row = h('div', { class: ['field', opts.type === 'checkbox' && 'check'] },
    opts.type === 'checkbox' ? [input, h('label', { for: id }, label)]
                             : [h('label', { for: id }, label), input],
    opts.help ? h('p', { class: 'help', id: helpId }, opts.help) : null,
    err);
  row.input = input;
  row.setError = (msg) => {
    err.textContent = msg || '';
    err.hidden = !msg;
    const desc = [helpId, msg ? errId : null].filter(Boolean).join(' ');
    if (desc) input.setAttribute('aria-describedby', desc);
    else input.removeAttribute('aria-describedby');
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };
  return row;
}

export function button(text, onclick, attrs = {}) {
  return h('button', Object.assign({ type: 'button', on: { click: onclick } }, attrs), text);
}

// A message box: kind 'error' | 'ok' | 'info'.
export function notice(kind, ...text) {
  return h('div', { class: ['notice', kind], role: kind === 'error' ? 'alert' : 'status' }, ...text);
}

export function announce(text) {
  const live = document.getElementById('live');
  if (live) live.textContent = text;
}

// ---- formatting --------------------------------------------------------

export function fmtTime(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
         `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtBytes(n) {
  n = Number(n || 0);
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function table(headers, rows, opts = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: opts.class },
      opts.caption ? h('caption', { class: opts.captionHidden ? 'sr-only' : null }, opts.caption) : null,
      h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows)));
}

export function stateBadge(state) {
  return h('span', { class: ['badge', `st-${String(state).replace(/[^a-z_]/g, '')}`] }, state);
}
