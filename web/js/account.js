// account.js - my account: who I am, my password, my second factor, my
// sessions (revoke any but this one from here; this one: sign out).
import * as api from './api.js';
import { h, field, replace, notice, button, table, fmtTime } from './dom.js';
import { enrolStep } from './login.js';

export async function render(main, ctx) {
  ctx.title('My account');
  const me = ctx.me;
  const sessions = (await api.get('/api/v1/auth/sessions')).sessions || [];
  const msg = h('div');
  const rows = sessions.map((s) => h('tr', null,
    h('td', null, fmtTime(s.created_at)), h('td', null, fmtTime(s.last_seen_at)),
    h('td', null, s.address || ''), h('td', null, s.mfa ? 'yes' : 'no'),
    h('td', null, s.current ? 'this one'
      : button('Revoke', async () => {
        await api.del(`/api/v1/auth/sessions/${api.enc(s.handle)}`);
        ctx.refresh();
      }, { class: 'secondary', 'aria-label': `Revoke the session from ${fmtTime(s.created_at)}` }))));
  const sections = [
    h('h1', null, 'My account'),
    h('dl', { class: 'kv card' },
      h('dt', null, 'User'), h('dd', null, me.user || me.name),
      h('dt', null, 'Role'), h('dd', null, me.role),
      h('dt', null, 'Two-factor sign-in'), h('dd', null, me.mfa_done ? 'used for this session' : 'not used for this session')),
    msg,
  ];
  if (me.kind === 'session') {
    const old = field('Current password', { type: 'password', autocomplete: 'current-password' });
    const pw1 = field('New password', { type: 'password', autocomplete: 'new-password',
      help: 'At least 12 characters, not your user name, not a common password.' });
    const pw2 = field('New password again', { type: 'password', autocomplete: 'new-password' });
    const form = h('form', { id: 'my-password', class: 'card', novalidate: true },
      h('h2', null, 'Change my password'), old, pw1, pw2, h('button', { type: 'submit' }, 'Change password'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      pw2.setError('');
      old.setError('');
      if (pw1.input.value !== pw2.input.value) { pw2.setError('The two passwords differ.'); return; }
      try {
        await api.check('/api/v1/auth/password', { old: old.input.value, new: pw1.input.value });
        form.reset();
        replace(msg, notice('ok', 'Your password was changed.'));
      } catch (e) {
        (e.status === 401 ? old : pw1).setError(e.status === 401 ? 'The current password is wrong.' : e.message);
      }
    });
    sections.push(form, h('section', { class: 'card' }, h('h2', null, 'Authenticator app'),
      h('p', null, 'Set up a new authenticator app. The old one stops working when you confirm the new one.'),
      button('Set up a new authenticator', () => enrolStep(main, { onSignedIn: () => ctx.go('#/account'),
        onDone: () => { ctx.go('#/account'); ctx.refresh(); } }), { class: 'secondary', id: 're-enrol' })));
  }
  sections.push(h('h2', null, 'My sessions'),
    table(['Started', 'Last used', 'From', 'Second factor', ''], rows, { caption: 'My sessions', captionHidden: true }));
  replace(main, ...sections);
}
