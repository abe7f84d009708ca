"""An AS2 peer that Wharf did not write, for the M4 interoperability tests
(test_m4_as2_interop.py): every cryptographic step is the openssl CLI
(`openssl cms` / `openssl smime` / `openssl dgst`, run as subprocesses),
everything else is Python's standard library. Nothing here calls or
imports Wharf's C code.

  - MIME: building entities, splitting header blocks and multipart bodies
    by hand (exact bytes: the MIC is over the bytes as sent).
  - RFC 3274 CompressedData: Debian 12's OpenSSL is built without zlib, so
    `openssl cms -compress` / `-uncompress` do not work here. The
    compressed layer is made with Python's zlib and a tiny DER encoder
    written below, and read back with a tiny BER parser (Wharf streams,
    so what it sends may use indefinite lengths and segmented OCTET
    STRINGs). Both are independent of src/as2/cms_zlib.c.
  - The sender (CliSender): sign (detached S/MIME multipart/signed, or
    opaque signed-data), compress, encrypt, POST over TLS with
    http.client; it reads the MDN and verifies its signature with
    `openssl cms -verify`.
  - The receiver (As2Receiver): an HTTPS server that decrypts, verifies,
    decompresses, computes the MIC with `openssl dgst` and answers an MDN
    it builds and signs with `openssl cms -sign`, or a broken one on
    request (wrong MIC, other key, an error disposition, asynchronously).
"""
import base64
import http.client
import http.server
import re
import ssl
import subprocess
import threading
import time
import traceback
import uuid
import zlib
from pathlib import Path

from conftest import serve_http

CRLF = b"\r\n"


def ossl(*args, cwd, input=None, check=True):
    """Run the openssl CLI; fail (when check) with its stderr."""
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd, input=input,
                       capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (
            f"openssl {' '.join(map(str, args))} exited {p.returncode}: "
            f"{p.stderr.decode(errors='replace')[-2000:]}")
    return p


def keypair(d, name, bits=2048):
    """A self-signed RSA certificate and key made by the openssl CLI, as an
    AS2 partner has."""
    ossl("req", "-x509", "-newkey", f"rsa:{bits}", "-nodes", "-days", 30,
         "-subj", f"/CN={name}/O=Interop peer", "-keyout", f"{name}.key",
         "-out", f"{name}.pem", cwd=d)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}.key"


def make_ca(d, name):
    """A test CA (EC P-256), for the TLS certificates of the test peers."""
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", 2, "-subj",
         f"/CN={name}", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem",
         cwd=d)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}-key.pem"


def make_tls_cert(d, ca, ca_key, name="srv"):
    """A server certificate for 127.0.0.1 signed by ca."""
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{name}-key.pem",
         "-out", f"{name}.csr", cwd=d)
    (Path(d) / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", f"{name}.csr", "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", 2, "-extfile", "ext.cnf", "-out",
         f"{name}.pem", cwd=d)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}-key.pem"


def mic_of(data, alg, cwd):
    """The MIC value (base64) of data, computed by `openssl dgst`. alg is
    the AS2 spelling (sha-256, sha256, ...)."""
    md = alg.lower().replace("-", "")
    assert md in ("sha1", "sha256", "sha384", "sha512"), alg
    dg = ossl("dgst", f"-{md}", "-binary", cwd=cwd, input=data).stdout
    return base64.b64encode(dg).decode()


