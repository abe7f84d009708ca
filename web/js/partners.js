// partners.js - the AS2 profile and its keys, the partners (algorithm
// policy, MDN mode, interop switches, the addresses they send from), certificates with their expiry,
// export, rollover (a new certificate with use_from), and adding a
// partner from its certificate file (PEM or DER) through the flow
// document, validated by the server as `wharf flow import` does.
import * as api from './api.js';
import { h, field, replace, notice, button, table } from './dom.js';

const SWITCHES = ['accept_unsigned', 'accept_unencrypted', 'require_mic', 'sign_pss', 'encrypt_oaep', 'allow_plain_mdn_url', 'insecure'];

function readFile(input) {
  return new Promise((resolve, reject) => {
    const f = input.files && input.files[0];
    if (!f) { reject(new Error('Choose a file.')); return; }
    const r = new FileReader();
    r.onload = () => {
      const bytes = new Uint8Array(r.result);
      const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
      if (text.includes('-----BEGIN CERTIFICATE-----')) resolve({ content: text, pem: text });
      else {
        let bin = '';
        for (const b of bytes) bin += String.fromCharCode(b);
        resolve({ base64: btoa(bin) });
      }
    };
    r.onerror = () => reject(new Error('The file cannot be read.'));
    r.readAsArrayBuffer(f);
  });
}

function partnerRow(p) {
  const sw = SWITCHES.filter((k) => p[k] === true);
  return h('tr', { dataset: { partner: p.name } }, h('td', null, p.name), h('td', null, p.as2_id),
    h('td', { class: 'wrap' }, p.url || ''), h('td', null, p.sign || 'sha256'), h('td', null, p.encrypt || 'aes256-cbc'),
    h('td', null, `${p.mdn || 'sync'}${p.mdn_signed === false ? ', unsigned' : ', signed'}`),
    h('td', null, sw.join(', ') || 'none'));
}

function rollover(ctx, partners, certMsg) {
  const who = field('Partner', { options: partners.map((p) => p.name) });
  const file = field('New certificate (PEM)', { type: 'file', accept: '.pem,.crt,.cer' });
  const from = field('Use from', { type: 'datetime-local', help: 'When to start using it for sending; empty: now.' });
  const form = h('form', { class: 'card', id: 'rollover', novalidate: true }, h('h2', null, 'Certificate rollover'),
    h('div', { class: 'row' }, who, file, from), h('button', { type: 'submit' }, 'Add certificate'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const f = await readFile(file.input);
      if (!f.pem) throw new Error('The rollover takes a PEM certificate.');
      const body = { pem: f.pem };
      if (from.input.value) body.use_from = `${new Date(from.input.value).toISOString().slice(0, 19)}Z`;
      await api.post(`/api/v1/partners/${api.enc(who.input.value)}/certificates`, body);
      ctx.refresh();
    } catch (e) { replace(certMsg, notice('error', e.message)); }
  });
  return form;
}

function addPartner(ctx) {
  const name = field('Name', { help: 'A-Z a-z 0-9 . _ -' });
  const as2 = field('AS2 id');
  const url = field('AS2 URL', { type: 'url', help: 'Where the partner receives AS2 (https).' });
  const cert = field('Their certificate (PEM or DER)', { type: 'file', accept: '.pem,.crt,.cer,.der' });
  const sign = field('Signing', { options: ['sha256', 'sha384', 'sha512', 'sha1', 'none'], value: 'sha256' });
  const enc = field('Encryption', { options: ['aes256-cbc', 'aes192-cbc', 'aes128-cbc', 'aes256-gcm', 'aes128-gcm', '3des', 'none'], value: 'aes256-cbc' });
  const mdn = field('MDN', { options: ['sync', 'async', 'none'], value: 'sync' });
  const signed = field('Ask for a signed MDN', { type: 'checkbox', value: true });
  const comp = field('Compress', { type: 'checkbox', value: false });
  const only = field('Only from', { help: 'The IPv4 addresses or networks the partner sends from, comma-separated (192.0.2.0/24); empty: any address.' });
  const sws = SWITCHES.map((k) => field(k.replace(/_/g, ' '), { type: 'checkbox', value: false, name: k }));
  const msg = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'add-partner', novalidate: true }, h('h2', null, 'Add a partner'), msg,
    h('div', { class: 'row' }, name, as2, url), cert, h('div', { class: 'row' }, sign, enc, mdn), only, signed, comp,
    h('fieldset', null, h('legend', null, 'Interoperability switches'), sws),
    h('button', { type: 'submit' }, 'Add partner'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    [name, as2, url, cert, only].forEach((f) => f.setError(''));
    try {
      const c = await readFile(cert.input).catch((e) => { cert.setError(e.message); throw e; });
      delete c.pem;
      const p = { name: name.input.value.trim(), as2_id: as2.input.value.trim(), url: url.input.value.trim(),
        certificates: [c], sign: sign.input.value, encrypt: enc.input.value, mdn: mdn.input.value,
        mdn_signed: signed.input.checked, compress: comp.input.checked };
      sws.forEach((f) => { if (f.input.checked) p[f.input.name] = true; });
      const from = only.input.value.split(/[\s,]+/).filter((x) => x);
      if (from.length) p.allow_from = from;
      const doc = await api.get('/api/v1/flows');
      doc.partners = (doc.partners || []).concat([p]);
      await api.put('/api/v1/flows', doc);
      ctx.refresh();
    } catch (e) {
      if (e.status === undefined) return;
      const m = /(allow-list|allow_from|as2_id|url|name|certificates)/.exec(e.message);
      const target = m ? { 'allow-list': only, allow_from: only, as2_id: as2, url, name, certificates: cert }[m[1]] : null;
      if (target) { target.setError(e.message); target.input.focus(); } else replace(msg, notice('error', e.message));
    }
  });
  return form;
}

