// form.js - the add/edit form of a connector, generated from the type's
// declared config keys (GET /api/v1/connector-types: key, type, required,
// secret, default, help). Secret keys are write-only: never filled in
// from the server; left empty, the stored secret stays as it is. Without
// that route (older servers) the form takes the config as JSON. Either
// way the server validates exactly as `wharf flow import` does, and its
// error is shown beside the field it names.
import { h, field, notice, replace } from './dom.js';

// The option's value in the flow document from what the field holds;
// undefined: leave the key out.
function valueOf(opt, input, old) {
  if (opt.type === 'boolean') return input.checked;
  const raw = input.value;
  if (opt.secret) {
    if (raw === '') return old;            // unchanged: {"sealed": ...} stays
    return { content: raw };
  }
  if (raw.trim() === '') return undefined;
  if (opt.type === 'integer') return Number.isInteger(Number(raw)) ? Number(raw) : raw;
  if (opt.type === 'number') return Number.isFinite(Number(raw)) ? Number(raw) : raw;
  if (opt.type === 'object' || opt.type === 'array' || opt.type === 'json') {
    try { return JSON.parse(raw); } catch (e) { return raw; }
  }
  return raw;
}

// Dotted keys ("auth.token_file") are paths into nested objects.
function getPath(obj, key) {
  return key.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
}

function setPath(obj, key, v) {
  const parts = key.split('.');
  let o = obj;
  for (const k of parts.slice(0, -1)) {
    if (!o[k] || typeof o[k] !== 'object') {
      if (v === undefined) return;
      o[k] = {};
    }
    o = o[k];
  }
  if (v === undefined) delete o[parts[parts.length - 1]];
  else o[parts[parts.length - 1]] = v;
}

function shown(opt, v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// A form for one connector. types: the connector-types answer's list, or
// null (JSON mode). conn: {name, type, config} to edit, or null to add.
// Returns {form, read(): {name, type, config} | null, showError(message)}.
export function connectorForm(types, conn) {
  const typeNames = types ? types.map((t) => t.name) : ['file', 'as2', 'sftp', 'http', 'webhook'];
  const name = field('Name', { value: conn ? conn.name : '', required: true,
    help: 'Letters, digits, - and _; links and messages refer to it.' });
  const type = field('Type', { value: conn ? conn.type : typeNames[0], options: typeNames });
  if (conn) { name.input.readOnly = true; type.input.disabled = true; }
  const keysBox = h('div', { class: 'keys' });
  const top = h('div', { class: 'form-msg', 'aria-live': 'polite' });
  let fields = {};          // key -> {opt, row}
  let jsonRow = null;

  function draw() {
    fields = {};
    jsonRow = null;
    const t = types && types.find((x) => x.name === type.input.value);
    const cfg = (conn && conn.config) || {};
    if (!t) {
      jsonRow = field('Configuration (JSON)', { type: 'textarea', rows: 10,
        value: JSON.stringify(cfg, null, 2), help: 'The connector\'s "config" object as in a flow document.' });
      replace(keysBox, jsonRow);
      return;
    }
    const rows = t.options.map((opt) => {
      const label = `${opt.key}${opt.required ? ' (required)' : ''}`;
      let help = opt.help || '';
      if (opt.default !== null && opt.default !== undefined) help += ` Default: ${shown(opt, opt.default)}.`;
      if (opt.secret) help += getPath(cfg, opt.key) !== undefined ? ' A value is set; it is never shown. Leave empty to keep it.' : ' Write-only: never shown again.';
      const row = field(label, {
        options: opt.type === 'enum' && opt.values ? [['', opt.default !== undefined && opt.default !== null
          ? `(default: ${opt.default})` : '(not set)'], ...opt.values] : undefined,
        type: opt.type === 'boolean' ? 'checkbox' : opt.secret ? 'password'
          : (opt.type === 'object' || opt.type === 'array' || opt.type === 'json') ? 'textarea'
            : opt.type === 'integer' || opt.type === 'number' ? 'number' : 'text',
        value: opt.secret ? '' : (opt.type === 'boolean' ? !!(getPath(cfg, opt.key) ?? opt.default) : shown(opt, getPath(cfg, opt.key))),
        autocomplete: opt.secret ? 'new-password' : 'off', required: opt.required,
        placeholder: opt.type === 'folder' ? '/path/under/allowed_paths' : null,
        help: help.trim() || null, name: opt.key });
      row.dataset.key = opt.key;
      fields[opt.key] = { opt, row };
      return [opt, row];
    });
    const basic = rows.filter(([o]) => !o.advanced).map(([, r]) => r);
    const more = rows.filter(([o]) => o.advanced).map(([, r]) => r);
    replace(keysBox, basic, more.length ? h('details', { class: 'advanced' },
      h('summary', null, `Advanced (${more.length})`), more) : null);
  }
  type.input.addEventListener('change', draw);
  draw();

  function clearErrors() {
    replace(top);
    for (const r of [name, jsonRow, ...Object.values(fields).map((f) => f.row)]) if (r) r.setError('');
  }

  function read() {
    clearErrors();
    const n = name.input.value.trim();
    if (!n) { name.setError('A name is needed.'); name.input.focus(); return null; }
    let config = {};
    if (jsonRow) {
      try { config = JSON.parse(jsonRow.input.value || '{}'); } catch (e) {
        jsonRow.setError(`Not JSON: ${e.message}`);
        jsonRow.input.focus();
        return null;
      }
    } else {
      const old = (conn && conn.config) || {};
      // keys the form does not know (common keys, newer ones) are kept
      config = JSON.parse(JSON.stringify(old));
      for (const [k, { opt, row }] of Object.entries(fields)) {
        let v = valueOf(opt, row.input, getPath(old, k));
        if (opt.type === 'boolean' && v === Boolean(opt.default) && getPath(old, k) === undefined) v = undefined;
        setPath(config, k, v);
      }
    }
    return { name: n, type: type.input.value, config };
  }

  // The server's words: "connector 'x' (file): receive_dir ..." or
  // 'unknown key "foo"': beside that field when there is one.
  function showError(message) {
    const m = /unknown key "([^"]+)"/.exec(message) || /\):\s*([a-z][a-z0-9_.]*)\b/.exec(message);
    const key = m ? m[1] : null;
    const hit = key && (fields[key] || fields[key.split('.')[0]]);
    const target = hit ? hit.row : (jsonRow || null);
    if (target) {
      target.setError(message);
      target.input.focus();
    } else {
      replace(top, notice('error', message));
    }
  }

  const form = h('form', { class: 'card connector-form', novalidate: true }, top, name, type, keysBox,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, conn ? 'Save changes' : 'Add connector')));
  return { form, read, showError, fields: () => fields };
}
