// messages.js - the message list: search by text (file name, AS2
// Message-ID, partner, id prefix), state, connector, partner and time;
// keyset paging (the API's `after`: page 5,000 costs what page 1 does);
// resend of a selection.
import * as api from './api.js';
import { h, field, replace, notice, button, table, fmtTime, fmtBytes, stateBadge } from './dom.js';

const STATES = ['queued', 'processing', 'retrying', 'sent', 'failed', 'received', 'refused', 'erased'];
const PAGE = 50;

function toLocalInput(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms) - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function fromLocalInput(v) {
  return v ? String(new Date(v).getTime()) : '';
}

export async function render(main, ctx) {
  ctx.title('Messages');
  const q = ctx.query;
  const [conns, parts] = await Promise.all([
    ctx.can('flow.read') ? api.get('/api/v1/connectors') : { connectors: [] },
    ctx.can('flow.read') ? api.get('/api/v1/partners') : { partners: [] },
  ]);
  const text = field('Search', { value: q.get('q') || '', help: 'File name, AS2 Message-ID, partner, or the start of a message id', name: 'q' });
  const state = field('State', { value: q.get('state') || '', name: 'state',
    options: [['', 'any state'], ...STATES] });
  const conn = field('Connector', { value: q.get('connector') || '', name: 'connector',
    options: [['', 'any connector'], ...(conns.connectors || []).map((c) => c.name)] });
  const partner = field('Partner', { value: q.get('partner') || '', name: 'partner',
    options: [['', 'any partner'], ...(parts.partners || []).map((p) => p.name)] });
  const since = field('From', { type: 'datetime-local', value: toLocalInput(q.get('since')), name: 'since' });
  const until = field('Until', { type: 'datetime-local', value: toLocalInput(q.get('until')), name: 'until' });
  const form = h('form', { id: 'message-search', class: 'card', role: 'search', novalidate: true },
    h('div', { class: 'row' }, text, state, conn, partner),
    h('div', { class: 'row' }, since, until,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search'),
        h('a', { class: 'button secondary', href: '#/messages' }, 'Clear'))));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.go(`#/messages${api.qs({ q: text.input.value.trim(), state: state.input.value,
      connector: conn.input.value, partner: partner.input.value,
      since: fromLocalInput(since.input.value), until: fromLocalInput(until.input.value) })}`);
  });

  const params = { q: q.get('q'), state: q.get('state'), connector: q.get('connector'),
    partner: q.get('partner'), since: q.get('since'), until: q.get('until') };
  const page = await api.get(`/api/v1/messages${api.qs({ ...params, after: q.get('after'), limit: PAGE })}`);
  const msgs = page.messages || [];
  const canResend = ctx.can('message.resend');
  const picked = new Set();
  const result = h('div', { id: 'resend-result', 'aria-live': 'polite' });
  const resendBtn = canResend ? button('Resend selected', async () => {
    const ids = [...picked];
    let ok = 0;
    const refused = [];
    for (const id of ids) {
      try { await api.post(`/api/v1/messages/${id}/resend`); ok += 1; } catch (e) { refused.push(`${id.slice(0, 8)}: ${e.message}`); }
    }
    replace(result, notice(refused.length ? 'error' : 'ok',
      `${ok} of ${ids.length} requeued.`, refused.length ? h('ul', null, refused.map((r) => h('li', null, r))) : null));
  }, { id: 'resend-selected', disabled: true }) : null;
  const rows = msgs.map((m) => h('tr', null,
    canResend ? h('td', null, h('input', { type: 'checkbox', 'aria-label': `Select ${m.filename || m.id}`,
      class: 'pick', value: m.id, on: { change: (ev) => {
        if (ev.target.checked) picked.add(m.id); else picked.delete(m.id);
        resendBtn.disabled = picked.size === 0;
        resendBtn.textContent = picked.size ? `Resend selected (${picked.size})` : 'Resend selected';
      } } })) : null,
    h('td', null, fmtTime(m.created_at)),
    h('td', { class: 'wrap' }, h('a', { href: `#/messages/${m.id}`, class: 'msg-link' }, m.filename || '(no file name)')),
    h('td', null, m.source),
    h('td', { class: 'num' }, fmtBytes(m.size)),
    h('td', null, stateBadge(m.state)),
    h('td', null, h('code', null, m.id.slice(0, 13)))));
  const heads = [canResend ? h('span', { class: 'sr-only' }, 'Select') : null, 'Received', 'File', 'Source', 'Size', 'State', 'Id'].filter((x) => x !== null);
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    q.get('after') ? h('a', { class: 'button secondary', href: `#/messages${api.qs(params)}` }, 'Newest') : null,
    page.next ? h('a', { class: 'button secondary', id: 'older', href: `#/messages${api.qs({ ...params, after: page.next })}` }, 'Older') : null,
    h('span', null, msgs.length ? `${msgs.length} shown` : ''));
  replace(main, h('h1', null, 'Messages'), form,
    msgs.length ? table(heads, rows, { caption: 'Messages, newest first', captionHidden: true, class: 'messages' })
                : h('p', { id: 'no-messages' }, 'No message matches.'),
    canResend && msgs.length ? h('div', { class: 'actions' }, resendBtn) : null, result, pager);
}
