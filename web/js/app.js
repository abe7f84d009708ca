// app.js - the console's shell: who is signed in, the navigation (only
// what the caller's role may do), the hash router, the idle timer.
// Pages are modules under js/ loaded on first use; each exports
// render(main, ctx).
import * as api from './api.js';
import { h, replace, clear, announce } from './dom.js';
import { renderLogin } from './login.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
const S = { me: null, timers: [], lastInput: Date.now(), idleTimer: null, gen: 0 };

const NAV = [
  { href: '#/dashboard', text: 'Dashboard', perm: 'message.read' },
  { href: '#/messages', text: 'Messages', perm: 'message.read' },
  { href: '#/flows', text: 'Flows', perm: 'flow.read' },
  { href: '#/partners', text: 'Partners', perm: 'flow.read' },
  { href: '#/admin', text: 'Administration',
    any: ['user.read', 'token.read', 'session.read', 'audit.read', 'settings.read'] },
  { href: '#/account', text: 'My account' },
];

const ROUTES = [
  [/^\/dashboard$/, 'dashboard.js'],
  [/^\/messages$/, 'messages.js'],
  [/^\/messages\/([0-9a-f-]{36})$/, 'message.js'],
  [/^\/flows$/, 'flows.js'],
  [/^\/flows\/new$/, 'flows.js'],
  [/^\/flows\/([^/]+)$/, 'flows.js'],
  [/^\/partners$/, 'partners.js'],
  [/^\/admin$/, 'admin.js'],
  [/^\/admin\/([a-z]+)$/, 'admin.js'],
  [/^\/account$/, 'account.js'],
];

export function can(perm) {
  return !!(S.me && S.me.permissions && S.me.permissions.includes(perm));
}

function allowed(item) {
  if (item.perm) return can(item.perm);
  if (item.any) return item.any.some(can);
  return true;
}

function stopTimers() {
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
}

function drawTop() {
  const here = location.hash.split('?')[0];
  replace(top,
    h('a', { class: 'brand', href: '#/dashboard' }, 'Wharf'),
    h('nav', { 'aria-label': 'Main' },
      h('ul', null, NAV.filter(allowed).map((n) =>
        h('li', null, h('a', { href: n.href,
          'aria-current': here.startsWith(n.href) ? 'page' : null }, n.text))))),
    h('div', { class: 'who' },
      h('span', { id: 'whoami' }, `${S.me.user || S.me.name} (${S.me.role})`),
      h('button', { type: 'button', id: 'signout', on: { click: signOut } }, 'Sign out')));
  top.hidden = false;
}

async function signOut() {
  try { await api.post('/api/v1/auth/logout'); } catch (e) { /* gone already */ }
  ended('You are signed out.');
}

// The session is over: back to the sign-in form with why.
function ended(why) {
  S.gen += 1;
  stopTimers();
  clearInterval(S.idleTimer);
  S.me = null;
  api.setCsrf(null);
  top.hidden = true;
  clear(top);
  if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
  showLogin(why);
}

function showLogin(why) {
  document.title = 'Sign in - Wharf';
  renderLogin(main, { notice: why, onSignedIn: started });
}

// Idle: no key or pointer input for the session's idle timeout ends the
// session here too (an auto-refreshing page would otherwise keep it).
function watchIdle() {
  S.lastInput = Date.now();
  clearInterval(S.idleTimer);
  const limit = (S.me.idle_seconds || 900) * 1000;
  S.idleTimer = setInterval(async () => {
    if (Date.now() - S.lastInput < limit) return;
    try { await api.post('/api/v1/auth/logout'); } catch (e) { /* already gone */ }
    ended(`You were signed out after ${Math.round(limit / 60000)} minutes without activity.`);
  }, 5000);
}
for (const ev of ['keydown', 'pointerdown', 'wheel']) {
  window.addEventListener(ev, () => { S.lastInput = Date.now(); }, { passive: true });
}

async function started(me) {
  S.me = me;
  watchIdle();
  if (!location.hash || location.hash === '#/' || location.hash === '#') {
    const first = NAV.find(allowed);
    history.replaceState(null, '', first ? first.href : '#/account');
  }
  await route();
}

async function route() {
  if (!S.me) return;
  stopTimers();
  const gen = ++S.gen;
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  drawTop();
  const hit = ROUTES.map(([re, mod]) => [path.match(re), mod]).find(([m]) => m);
  if (!hit) {
    replace(main, h('h1', null, 'Not found'), h('p', null, 'There is no such page.'));
    return;
  }
  const [m, mod] = hit;
  const ctx = {
    me: S.me, can, params: m.slice(1).map(decodeURIComponent),
    query: new URLSearchParams(query || ''), path,
    every(ms, fn) { S.timers.push(setInterval(() => { if (gen === S.gen) fn(); }, ms)); },
    live: () => gen === S.gen,
    go(hash) { location.hash = hash; },
    refresh: () => route(),
    title(t) { document.title = `${t} - Wharf`; },
  };
  // Each page draws into its own view: a slow page still loading when
  // the user moved on draws into a view no longer on the page.
  const view = h('div', { class: 'view' });
  replace(main, view);
  main.setAttribute('aria-busy', 'true');
  try {
    const page = await import(`./${mod}`);
    if (gen !== S.gen) return;
    await page.render(view, ctx);
  } catch (e) {
    if (gen !== S.gen || e.status === 401) return;
    replace(view, h('h1', null, 'Something went wrong'),
      h('div', { class: 'notice error', role: 'alert' }, e.message || String(e)));
  } finally {
    main.removeAttribute('aria-busy');
  }
  if (gen === S.gen) {
    const h1 = main.querySelector('h1');
    announce(h1 ? h1.textContent : '');
    main.focus({ preventScroll: true });
  }
}

window.addEventListener('hashchange', route);
api.whenSessionLost(() => ended('Your session has ended: it timed out or was revoked. Sign in again.'));

async function boot() {
  if (!api.hasSession()) {
    showLogin();
    return;
  }
  try {
    const me = await api.get('/api/v1/auth/me');
    if (me.must_change || (me.mfa_required && !me.mfa_done)) {
      showLogin();            // finish the first steps of signing in again
      return;
    }
    await started(me);
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
  }
}
boot();