// Our AS2 id and a key: a PKCS#12 file and its password, or a PEM
// certificate and PEM private key. Existing keys stay (rollover).
function profileForm(ctx, profile) {
  const as2 = field('Our AS2 id', { value: profile ? profile.as2_id : '' });
  const p12 = field('Key and certificate (PKCS#12)', { type: 'file', accept: '.p12,.pfx' });
  const pw = field('PKCS#12 password', { type: 'password', autocomplete: 'off' });
  const cert = field('or a certificate (PEM)', { type: 'file', accept: '.pem,.crt' });
  const key = field('and its private key (PEM)', { type: 'file', accept: '.pem,.key' });
  const msg = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'profile-form', novalidate: true },
    h('h2', null, profile ? 'Change our profile or add a key' : 'Set our AS2 profile'), msg, as2,
    h('div', { class: 'row' }, p12, pw), h('div', { class: 'row' }, cert, key),
    h('p', { class: 'help' }, 'Private keys are sealed by the server\'s vault and never shown again.'),
    h('button', { type: 'submit' }, 'Save profile'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const doc = await api.get('/api/v1/flows');
      const keys = (doc.profile && doc.profile.keys) || [];
      if (p12.input.files.length) {
        const f = await readFile(p12.input);
        keys.push({ pkcs12: { base64: f.base64 }, password_file: { content: pw.input.value } });
      } else if (cert.input.files.length && key.input.files.length) {
        const c = await readFile(cert.input);
        const k = await new Promise((res, rej) => {
          const r = new FileReader();
          r.onload = () => res(String(r.result));
          r.onerror = () => rej(new Error('The key file cannot be read.'));
          r.readAsText(key.input.files[0]);
        });
        keys.push({ cert: { content: c.pem || '' }, key: { content: k } });
      }
      doc.profile = { as2_id: as2.input.value.trim(), keys };
      await api.put('/api/v1/flows', doc);
      ctx.refresh();
    } catch (e) { replace(msg, notice('error', e.message)); }
  });
  return form;
}

export async function render(main, ctx) {
  ctx.title('Partners');
  const [d, c] = await Promise.all([api.get('/api/v1/partners'), api.get('/api/v1/certificates')]);
  const partners = d.partners || [];
  const certs = c.certificates || [];
  const ours = certs.filter((x) => x.owner === '(profile)');
  const theirs = certs.filter((x) => x.owner !== '(profile)');
  const certMsg = h('div', { id: 'cert-msg', 'aria-live': 'polite' });
  const certTable = (list, cls) => table(['Owner', 'Subject', 'Valid from', 'Expires', 'Days left', 'Status', 'Use from', ''],
    list.map((x) => h('tr', null, h('td', null, x.owner), h('td', { class: 'wrap' }, x.subject), h('td', null, x.not_before),
      h('td', null, x.not_after), h('td', { class: 'num' }, String(x.days_left)), h('td', null, x.status),
      h('td', null, x.use_from || ''),
      h('td', null, h('a', { href: `/api/v1/certificates/${x.id}`, download: `${x.owner.replace(/[^A-Za-z0-9._-]/g, '_')}-${x.id.slice(0, 8)}.pem`,
        'aria-label': `Export the certificate of ${x.owner} (${x.id.slice(0, 8)})` }, 'Export')))),
    { caption: cls, captionHidden: true, class: cls });
  replace(main, h('h1', null, 'Partners and certificates'),
    h('section', { class: 'card', 'aria-labelledby': 'h-profile' }, h('h2', { id: 'h-profile' }, 'Our AS2 profile'),
      d.profile ? h('p', null, 'AS2 id: ', h('code', { id: 'profile-id' }, d.profile.as2_id)) : h('p', null, 'No profile yet.'),
      h('h3', null, 'Our keys'), ours.length ? certTable(ours, 'our-keys') : h('p', null, 'None.')),
    h('h2', null, 'Partners'),
    partners.length ? table(['Name', 'AS2 id', 'URL', 'Signing', 'Encryption', 'MDN', 'Switches'], partners.map(partnerRow),
      { caption: 'Partners', captionHidden: true, class: 'partners' }) : h('p', null, 'No partner yet.'),
    h('h2', null, 'Their certificates'), certMsg, theirs.length ? certTable(theirs, 'partner-certs') : h('p', null, 'None.'),
    ctx.can('key.write') && partners.length ? rollover(ctx, partners, certMsg) : null,
    ctx.can('flow.write') ? profileForm(ctx, d.profile) : null,
    ctx.can('flow.write') ? addPartner(ctx) : null);
}
