// message.js - one message: its hops (the timeline of where it went),
// its events, its AS2 receipts (MDN: disposition, MIC, signature verdict,
// the raw MDN), its payload (permission-checked and audited by the
// server), resend and erase.
import * as api from './api.js';
import { h, replace, notice, button, table, fmtTime, fmtBytes, stateBadge } from './dom.js';

// What the AS2 connector recorded when it checked the MDN, e.g.
// "MDN processed (signed), MIC abc=, sha-256".
function verdict(receipt) {
  const r = String(receipt || '');
  if (!/^MDN /.test(r)) return null;
  const disp = (r.match(/^MDN ([a-z/-]+)/) || [])[1] || '';
  const mic = (r.match(/MIC (.+)$/) || [])[1] || '';
  return { disposition: disp, signed: /\(signed\)/.test(r), mic: mic || 'none' };
}

export async function render(main, ctx) {
  const id = ctx.params[0];
  const m = await api.get(`/api/v1/messages/${id}`);
  ctx.title(m.filename || m.id);
  const msg = h('div', { id: 'message-msg', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  if (ctx.can('payload.read') && m.state !== 'erased' && m.state !== 'refused') {
    actions.append(h('a', { class: 'button secondary', id: 'download-payload',
      href: `/api/v1/messages/${m.id}/payload`, download: m.filename || `${m.id}.bin` }, 'Download payload'));
  }
  if (ctx.can('message.resend')) {
    actions.append(button('Resend', async () => {
      try {
        const r = await api.post(`/api/v1/messages/${m.id}/resend`);
        replace(msg, notice('ok', `Requeued (${r.hops} hop${r.hops === 1 ? '' : 's'}).`));
      } catch (e) {
        replace(msg, notice('error', `Not resent: ${e.message}`));
      }
    }, { id: 'resend' }));
  }
  if (ctx.can('message.erase') && m.state !== 'erased') {
    actions.append(button('Erase payload', async () => {
      if (!window.confirm('Erase this payload for good? The message record stays.')) return;
      await api.post(`/api/v1/messages/${m.id}/erase`);
      ctx.refresh();
    }, { class: 'danger', id: 'erase' }));
  }
  const hops = (m.hops || []).map((x) => h('tr', null,
    h('td', null, x.connector), h('td', null, stateBadge(x.state)), h('td', { class: 'num' }, String(x.attempts)),
    h('td', { class: 'wrap' }, x.last_error || ''), h('td', { class: 'wrap' }, x.receipt || '')));
  const events = h('ol', { class: 'timeline', id: 'events' }, (m.events || []).map((e) =>
    h('li', { class: e.level }, h('time', null, fmtTime(e.at)), ' ', h('strong', null, e.level), ' ', e.text)));
  const verdicts = (m.hops || []).map((x) => verdict(x.receipt)).filter(Boolean);
  const receipts = (m.receipts || []).map((r, i) => {
    const v = r.direction === 'received' ? verdicts[0] : null;
    return h('tr', null, h('td', null, r.direction), h('td', null, fmtTime(r.at)),
      h('td', { class: 'wrap' }, r.mdn_message_id || ''),
      h('td', null, v ? v.disposition : (r.direction === 'sent' ? 'sent by us' : '')),
      h('td', null, v ? (v.signed ? 'signed, signature verified' : 'unsigned') : ''),
      h('td', { class: 'wrap' }, v ? v.mic : ''),
      h('td', null, h('a', { href: `/api/v1/messages/${m.id}/receipts/${r.n}`, download: `mdn-${m.id.slice(0, 8)}-${i + 1}.eml`,
        class: 'raw-mdn' }, 'Raw MDN')));
  });
  replace(main,
    h('h1', null, m.filename || '(no file name)'),
    h('dl', { class: 'kv card', id: 'message-summary' },
      h('dt', null, 'State'), h('dd', null, stateBadge(m.state)),
      h('dt', null, 'Id'), h('dd', null, h('code', null, m.id)),
      h('dt', null, 'Source'), h('dd', null, m.source),
      h('dt', null, 'Size'), h('dd', null, fmtBytes(m.size)),
      h('dt', null, 'SHA-256'), h('dd', null, h('code', null, m.sha256 || '')),
      h('dt', null, 'Received'), h('dd', null, fmtTime(m.created_at)),
      h('dt', null, 'Last change'), h('dd', null, fmtTime(m.updated_at))),
    actions, msg,
    h('h2', null, 'Hops'),
    table(['Connector', 'State', 'Attempts', 'Last error', 'Receipt'], hops, { caption: 'Hops of the message', captionHidden: true, class: 'hops' }),
    h('h2', null, 'Receipts (MDN)'),
    receipts.length ? table(['Direction', 'At', 'MDN Message-ID', 'Disposition', 'Signature', 'MIC', ''], receipts,
      { caption: 'AS2 receipts', captionHidden: true, class: 'receipts' }) : h('p', null, 'No AS2 receipt.'),
    h('h2', null, 'Events'), events,
    h('p', null, h('a', { href: '#/messages' }, 'Back to the messages')));
}
