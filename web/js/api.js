// api.js - the console's only way to the server: the REST API under
// /api/v1 on this origin, with the session cookie (HttpOnly, set by the
// server) and the session's CSRF token on every state-changing call.
// The CSRF token comes once, in the login answer; it is kept in this
// tab's sessionStorage so a reload keeps working (a new tab signs in).

const KEY = 'wharf.csrf';
let onSessionLost = null;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.code = code || '';
    this.retryAfter = retryAfter;
  }
}

export function hasSession() {
  return !!sessionStorage.getItem(KEY);
}

export function setCsrf(token) {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

// fn(error) when a call comes back 401 while signed in: the session was
// revoked or timed out.
export function whenSessionLost(fn) {
  onSessionLost = fn;
}

export async function call(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const csrf = sessionStorage.getItem(KEY);
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  const type = r.headers.get('Content-Type') || '';
  let data = null;
  if (type.startsWith('application/json')) {
    try { data = await r.json(); } catch (e) { data = null; }
  } else if (opts.text) {
    data = await r.text();
  }
  if (!r.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError(r.status, e.code, e.message,
      Number(r.headers.get('Retry-After') || 0));
    if (r.status === 401 && !opts.login && onSessionLost && hasSession()) {
      setCsrf(null);
      onSessionLost(err);
    }
    throw err;
  }
  return data;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body === undefined ? {} : body, opts);
// A call whose 401 means a wrong password or code, not a lost session.
export const check = (path, body) => call('POST', path, body, { login: true });
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);

// Query string of the set, non-empty values of params.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.set(k, v);
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
