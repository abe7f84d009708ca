// admin.js - administration: users (role, MFA state, disable, reset),
// API tokens (create shows the token once, list, revoke), sessions (list,
// revoke), sign-in settings and OIDC, the audit trail (filter, pages,
// Verify: the first break). Each tab shows only what the role may do;
// the server checks every call anyway.
import * as api from './api.js';
import { h, field, replace, notice, button, table, fmtTime } from './dom.js';

const ROLES = ['admin', 'operator', 'auditor', 'viewer'];
const TABS = [
  ['users', 'Users', 'user.read'], ['tokens', 'API tokens', 'token.read'],
  ['sessions', 'Sessions', 'session.read'], ['settings', 'Sign-in and OIDC', 'settings.read'],
  ['audit', 'Audit trail', 'audit.read'],
];

function once(label, secret) {
  return notice('ok', label, h('p', { class: 'secret-once', id: 'shown-once' }, h('code', null, secret)),
    h('p', null, 'It is shown only now: copy it. The server keeps only a hash.'));
}

async function users(box, ctx, note) {
  const list = (await api.get('/api/v1/users')).users || [];
  const msg = h('div', { id: 'admin-msg', 'aria-live': 'polite' }, note || null);
  const write = ctx.can('user.write');
  const act = (name, body, what) => async () => {
    try {
      const r = await api.put(`/api/v1/users/${api.enc(name)}`, body);
      await users(box, ctx, r.one_time_password ? once(`One-time password for ${name}:`, r.one_time_password)
        : notice('ok', `${name}: ${what}.`));
    } catch (e) { replace(msg, notice('error', e.message)); }
  };
  const rows = list.map((u) => h('tr', { dataset: { user: u.name } },
    h('td', null, u.name),
    h('td', null, write ? h('select', { 'aria-label': `Role of ${u.name}`, class: 'role',
      on: { change: (ev) => act(u.name, { role: ev.target.value }, `role ${ev.target.value}`)() } },
    ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r))) : u.role),
    h('td', null, u.mfa ? 'TOTP' : 'none'), h('td', null, u.disabled ? 'disabled' : (u.must_change ? 'must change password' : 'active')),
    h('td', null, write ? h('div', { class: 'actions' },
      button(u.disabled ? 'Enable' : 'Disable', act(u.name, { disabled: !u.disabled }, u.disabled ? 'enabled' : 'disabled'), { class: 'secondary' }),
      button('Reset password', act(u.name, { reset_password: true }, 'password reset'), { class: 'secondary' }),
      u.mfa ? button('Reset MFA', act(u.name, { reset_mfa: true }, 'MFA reset'), { class: 'secondary' }) : null,
      button('Delete', async () => {
        if (!window.confirm(`Delete ${u.name}? Their tokens stop working.`)) return;
        try { await api.del(`/api/v1/users/${api.enc(u.name)}`); await users(box, ctx, notice('ok', `${u.name} was deleted.`)); } catch (e) { replace(msg, notice('error', e.message)); }
      }, { class: 'danger' })) : '')));
  let add = null;
  if (write) {
    const name = field('New user name', { autocomplete: 'off' });
    const role = field('Role', { options: ROLES, value: 'viewer' });
    add = h('form', { class: 'card', id: 'add-user', novalidate: true }, h('h2', null, 'Add a user'),
      h('div', { class: 'row' }, name, role), h('button', { type: 'submit' }, 'Add user'));
    add.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const r = await api.post('/api/v1/users', { name: name.input.value.trim(), role: role.input.value });
        await users(box, ctx, once(`${r.name} was added. One-time password (changed at the first sign-in):`, r.one_time_password));
      } catch (e) { name.setError(e.message); }
    });
  }
  replace(box, msg, table(['Name', 'Role', 'Second factor', 'State', ''], rows,
    { caption: 'Users', captionHidden: true, class: 'users' }), add);
}