# ---- DER (RFC 3274 CompressedData) ------------------------------------------

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED = "1.2.840.113549.1.7.2"
OID_ENVELOPED = "1.2.840.113549.1.7.3"
OID_COMPRESSED = "1.2.840.113549.1.9.16.1.9"
OID_AUTH_ENVELOPED = "1.2.840.113549.1.9.16.1.23"
OID_ZLIB = "1.2.840.113549.1.9.16.3.8"


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def oid_bytes(dotted):
    parts = [int(x) for x in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for v in parts[2:]:
        enc = [v & 0x7F]
        v >>= 7
        while v:
            enc.append(0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(reversed(enc))
    return bytes(out)


def oid_str(b):
    first = b[0]
    parts = [first // 40 if first < 80 else 2, first % 40 if first < 80
             else first - 80]
    v = 0
    for c in b[1:]:
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def compressed_data(content):
    """ContentInfo { id-ct-compressedData, CompressedData { version 0,
    zlib (parameters absent), EncapsulatedContentInfo { id-data,
    [0] OCTET STRING zlib(content) } } } (RFC 3274), in DER."""
    eci = der(0x30, der(0x06, oid_bytes(OID_DATA)) +
              der(0xA0, der(0x04, zlib.compress(content))))
    cd = der(0x30, der(0x02, b"\x00") +
             der(0x30, der(0x06, oid_bytes(OID_ZLIB))) + eci)
    return der(0x30, der(0x06, oid_bytes(OID_COMPRESSED)) + der(0xA0, cd))


class Ber:
    def __init__(self, tag, value, children):
        self.tag, self.value, self.children = tag, value, children

    @property
    def constructed(self):
        return bool(self.tag & 0x20)


def ber_parse(buf, off=0):
    """One BER element at off: (Ber, end). Definite and indefinite
    lengths; single-byte tags (all that CMS uses here)."""
    tag = buf[off]
    assert tag & 0x1F != 0x1F, "multi-byte BER tags are not used by CMS"
    off += 1
    first = buf[off]
    off += 1
    if first == 0x80:                       # indefinite: children to 00 00
        assert tag & 0x20, "indefinite length on a primitive element"
        kids = []
        while buf[off:off + 2] != b"\x00\x00":
            kid, off = ber_parse(buf, off)
            kids.append(kid)
        return Ber(tag, None, kids), off + 2
    if first & 0x80:
        n = first & 0x7F
        length = int.from_bytes(buf[off:off + n], "big")
        off += n
    else:
        length = first
    end = off + length
    assert end <= len(buf), "BER element runs past the end of the data"
    if tag & 0x20:
        kids, p = [], off
        while p < end:
            kid, p = ber_parse(buf, p)
            kids.append(kid)
        return Ber(tag, None, kids), end
    return Ber(tag, bytes(buf[off:end]), None), end


def ber_octets(node):
    """The bytes of an OCTET STRING, primitive or segmented."""
    if node.constructed:
        return b"".join(ber_octets(k) for k in node.children)
    assert node.tag == 0x04, f"not an OCTET STRING: tag {node.tag:#x}"
    return node.value


def cms_type(data):
    """The content type OID of a CMS ContentInfo (BER)."""
    root, _ = ber_parse(data)
    assert root.tag == 0x30 and root.children[0].tag == 0x06
    return oid_str(root.children[0].value)


def decompress(data):
    """The content of an RFC 3274 CompressedData ContentInfo (BER)."""
    root, end = ber_parse(data)
    assert oid_str(root.children[0].value) == OID_COMPRESSED, "not compressed"
    cd = root.children[1].children[0]
    version, alg, eci = cd.children
    assert version.value == b"\x00", "CompressedData version is not 0"
    assert oid_str(alg.children[0].value) == OID_ZLIB, "not zlib"
    assert oid_str(eci.children[0].value) == OID_DATA, "inner type not data"
    octets = ber_octets(eci.children[1].children[0])
    d = zlib.decompressobj()
    out = d.decompress(octets) + d.flush()
    assert d.eof, "the zlib stream is truncated"
    return out


# ---- MIME -------------------------------------------------------------------


def entity(headers, body):
    """A MIME entity: header lines with CRLF, a blank line, body."""
    return b"".join(f"{k}: {v}".encode() + CRLF for k, v in headers) + \
        CRLF + body


def split_entity(raw):
    """(headers [(name, value)], body) of an entity: headers end at the
    first empty line (CRLF or LF); folded lines are unfolded."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if raw.startswith(CRLF) or raw.startswith(b"\n"):
        head, body = b"", raw[2 if raw.startswith(CRLF) else 1:]
    else:
        assert m, "no end of the header block"
        head, body = raw[:m.start()], raw[m.end():]
    headers = []
    for line in re.split(rb"\r?\n", head):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + " " + line.strip().decode())
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode().strip(), value.decode().strip()))
    return headers, body


def hget(headers, name):
    """The value of header name (case-insensitive), or None."""
    if hasattr(headers, "items"):
        headers = headers.items()
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def ct_parse(value):
    """('type/subtype' lowercased, {param: value}) of a Content-Type."""
    mtype, _, rest = value.partition(";")
    params = {}
    for m in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)',
                         rest):
        v = m.group(2).strip()
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        params[m.group(1).lower()] = v
    return mtype.strip().lower(), params


def multipart_parts(body, boundary):
    """The parts of a multipart body, exact bytes: the line break before a
    delimiter belongs to the delimiter (RFC 2046)."""
    delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode()) +
                       rb"(--)?[ \t]*(?:\r?\n|$)")
    parts, start = [], None
    for m in delim.finditer(body):
        if start is not None:
            parts.append(body[start:m.start()])
        if m.group(1):
            return parts
        start = m.end()
    raise AssertionError("the multipart body has no close delimiter")


def decode_cte(headers, body):
    cte = (hget(headers, "Content-Transfer-Encoding") or "binary").lower()
    if cte == "base64":
        return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
    assert cte in ("binary", "8bit", "7bit"), f"unexpected CTE {cte}"
    return body


def mdn_fields(report):
    """The fields of the message/disposition-notification part of a
    multipart/report entity, and the report's Content-Type."""
    headers, body = split_entity(report)
    ctype, params = ct_parse(hget(headers, "Content-Type"))
    assert ctype == "multipart/report", ctype
    assert params.get("report-type", "").lower() == \
        "disposition-notification", params
    for part in multipart_parts(body, params["boundary"]):
        ph, pb = split_entity(part)
        if ct_parse(hget(ph, "Content-Type") or "text/plain")[0] == \
                "message/disposition-notification":
            fields, _ = split_entity(decode_cte(ph, pb).rstrip(b"\r\n") +
                                     b"\r\n\r\n")
            return {k.lower(): v for k, v in fields}
    raise AssertionError("the report has no message/disposition-notification")


def pick_micalg(dno):
    """The first MIC algorithm of signed-receipt-micalg in a
    Disposition-Notification-Options value, as spelled there."""
    m = re.search(r"signed-receipt-micalg\s*=\s*([^;]*)", dno or "", re.I)
    if not m:
        return "sha-256"
    for a in [x.strip() for x in m.group(1).split(",")][1:]:
        if a.lower().replace("-", "") in ("sha256", "sha384", "sha512",
                                          "sha1"):
            return a
    return "sha-256"


# ---- the sender -------------------------------------------------------

SMIME_TYPES = {OID_ENVELOPED: "enveloped-data",
               OID_AUTH_ENVELOPED: "authEnveloped-data"}


class CliSender:
    """An AS2 sender made of the openssl CLI: its own AS2 id, key and
    certificate; the receiver's certificate to encrypt for."""

    def __init__(self, d, as2_id, name="a"):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name            # the partner name on Wharf's side
        self.as2_id = as2_id
        self.cert, self.key = keypair(self.dir, as2_id)

    def sign(self, ent, md="sha256", tool="cms", crlf=True):
        """S/MIME multipart/signed around ent (detached signature), as the
        CLI writes it: the whole text, headers first. crlf: -crlfeol (the
        CLI's own MIME lines end in CRLF); else its default, bare LF."""
        return ossl(tool, "-sign", "-binary", "-md", md, "-signer",
                    self.cert, "-inkey", self.key,
                    *(["-crlfeol"] if crlf else []), cwd=self.dir,
                    input=ent).stdout

    def sign_opaque(self, ent, md="sha256"):
        """An application/pkcs7-mime signed-data entity (content inside)."""
        der_ = ossl("cms", "-sign", "-nodetach", "-binary", "-md", md,
                    "-signer", self.cert, "-inkey", self.key, "-outform",
                    "DER", cwd=self.dir, input=ent).stdout
        assert cms_type(der_) == OID_SIGNED
        return entity([("Content-Type", 'application/pkcs7-mime; '
                        'smime-type=signed-data; name="smime.p7m"'),
                       ("Content-Transfer-Encoding", "binary"),
                       ("Content-Disposition",
                        'attachment; filename="smime.p7m"')], der_)

    @staticmethod
    def compress(ent):
        """An application/pkcs7-mime compressed-data entity around ent
        (Python zlib + the DER encoder above)."""
        return entity([("Content-Type", 'application/pkcs7-mime; '
                        'smime-type=compressed-data; name="smime.p7z"'),
                       ("Content-Transfer-Encoding", "binary"),
                       ("Content-Disposition",
                        'attachment; filename="smime.p7z"')],
                      compressed_data(ent))

    def encrypt(self, ent, cipher, recipient, form="der", tool="cms"):
        """ent encrypted for recipient: (entity headers, body). form "der":
        binary CMS with our own headers; "smime": the CLI's S/MIME output
        (base64) as it writes it."""
        if form == "der":
            body = ossl(tool, "-encrypt", "-binary", f"-{cipher}",
                        "-outform", "DER", recipient, cwd=self.dir,
                        input=ent).stdout
            st = SMIME_TYPES[cms_type(body)]
            return [("Content-Type", f'application/pkcs7-mime; '
                     f'smime-type={st}; name="smime.p7m"'),
                    ("Content-Transfer-Encoding", "binary"),
                    ("Content-Disposition",
                     'attachment; filename="smime.p7m"')], body
        out = ossl(tool, "-encrypt", "-binary", f"-{cipher}", "-crlfeol",
                   recipient, cwd=self.dir, input=ent).stdout
        headers, body = split_entity(out)
        return [(k, v) for k, v in headers if k.lower() != "mime-version"], \
            body

    def request(self, to_id, ent_headers, body, micalg="sha-256",
                receipt_url=None, signed_receipt=True, message_id=None):
        """(message id, HTTP headers) of an AS2 request carrying body."""
        mid = message_id or f"<{uuid.uuid4()}@interop.cli.test>"
        h = [("AS2-Version", "1.2"), ("AS2-From", self.as2_id),
             ("AS2-To", to_id), ("Message-ID", mid),
             ("MIME-Version", "1.0"), ("Subject", "interop test"),
             ("Date", time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                    time.gmtime())),
             ("Disposition-Notification-To", "mailto:as2@interop.cli.test")]
        if signed_receipt:
            h.append(("Disposition-Notification-Options",
                      "signed-receipt-protocol=optional, pkcs7-signature; "
                      f"signed-receipt-micalg=optional, {micalg}"))
        if receipt_url:
            h.append(("Receipt-Delivery-Option", receipt_url))
        return mid, h + list(ent_headers)


def post(url, cafile, headers, body, timeout=60):
    """POST body over TLS (trusting cafile, host name checked); returns
    (status, headers [(name, value)], body)."""
    m = re.match(r"https://([^:/]+):(\d+)(/.*)$", url)
    ctx = ssl.create_default_context(cafile=str(cafile))
    c = http.client.HTTPSConnection(m.group(1), int(m.group(2)),
                                    context=ctx, timeout=timeout)
    try:
        c.putrequest("POST", m.group(3), skip_accept_encoding=True)
        for k, v in headers:
            c.putheader(k, v)
        c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


def verify_signed(ctype, body, signer_cert, cwd):
    """Verify a multipart/signed (Content-Type value and body) with
    `openssl cms -verify`: the signer must be signer_cert (-nointern
    -certfile) and chain to it (-CAfile). Returns (first part as sent,
    the content openssl verified)."""
    mtype, params = ct_parse(ctype)
    assert mtype == "multipart/signed", ctype
    assert params.get("protocol", "").lower() in (
        "application/pkcs7-signature", "application/x-pkcs7-signature"), \
        params
    smime = b"MIME-Version: 1.0\r\nContent-Type: " + ctype.encode() + \
        CRLF + CRLF + body
    p = ossl("cms", "-verify", "-binary", "-crlfeol", "-CAfile", signer_cert,
             "-nointern", "-certfile", signer_cert, cwd=cwd, input=smime,
             check=False)
    assert p.returncode == 0, (
        f"openssl cms -verify refused the signature: "
        f"{p.stderr.decode(errors='replace')[-1500:]}")
    parts = multipart_parts(body, params["boundary"])
    assert len(parts) == 2, f"{len(parts)} parts in the multipart/signed"
    return parts[0], p.stdout


def read_mdn(headers, body, signer_cert, cwd):
    """An MDN (sync response or async request): its signature verified
    with signer_cert by the CLI; returns (fields, micalg param, report)."""
    ctype = hget(headers, "Content-Type")
    assert ctype, "the MDN has no Content-Type"
    first, verified = verify_signed(ctype, body, signer_cert, cwd)
    assert verified == first, "openssl verified other bytes than part 1"
    return mdn_fields(first), ct_parse(ctype)[1].get("micalg"), first


def objects(data, cwd):
    """The OBJECT names `openssl asn1parse` finds in a DER/BER structure
    (algorithms used), one per line."""
    out = ossl("asn1parse", "-inform", "DER", cwd=cwd, input=data).stdout
    return "\n".join(line.split(":")[-1].strip() for line in
                     out.decode().splitlines() if "OBJECT" in line)


# ---- the receiver -----------------------------------------------------------


def read_body(handler):
    """A request's body by its Content-Length, or its chunked framing
    decoded (RFC 9112 7.1; trailers skipped), as a server must accept
    both: http.server does not decode chunked bodies itself."""
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if te != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length")
                                      or 0))
    out = []
    while True:
        line = handler.rfile.readline(1024)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while handler.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(out)
        data = handler.rfile.read(size)
        assert len(data) == size, "the chunked body ended early"
        out.append(data)
        assert handler.rfile.read(2) == CRLF, "a chunk without its CRLF"


