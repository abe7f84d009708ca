// dashboard.js - messages per hour (sent, failed, refused) over the last
// 24 hours, connectors and their state, transfers in flight with their
// progress (refreshed every second), certificates expiring within 30
// days, failed messages that need someone.
import * as api from './api.js';
import { h, svg, replace, table, fmtTime, fmtBytes, stateBadge } from './dom.js';

const KINDS = ['sent', 'failed', 'refused'];

function chart(hours) {
  const W = 720, H = 220, L = 40, B = 30, T = 10;
  const max = Math.max(1, ...hours.map((x) => x.sent + x.failed + x.refused));
  const bw = (W - L - 10) / hours.length;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const bars = [];
  hours.forEach((x, i) => {
    let base = 0;
    for (const k of KINDS) {
      if (x[k] > 0) {
        bars.push(svg('rect', { class: `c-${k}`, x: L + i * bw + 2, width: Math.max(1, bw - 4),
          y: y(base + x[k]), height: y(base) - y(base + x[k]) },
        svg('title', null, `${new Date(x.start).getHours()}:00 ${k} ${x[k]}`)));
        base += x[k];
      }
    }
    if (i % 3 === 0) {
      bars.push(svg('text', { x: L + i * bw + bw / 2, y: H - 10, 'text-anchor': 'middle', 'font-size': 11 },
        `${String(new Date(x.start).getHours()).padStart(2, '0')}h`));
    }
  });
  const axis = [0, max].map((v) => svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11 }, String(v)));
  return svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-labelledby': 'chart-title' },
  svg('title', { id: 'chart-title' }, 'Messages per hour, last 24 hours'),
  svg('line', { x1: L, x2: W - 10, y1: H - B, y2: H - B, stroke: '#59636e' }), ...axis, ...bars);
}

function hoursTable(hours) {
  return h('details', null, h('summary', null, 'The numbers'),
    table(['Hour', 'Sent', 'Failed', 'Refused'], hours.map((x) => h('tr', null,
      h('td', null, fmtTime(x.start).slice(0, 16)), h('td', { class: 'num' }, String(x.sent)),
      h('td', { class: 'num' }, String(x.failed)), h('td', { class: 'num' }, String(x.refused)))),
    { caption: 'Messages per hour', captionHidden: true, class: 'hours' }));
}

export function transfersView(list) {
  if (!list.length) return h('p', { id: 'no-transfers' }, 'Nothing is moving right now.');
  return table(['Message', 'Connector', 'Direction', 'Progress', 'Rate'], list.map((t) => {
    const total = t.bytes_total;
    const label = `${fmtBytes(t.bytes_done)}${total ? ` of ${fmtBytes(total)}` : ''}`;
    return h('tr', { class: 'transfer', dataset: { message: t.message_id } },
      h('td', null, h('a', { href: `#/messages/${t.message_id}` }, h('code', null, t.message_id.slice(0, 13)))),
      h('td', null, t.connector), h('td', null, t.direction),
      h('td', null, h('progress', { class: 'progress', max: total || null, value: total ? t.bytes_done : null,
        'aria-label': `${t.direction} ${t.message_id.slice(0, 8)}: ${label}` }), h('span', { class: 'help' }, label)),
      h('td', null, `${fmtBytes(t.rate_bps)}/s`));
  }), { caption: 'Transfers in flight', captionHidden: true, class: 'transfers' });
}

function connState(c) {
  if (c.state === 'failing') return [stateBadge('failing'), ` since ${fmtTime(c.since)}`];
  if (c.state === 'left_out') return [stateBadge('left_out'), ' could not be opened'];
  return stateBadge(c.state);
}

export async function render(main, ctx) {
  ctx.title('Dashboard');
  const d = await api.get('/api/v1/dashboard');
  const transfers = h('div', { id: 'transfers' }, transfersView(d.transfers || []));
  const totals = KINDS.map((k) => [k, d.hours.reduce((s, x) => s + x[k], 0)]);
  replace(main,
    h('h1', null, 'Dashboard'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-hours' },
        h('h2', { id: 'h-hours' }, 'Messages per hour'),
        h('p', { class: 'legend', id: 'totals' }, totals.map(([k, n]) =>
          h('span', null, h('span', { class: `swatch c-${k}` }), `${k}: ${n}`))),
        chart(d.hours), hoursTable(d.hours)),
      h('section', { class: 'card', 'aria-labelledby': 'h-conns' },
        h('h2', { id: 'h-conns' }, 'Connectors'),
        d.connectors.length ? table(['Name', 'Type', 'State'], d.connectors.map((c) => h('tr', null,
          h('td', null, ctx.can('flow.read') ? h('a', { href: `#/flows/${api.enc(c.name)}` }, c.name) : c.name),
          h('td', null, c.type), h('td', { class: 'conn-state' }, connState(c)))),
        { caption: 'Connectors', captionHidden: true, class: 'connectors' }) : h('p', null, 'No connector yet.'))),
    h('section', { class: 'card', 'aria-labelledby': 'h-transfers' },
      h('h2', { id: 'h-transfers' }, 'Transfers in flight'), transfers),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-certs' },
        h('h2', { id: 'h-certs' }, 'Certificates expiring within 30 days'),
        d.certificates_expiring.length ? table(['Owner', 'Subject', 'Expires', 'Days left'],
          d.certificates_expiring.map((c) => h('tr', null, h('td', null, c.owner), h('td', { class: 'wrap' }, c.subject),
            h('td', null, c.not_after), h('td', { class: 'num' }, String(c.days_left)))),
          { caption: 'Expiring certificates', captionHidden: true, class: 'expiring' }) : h('p', null, 'None.')),
      h('section', { class: 'card', 'aria-labelledby': 'h-failed' },
        h('h2', { id: 'h-failed' }, 'Failed messages'),
        d.failed.length ? h('ul', { id: 'failed-list' }, d.failed.map((m) => h('li', null,
          h('a', { href: `#/messages/${m.id}` }, m.filename || m.id), ' ', stateBadge(m.state), ' ',
          h('span', { class: 'help' }, fmtTime(m.updated_at))))) : h('p', null, 'None.'),
        d.failed.length ? h('p', null, h('a', { href: '#/messages?state=failed' }, 'All failed messages')) : null)));
  ctx.every(1000, async () => {
    try {
      const t = await api.get('/api/v1/transfers');
      if (ctx.live()) replace(transfers, transfersView(t.transfers || []));
    } catch (e) { /* the next tick tries again; a 401 signs out */ }
  });
}
