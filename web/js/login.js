// login.js - signing in: password, then (when the account has one) a
// TOTP or recovery code; a first login changes the one-time password and
// enrols TOTP (QR code drawn by the server from the otpauth URI, nothing
// leaves the machine; recovery codes shown once). A refused sign-in
// says only that it was refused: nothing tells whether the name exists.
import * as api from './api.js';
import { h, field, replace, notice, button } from './dom.js';

const REFUSED = 'Sign-in refused. Check the user name, the password and, if asked, the code.';

export async function renderLogin(main, opts) {
  let methods = { password: true, oidc: false };
  try { methods = await api.get('/api/v1/auth/methods'); } catch (e) { /* show the password form */ }
  passwordStep(main, opts, methods);
}

function passwordStep(main, opts, methods) {
  const user = field('User name', { autocomplete: 'username', required: true });
  const pw = field('Password', { type: 'password', autocomplete: 'current-password', required: true });
  const code = field('Code from your authenticator app, or a recovery code',
    { autocomplete: "one-time-code", inputmode: "text" });
  code.hidden = true;
  const msg = h('div', { id: 'login-msg' }, opts.notice ? notice('info', opts.notice) : null);
  const submit = h('button', { type: 'submit', id: 'login-submit' }, 'Sign in');
  const form = h('form', { id: 'login', class: 'card narrow', novalidate: true,
    'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Wharf'), msg, user, pw, code, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    const body = { user: user.input.value.trim(), password: pw.input.value };
    if (!code.hidden && code.input.value.trim()) body.code = code.input.value.trim();
    try {
      const r = await api.call('POST', '/api/v1/auth/login', body, { login: true });
      api.setCsrf(r.csrf_token);
      await afterLogin(main, opts, r, body.password);
    } catch (e) {
      submit.disabled = false;
      if (e.code === 'mfa_needed' && code.hidden) {
        code.hidden = false;
        replace(msg, notice('info', 'Enter the 6-digit code from your authenticator app (or a recovery code).'));
        code.input.focus();
        return;
      }
      replace(msg, notice('error', refusal(e)));
      (code.hidden ? pw : code).input.select();
    }
  });
  const sso = methods.oidc
    ? h('p', { class: 'sso' }, h('a', { class: 'button', id: 'oidc-login',
        href: '/api/v1/auth/oidc/login' }, 'Sign in with single sign-on'))
    : null;
  replace(main, form, sso);
  user.input.focus();
}

function refusal(e) {
  if (e.status === 429) return `Too many attempts. Try again in ${e.retryAfter || 'a few'} seconds.`;
  if (e.status === 503) return 'The server is busy. Try again in a few seconds.';
  if (e.status === 0 || e.status >= 500) return `The server could not sign you in: ${e.message}`;
  return REFUSED;
}

async function afterLogin(main, opts, me, oldPassword) {
  if (me.must_change) return changeStep(main, opts, oldPassword);
  if (me.mfa_required && !me.mfa_done) return enrolStep(main, opts);
  const full = await api.get('/api/v1/auth/me');
  return opts.onSignedIn(full);
}

function changeStep(main, opts, oldPassword) {
  const pw1 = field('New password', { type: 'password', autocomplete: 'new-password', required: true,
    help: 'At least 12 characters, not your user name, not a common password.' });
  const pw2 = field('New password again', { type: 'password', autocomplete: 'new-password', required: true });
  const msg = h('div');
  const form = h('form', { id: 'change-password', class: 'card narrow', novalidate: true },
    h('h1', null, 'Choose your password'),
    h('p', null, 'The password you signed in with was for one use only.'),
    msg, pw1, pw2, h('button', { type: 'submit' }, 'Set password'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    pw2.setError('');
    if (pw1.input.value !== pw2.input.value) {
      pw2.setError('The two passwords differ.');
      pw2.input.focus();
      return;
    }
    try {
      await api.check('/api/v1/auth/password', { old: oldPassword, new: pw1.input.value });
      const me = await api.get('/api/v1/auth/me');
      await afterLogin(main, opts, me, null);
    } catch (e) {
      pw1.setError(e.status === 401 ? 'The server refused the change: sign in again.' : e.message);
      pw1.input.focus();
    }
  });
  replace(main, form);
  pw1.input.focus();
}

export async function enrolStep(main, opts) {
  const r = await api.post('/api/v1/auth/mfa/enroll');
  const secret = (new URL(r.otpauth_uri)).searchParams.get('secret') || '';
  const code = field('Code shown by the app', { autocomplete: "one-time-code", inputmode: "numeric", required: true });
  const msg = h('div');
  const form = h('form', { id: 'enrol', class: 'card narrow', novalidate: true },
    h('h1', null, 'Set up two-factor sign-in'),
    h('p', null, 'Scan this code with an authenticator app (RFC 6238 TOTP), or type the key below into it.'),
    h('img', { id: 'totp-qr', class: 'qr', alt: 'QR code of the authenticator key', src: r.qr_svg }),
    h('p', null, 'Key: ', h('code', { id: 'totp-secret' }, secret)),
    msg, code, h('button', { type: 'submit' }, 'Confirm'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const c = await api.check('/api/v1/auth/mfa/confirm', { code: code.input.value.trim() });
      recoveryStep(main, opts, c.recovery_codes);
    } catch (e) {
      code.setError('That code was not accepted. Wait for the next code and try again.');
      code.input.select();
    }
  });
  replace(main, form);
  code.input.focus();
}

function recoveryStep(main, opts, codes) {
  const list = String(codes || '').split(/[\s,]+/).filter(Boolean);
  const done = button('I have saved these codes', async () => {
    const me = await api.get('/api/v1/auth/me');
    (opts.onDone || opts.onSignedIn)(me);
  }, { id: 'codes-saved' });
  replace(main, h('section', { class: 'card narrow', 'aria-labelledby': 'rc-title' },
    h('h1', { id: 'rc-title' }, 'Your recovery codes'),
    notice('info', 'They are shown only now. Each one signs you in once if you lose your authenticator. Keep them somewhere safe.'),
    h('ul', { id: 'recovery-codes', class: 'codes' }, list.map((c) => h('li', null, h('code', null, c)))),
    done));
  done.focus();
}