class As2Receiver:
    """An AS2 partner's HTTPS endpoint written with the openssl CLI.

    Takes a POST, unwraps it layer by layer (decrypt: `openssl cms
    -decrypt`; multipart/signed and signed-data: `openssl cms -verify`
    against the sender's certificate; compressed-data: Python zlib after
    the BER parser), computes the MIC with `openssl dgst` over the signed
    entity as received (unsigned: over the decrypted / decompressed
    entity), and answers the MDN the mode says:
      ok                 signed "processed" with the right MIC
      wrong_mic          the same with the MIC of other bytes
      other_key          signed with a key the sender does not know
      decryption_failed  "processed/error: decryption-failed", no MIC
      unsigned_no_mic    an unsigned "processed" report without a
                         Received-Content-MIC (RFC 4130 allows it; as
                         OpenAS2 and pyas2-lib send them)
      async              HTTP 200 now; the MDN POSTed to the
                         Receipt-Delivery-Option (trusting async_ca)
    hold: an Event; when given, the response waits until it is set
    (async_hold: the same for the asynchronous MDN's POST).
    fail_first: answer the first N requests HTTP 500 (after unwrapping
    them: the message was processed, only the answer is lost); async_drop:
    never send the asynchronous MDN of the first N requests.
    Every request is kept in .got (a dict per request, with "error" when
    the unwrapping failed)."""

    def __init__(self, d, as2_id, cert, key, sender_cert, tls_certkey,
                 mode="ok", other_certkey=None, async_ca=None):
        self.dir = Path(d)
        self.as2_id, self.cert, self.key = as2_id, cert, key
        self.sender_cert = sender_cert
        self.mode = mode
        self.other = other_certkey
        self.async_ca = async_ca
        self.hold = None
        self.async_hold = None
        self.fail_first = 0
        self.async_drop = 0
        self.got = []
        self.async_results = []
        self.threads = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = read_body(self)
                status, hdrs, out = rec.handle(self.path, list(
                    self.headers.items()), body)
                self.send_response(status)
                for k, v in hdrs:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = serve_http(H, tls_certkey)
        self.port = self.httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/as2"

    def close(self):
        for e in (self.hold, self.async_hold):
            if e is not None:
                e.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self.threads:
            t.join(timeout=60)

    # -- unwrapping --

    def unwrap(self, headers, body, rec, top):
        """Unwrap one entity (headers, body), recording into rec."""
        ctype = hget(headers, "Content-Type")
        mtype, params = ct_parse(ctype)
        if mtype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            data = decode_cte(headers, body)
            kind = cms_type(data)
            if kind in (OID_ENVELOPED, OID_AUTH_ENVELOPED):
                rec["layers"].append("encrypted")
                rec["cms"] = kind
                inner = ossl("cms", "-decrypt", "-binary", "-inform", "DER",
                             "-inkey", self.key, "-recip", self.cert,
                             cwd=self.dir, input=data).stdout
                # the cipher, as the CLI reads the structure
                rec["asn1"] = objects(data, self.dir)
            elif kind == OID_COMPRESSED:
                rec["layers"].append("compressed")
                inner = decompress(data)
            elif kind == OID_SIGNED:
                rec["layers"].append("signed")
                inner = ossl("cms", "-verify", "-binary", "-inform", "DER",
                             "-CAfile", self.sender_cert, "-nointern",
                             "-certfile", self.sender_cert, cwd=self.dir,
                             input=data).stdout
                rec.setdefault("mic_scope", inner)
            else:
                raise AssertionError(f"unexpected CMS type {kind}")
            if kind != OID_SIGNED:
                # unsigned: the MIC covers the innermost entity reached
                rec["unsigned_scope"] = inner
            h2, b2 = split_entity(inner)
            return self.unwrap(h2, b2, rec, False)
        if mtype == "multipart/signed":
            rec["layers"].append("signed")
            rec["micalg_param"] = params.get("micalg")
            first, verified = verify_signed(ctype, body, self.sender_cert,
                                            self.dir)
            assert verified == first, "openssl verified other bytes"
            rec.setdefault("mic_scope", first)
            sig = multipart_parts(body, params["boundary"])[1]
            sh, sb = split_entity(sig)
            rec["sig_asn1"] = objects(decode_cte(sh, sb), self.dir)
            h2, b2 = split_entity(first)
            return self.unwrap(h2, b2, rec, False)
        rec["content_type"] = ctype
        rec["disposition"] = hget(headers, "Content-Disposition")
        rec["payload"] = decode_cte(headers, body)
        if top:         # no layer at all: the content only
            rec["unsigned_scope"] = rec["payload"]

    def handle(self, path, headers, body):
        rec = {"path": path, "headers": headers, "body": body, "layers": []}
        self.got.append(rec)
        if self.hold is not None:
            self.hold.wait(60)
        try:
            self.unwrap(headers, body, rec, True)
            dno = hget(headers, "Disposition-Notification-Options")
            alg = pick_micalg(dno)
            scope = rec.get("mic_scope", rec.get("unsigned_scope"))
            rec["mic"] = f"{mic_of(scope, alg, self.dir)}, {alg}"
        except Exception:               # recorded; answered with an error
            rec["error"] = traceback.format_exc()
            return 500, [], b"cannot process\n"
        if len(self.got) <= self.fail_first:
            return 500, [("Content-Type", "text/plain")], b"try again\n"
        mdn_h, mdn_body = self.mdn(rec, headers)
        if self.mode == "async" and len(self.got) <= self.async_drop:
            return 200, [], b""
        if self.mode == "async":
            url = hget(headers, "Receipt-Delivery-Option")
            t = threading.Thread(target=self.post_async,
                                 args=(url, mdn_h, mdn_body), daemon=True)
            self.threads.append(t)
            t.start()
            return 200, [], b""
        return 200, mdn_h, mdn_body

    def post_async(self, url, headers, body):
        if self.async_hold is not None:
            self.async_hold.wait(60)
        try:
            self.async_results.append(post(url, self.async_ca, headers, body))
        except Exception:
            self.async_results.append(("error", traceback.format_exc(), b""))

    # -- the MDN --

    def mdn(self, rec, req):
        mid = hget(req, "Message-ID")
        alg = rec["mic"].rsplit(", ", 1)[1]
        value = rec["mic"]
        disp = "automatic-action/MDN-sent-automatically; processed"
        if self.mode == "wrong_mic":
            value = f"{mic_of(rec['mic_scope'] + b'x', alg, self.dir)}, {alg}"
        if self.mode == "decryption_failed":
            disp += "/error: decryption-failed"
        b = f"rpt-{uuid.uuid4().hex}"
        fields = [("Reporting-UA", "interop-cli-receiver"),
                  ("Original-Recipient", f"rfc822; {self.as2_id}"),
                  ("Final-Recipient", f"rfc822; {self.as2_id}"),
                  ("Original-Message-ID", mid),
                  ("Disposition", disp)]
        if self.mode not in ("decryption_failed", "unsigned_no_mic"):
            fields.append(("Received-Content-MIC", value))
        notification = b"".join(f"{k}: {v}".encode() + CRLF
                                for k, v in fields)
        report = entity(
            [("Content-Type", "multipart/report; report-type="
              f'disposition-notification; boundary="{b}"')],
            b"--" + b.encode() + CRLF +
            entity([("Content-Type", "text/plain")],
                   b"The AS2 message was received." + CRLF) + CRLF +
            b"--" + b.encode() + CRLF +
            entity([("Content-Type", "message/disposition-notification")],
                   notification) + CRLF +
            b"--" + b.encode() + b"--" + CRLF)
        ident = [("AS2-Version", "1.2"), ("AS2-From", self.as2_id),
                 ("AS2-To", hget(req, "AS2-From")),
                 ("Message-ID", f"<{uuid.uuid4()}@interop.receiver.test>"),
                 ("Subject", "Your requested MDN response")]
        if self.mode == "unsigned_no_mic":      # the report itself
            rh, rb = split_entity(report)
            return rh + [("MIME-Version", "1.0")] + ident, rb
        cert, key = (self.other if self.mode == "other_key"
                     else (self.cert, self.key))
        md = alg.lower().replace("-", "")
        signed = ossl("cms", "-sign", "-binary", "-md", md, "-signer", cert,
                      "-inkey", key, "-crlfeol", cwd=self.dir,
                      input=report).stdout
        sh, sb = split_entity(signed)
        h = [(k, v) for k, v in sh if k.lower() != "mime-version"]
        return h + [("MIME-Version", "1.0")] + ident, sb


class MdnSink:
    """An HTTPS endpoint (plain HTTP when tls_certkey is None) that keeps
    what is POSTed to it (asynchronous MDNs from Wharf) and answers 200."""

    def __init__(self, tls_certkey):
        self.got = []
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                sink.got.append((self.path, list(self.headers.items()),
                                 self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = serve_http(H, tls_certkey)
        scheme = "https" if tls_certkey else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/mdn"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