async function tokens(box, ctx) {
  const list = (await api.get('/api/v1/tokens')).tokens || [];
  const msg = h('div', { id: 'admin-msg', 'aria-live': 'polite' });
  const write = ctx.can('token.write');
  const rows = list.map((t) => h('tr', null, h('td', null, t.name), h('td', null, t.role), h('td', null, t.owner || ''),
    h('td', null, fmtTime(t.created_at)), h('td', null, fmtTime(t.expires_at)), h('td', null, fmtTime(t.last_used_at)),
    h('td', null, t.revoked_at ? `revoked ${fmtTime(t.revoked_at)}` : (write ? button('Revoke', async () => {
      try { await api.del(`/api/v1/tokens/${api.enc(t.id)}`); tokens(box, ctx); } catch (e) { replace(msg, notice('error', e.message)); }
    }, { class: 'secondary', 'aria-label': `Revoke ${t.name}` }) : 'active'))));
  let add = null;
  if (write) {
    const name = field('Token name', { autocomplete: 'off', help: 'What uses it, e.g. erp-upload.' });
    const role = field('Role', { options: ROLES, value: 'viewer', help: 'At most your own; it acts as you.' });
    const days = field('Valid for (days)', { type: 'number', value: '90' });
    add = h('form', { class: 'card', id: 'add-token', novalidate: true }, h('h2', null, 'Create an API token'),
      h('div', { class: 'row' }, name, role, days), h('button', { type: 'submit' }, 'Create token'));
    add.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const r = await api.post('/api/v1/tokens', { name: name.input.value.trim(), role: role.input.value, days: Number(days.input.value) });
        await tokens(box, ctx);
        replace(box.querySelector('#admin-msg'), once('The new token:', r.token));
      } catch (e) { name.setError(e.message); }
    });
  }
  replace(box, msg, table(['Name', 'Role', 'Owner', 'Created', 'Expires', 'Last used', ''], rows,
    { caption: 'API tokens', captionHidden: true, class: 'tokens' }), add);
}

async function sessions(box, ctx) {
  const list = (await api.get('/api/v1/sessions')).sessions || [];
  const msg = h('div', { id: 'admin-msg', 'aria-live': 'polite' });
  const rows = list.map((s) => h('tr', null, h('td', null, String(s.user_id)), h('td', null, s.address || ''),
    h('td', null, s.mfa ? 'yes' : 'no'), h('td', null, fmtTime(s.created_at)), h('td', null, fmtTime(s.last_seen_at)),
    h('td', null, s.current ? 'yours, this one' : (ctx.can('session.write') ? button('Revoke', async () => {
      try { await api.del(`/api/v1/sessions/${api.enc(s.handle)}`); sessions(box, ctx); } catch (e) { replace(msg, notice('error', e.message)); }
    }, { class: 'secondary' }) : ''))));
  replace(box, msg, table(['User id', 'From', 'Second factor', 'Started', 'Last used', ''], rows,
    { caption: 'Sessions', captionHidden: true, class: 'sessions' }));
}

const SETTINGS = [
  ['mfa_required_admin', 'Administrators must use TOTP', [['', '(default: yes)'], 'true', 'false']],
  ['mfa_required_all', 'Everyone must use TOTP', [['', '(default: no)'], 'true', 'false']],
  ['session_idle_minutes', 'Sign out after this many idle minutes', null],
  ['session_absolute_minutes', 'Sessions end after this many minutes', null],
  ['auth_forms', 'Allowed sign-in forms (password, token, oidc, client_cert)', null],
];
const OIDC = ['oidc_issuer', 'oidc_client_id', 'oidc_redirect_uri', 'oidc_role_claim', 'oidc_role_map', 'oidc_default_role'];

