// flows.js - the flows: connectors and links drawn as a graph, the
// connector list, one connector (its config with secrets hidden, Test
// connection with the stage that failed, the SFTP host key to confirm,
// OAuth authorization), and add / edit / remove through the flow
// document (PUT /api/v1/flows: the server's own validation).
import * as api from './api.js';
import { h, svg, replace, notice, button, table } from './dom.js';
import { connectorForm } from './form.js';

let typesCache;
async function connectorTypes() {
  if (typesCache !== undefined) return typesCache;
  try {
    typesCache = (await api.get('/api/v1/connector-types')).types || null;
  } catch (e) {
    typesCache = null;      // not on this server: the JSON form
  }
  return typesCache;
}

// Columns: sources (no link in), then by distance along the links.
function layout(conns, links) {
  const depth = {};
  const into = new Set(links.map(([, d]) => d));
  for (const c of conns) depth[c.name] = into.has(c.name) ? 1 : 0;
  for (let i = 0; i < conns.length; i++) {
    for (const [s, d] of links) {
      if (depth[s] !== undefined && depth[d] !== undefined && depth[d] <= depth[s] && s !== d) depth[d] = Math.min(depth[s] + 1, conns.length);
    }
  }
  const cols = {};
  for (const c of conns) (cols[depth[c.name]] = cols[depth[c.name]] || []).push(c);
  return cols;
}

function graph(conns, links) {
  const cols = layout(conns, links);
  const colKeys = Object.keys(cols).map(Number).sort((a, b) => a - b);
  const NW = 170, NH = 44, GX = 90, GY = 24;
  const pos = {};
  colKeys.forEach((k, ci) => cols[k].forEach((c, ri) => {
    pos[c.name] = { x: 20 + ci * (NW + GX), y: 20 + ri * (NH + GY), c };
  }));
  const rows = Math.max(1, ...colKeys.map((k) => cols[k].length));
  const W = 40 + colKeys.length * (NW + GX) - GX, H = 40 + rows * (NH + GY) - GY;
  const edges = links.filter(([s, d]) => pos[s] && pos[d]).map(([s, d]) => {
    const a = pos[s], b = pos[d];
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
    const back = x2 <= x1;
    const path = back ? `M${a.x + NW / 2} ${a.y + NH} C ${a.x + NW / 2} ${a.y + NH + 40}, ${b.x + NW / 2} ${b.y + NH + 40}, ${b.x + NW / 2} ${b.y + NH}`
      : `M${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}`;
    return svg('path', { class: 'edge', d: path, 'marker-end': 'url(#arrow)' },
      svg('title', null, `${s} to ${d}`));
  });
  const nodes = Object.values(pos).map(({ x, y, c }) => svg('a', { href: `#/flows/${encodeURIComponent(c.name)}`,
    class: 'node', 'aria-label': `${c.name} (${c.type})` },
  svg('rect', { x, y, width: NW, height: NH, rx: 6 }),
  svg('text', { x: x + 10, y: y + 18 }, c.name.length > 20 ? `${c.name.slice(0, 19)}…` : c.name),
  svg('text', { x: x + 10, y: y + 35, 'font-size': 11, fill: '#4f5863' }, c.type)));
  return svg('svg', { class: 'graph', id: 'flow-graph', viewBox: `0 0 ${Math.max(W, 300)} ${H + 40}`,
    role: 'group', 'aria-label': 'The flow: connectors and their links' },
  svg('defs', null, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M0 0L10 5L0 10z', fill: '#59636e' }))),
  ...edges, ...nodes);
}

async function overview(main, ctx) {
  ctx.title('Flows');
  const d = await api.get('/api/v1/connectors');
  const conns = d.connectors || [];
  const links = d.links || [];
  replace(main, h('h1', null, 'Flows'),
    ctx.can('flow.write') ? h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/flows/new', id: 'add-connector' }, 'Add a connector')) : null,
    conns.length ? graph(conns, links) : h('p', null, 'No connector yet.'),
    h('h2', null, 'Connectors'),
    table(['Name', 'Type', 'Goes on to'], conns.map((c) => h('tr', null,
      h('td', null, h('a', { href: `#/flows/${api.enc(c.name)}` }, c.name)), h('td', null, c.type),
      h('td', null, links.filter(([s]) => s === c.name).map(([, t]) => t).join(', ')))),
    { caption: 'Connectors', captionHidden: true, class: 'connector-list' }));
}

function configView(cfg) {
  const rows = Object.entries(cfg || {}).map(([k, v]) => {
    const secret = v && typeof v === 'object' && 'sealed' in v;
    return h('tr', null, h('th', { scope: 'row' }, k),
      h('td', { class: 'wrap' }, secret ? h('em', null, 'set (hidden)') : (typeof v === 'object' ? JSON.stringify(v) : String(v))));
  });
  return h('div', { class: 'table-wrap' }, h('table', { class: 'config' },
    h('caption', { class: 'sr-only' }, 'Configuration'), h('tbody', null, rows)));
}

// Save the flow document with conn replaced (or removed: conn null).
async function saveFlow(oldName, conn, linksOf) {
  const doc = await api.get('/api/v1/flows');
  doc.connectors = (doc.connectors || []).filter((c) => c.name !== oldName);
  doc.links = (doc.links || []).filter(([s, d]) => !conn ? (s !== oldName && d !== oldName) : true);
  if (conn) doc.connectors.push(conn);
  if (linksOf) doc.links.push(...linksOf);
  return api.put('/api/v1/flows', doc);
}

async function detail(main, ctx, name) {
  const c = await api.get(`/api/v1/connectors/${api.enc(name)}`);
  ctx.title(c.name);
  const types = await connectorTypes();
  const type = types && types.find((t) => t.name === c.type);
  // the type's declared actions (GET /api/v1/connector-types), each only
  // for a role that holds its permission
  const has = (verb) => {
    const a = type && (type.actions || []).find((x) => x.verb === verb);
    return !!a && ctx.can(a.permission);
  };
  const act = (verb) => `/api/v1/connectors/${api.enc(c.name)}/actions/${verb}`;
  const out = h('div', { id: 'connector-msg', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  if (has('test')) {
    actions.append(button('Test connection', async (ev) => {
      ev.target.disabled = true;
      replace(out, notice('info', 'Testing…'));
      try {
        await api.post(act('test'));
        replace(out, notice('ok', 'The connection works.'));
      } catch (e) {
        replace(out, notice('error', `The test failed: ${e.message}`));
      } finally { ev.target.disabled = false; }
    }, { id: 'test-connection' }));
  }
  if (has('hostkey.capture')) {
    actions.append(button('Check the host key', async () => {
      replace(out, notice('info', 'Asking the server for its key…'));
      try {
        const k = await api.get(act('hostkey.capture'));
        const trust = has('hostkey.accept') ? button('Trust this key', async () => {
          try {
            await api.post(act('hostkey.accept'), { fingerprint: k.fingerprint });
            replace(out, notice('ok', `The host key ${k.fingerprint} is now pinned.`));
          } catch (e) { replace(out, notice('error', e.message)); }
        }, { id: 'trust-hostkey' }) : null;
        replace(out, notice('info', h('p', null, `The server presents a ${k.type || ''} key: `, h('code', { id: 'hostkey-fp' }, k.fingerprint)),
          h('p', null, 'Compare it with what the server\'s owner says before you trust it.'), trust));
      } catch (e) { replace(out, notice('error', e.message)); }
    }, { id: 'check-hostkey', class: 'secondary' }));
  }
  if (has('oauth.authorize')) {
    actions.append(button('Authorize (OAuth)', async () => {
      try {
        const r = await api.post(act('oauth.authorize'));
        replace(out, notice('info', 'Continue at the provider: ', h('a', { href: r.authorize_url, id: 'oauth-go', rel: 'noreferrer' }, 'open the authorization page')));
      } catch (e) { replace(out, notice('error', e.message)); }
    }, { id: 'oauth-authorize', class: 'secondary' }));
  }
  if (ctx.can('flow.write')) {
    actions.append(h('a', { class: 'button secondary', href: `#/flows/${api.enc(c.name)}?edit=1`, id: 'edit-connector' }, 'Edit'),
      button('Remove', async () => {
        if (!window.confirm(`Remove ${c.name} and its links?`)) return;
        try {
          await saveFlow(c.name, null);
          ctx.go('#/flows');
        } catch (e) { replace(out, notice('error', e.message)); }
      }, { class: 'danger', id: 'remove-connector' }));
  }
  if (ctx.query.get('edit') && ctx.can('flow.write')) return editor(main, ctx, c);
  replace(main, h('h1', null, c.name), h('p', null, `Type: ${c.type}. Goes on to: ${(c.next || []).join(', ') || 'nothing'}.`),
    actions, out, h('h2', null, 'Configuration'), configView(c.config),
    h('p', null, h('a', { href: '#/flows' }, 'Back to the flows')));
}

async function editor(main, ctx, conn) {
  const types = await connectorTypes();
  const f = connectorForm(types, conn);
  let links = [];
  let linkRow = null;
  if (!conn) {
    const d = await api.get('/api/v1/connectors');
    const opts = (d.connectors || []).map((c) => c.name);
    linkRow = h('fieldset', { class: 'field' }, h('legend', null, 'Links'),
      h('label', { for: 'link-from' }, 'Messages come from'),
      h('select', { id: 'link-from' }, h('option', { value: '' }, '(none)'), opts.map((o) => h('option', { value: o }, o))),
      h('label', { for: 'link-to' }, 'and go on to'),
      h('select', { id: 'link-to' }, h('option', { value: '' }, '(none)'), opts.map((o) => h('option', { value: o }, o))));
    f.form.insertBefore(linkRow, f.form.lastChild);
  }
  f.form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const c = f.read();
    if (!c) return;
    if (linkRow) {
      const from = linkRow.querySelector('#link-from').value, to = linkRow.querySelector('#link-to').value;
      links = [from && [from, c.name], to && [c.name, to]].filter(Boolean);
    }
    try {
      await saveFlow(conn ? conn.name : null, c, links);
      ctx.go(`#/flows/${api.enc(c.name)}`);
    } catch (e) {
      f.showError(e.message);
    }
  });
  replace(main, h('h1', null, conn ? `Edit ${conn.name}` : 'Add a connector'), f.form,
    h('p', null, h('a', { href: conn ? `#/flows/${api.enc(conn.name)}` : '#/flows' }, 'Cancel')));
}

export async function render(main, ctx) {
  if (ctx.path === '/flows/new') {
    ctx.title('Add a connector');
    if (!ctx.can('flow.write')) { replace(main, h('h1', null, 'Not allowed'), h('p', null, 'Your role may not change flows.')); return; }
    return editor(main, ctx, null);
  }
  if (ctx.params[0]) return detail(main, ctx, ctx.params[0]);
  return overview(main, ctx);
}