async function settings(box, ctx) {
  const s = (await api.get('/api/v1/settings')).settings || {};
  const write = ctx.can('settings.write');
  const forms = SETTINGS.map(([key, label, opts]) => {
    const f = field(label, { value: s[key] || '', options: opts || undefined, name: key });
    if (!write) f.input.disabled = true;
    return f;
  });
  const form = h('form', { class: 'card', id: 'settings-form', novalidate: true },
    h('h2', null, 'Sign-in'), ...forms, write ? h('button', { type: 'submit' }, 'Save') : null,
    h('div', { id: 'settings-msg', 'aria-live': 'polite' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = form.querySelector('#settings-msg');
    let n = 0;
    for (const [i, [key]] of SETTINGS.entries()) {
      const v = forms[i].input.value.trim();
      forms[i].setError('');
      if (v === '' || v === (s[key] || '')) continue;
      try { await api.put(`/api/v1/settings/${key}`, { value: v }); n += 1; s[key] = v; } catch (e) { forms[i].setError(e.message); }
    }
    replace(out, notice('ok', `${n} setting${n === 1 ? '' : 's'} changed.`));
  });
  const oidc = h('section', { class: 'card', id: 'oidc' }, h('h2', null, 'Single sign-on (OIDC)'),
    s.oidc_issuer ? h('dl', { class: 'kv' }, OIDC.filter((k) => s[k]).map((k) => [h('dt', null, k.replace('oidc_', '')), h('dd', null, s[k])]),
      h('dt', null, 'client secret'), h('dd', null, s.oidc_client_secret ? 'set (hidden)' : 'none'))
      : h('p', null, 'Not configured.'),
    h('p', { class: 'help' }, 'Changed with `wharf oidc configure` on the server (the client secret is read from a file there).'));
  replace(box, form, oidc);
}

async function audit(box, ctx) {
  const after = Number(ctx.query.get('after') || 0);
  const page = (await api.get(`/api/v1/audit${api.qs({ after, limit: 100 })}`)).entries || [];
  const filter = field('Filter this page', { value: ctx.query.get('filter') || '', help: 'Actor, action, target or detail.' });
  const body = h('tbody');
  const draw = () => {
    const f = filter.input.value.trim().toLowerCase();
    replace(body, page.filter((e) => !f || [e.actor, e.action, e.target, e.detail, e.address].join(' ').toLowerCase().includes(f))
      .map((e) => h('tr', null, h('td', { class: 'num' }, String(e.seq)), h('td', null, fmtTime(e.at)), h('td', null, e.actor),
        h('td', null, e.action), h('td', { class: 'wrap' }, e.target || ''), h('td', { class: 'wrap' }, e.detail || ''))));
  };
  filter.input.addEventListener('input', draw);
  draw();
  const result = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const last = page.length ? page[page.length - 1].seq : after;
  replace(box, h('div', { class: 'actions' }, button('Verify the chain', async () => {
    replace(result, notice('info', 'Verifying…'));
    try {
      const v = await api.get('/api/v1/audit/verify');
      replace(result, v.intact ? notice('ok', `Intact: ${v.entries} entries, ${v.checkpoints} signed checkpoints.`)
        : notice('error', `Broken at entry ${v.first_bad}: ${v.problem}`));
    } catch (e) { replace(result, notice('error', e.message)); }
  }, { id: 'verify' })), result, filter,
  h('div', { class: 'table-wrap' }, h('table', { class: 'audit' }, h('caption', { class: 'sr-only' }, 'Audit entries'),
    h('thead', null, h('tr', null, ['Seq', 'At', 'Actor', 'Action', 'Target', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))), body)),
  h('nav', { class: 'pager', 'aria-label': 'Pages' },
    after ? h('a', { class: 'button secondary', href: '#/admin/audit' }, 'First') : null,
    page.length === 100 ? h('a', { class: 'button secondary', id: 'audit-next', href: `#/admin/audit?after=${last}` }, 'Next') : null));
}

const VIEWS = { users, tokens, sessions, settings, audit };

export async function render(main, ctx) {
  const tabs = TABS.filter(([, , perm]) => ctx.can(perm));
  if (!tabs.length) { replace(main, h('h1', null, 'Not allowed'), h('p', null, 'Your role has no administration.')); return; }
  const which = ctx.params[0] && tabs.some(([k]) => k === ctx.params[0]) ? ctx.params[0] : tabs[0][0];
  const label = tabs.find(([k]) => k === which)[1];
  ctx.title(label);
  const box = h('div', { id: `admin-${which}` });
  replace(main, h('h1', null, 'Administration'),
    h('nav', { class: 'tabs', 'aria-label': 'Administration' }, tabs.map(([k, t]) =>
      h('a', { href: `#/admin/${k}`, 'aria-current': k === which ? 'page' : null }, t))),
    h('h2', { class: 'sr-only' }, label), box);
  await VIEWS[which](box, ctx);
}
