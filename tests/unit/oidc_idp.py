#!/usr/bin/python3
"""oidc_idp.py - a tiny OpenID Connect identity provider for test_oidc.c.

Standard library only (http.server, ssl, hashlib); RSA keys are made and
used through the openssl CLI. Listens on 127.0.0.1 only, over HTTPS with the
certificate the test gives it, on a free port that it writes to --port-file
once it is ready.

  GET  /.well-known/openid-configuration   discovery; issuer is
                                           https://127.0.0.1:PORT
  GET  /wrong-issuer/.well-known/...       discovery naming another issuer
  GET  /big/.well-known/...                a 300 KiB discovery document
  GET  /big-unsized/.well-known/...        the same without a Content-Length
  GET  /jwks                               the published keys
  GET  /authorize?...                      checks the request, 302 to the
                                           redirect_uri with code and state
                                           (no login page)
  POST /token                              checks client auth, the code (single
                                           use), redirect_uri and the PKCE
                                           verifier; returns a signed ID token

The test picks a misbehaviour per login with an extra authorize parameter
test_mode: bad_sig, wrong_aud, expired, wrong_nonce, wrong_iss, iat_future,
rotate (sign with a second key, published from then on), none (alg none).
test_groups=a,b sets the "groups" claim.
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    def __init__(self, workdir, kid):
        self.kid = kid
        self.path = os.path.join(workdir, kid + ".pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA",
                        "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.path],
                       check=True, capture_output=True)
        out = subprocess.run(["openssl", "rsa", "-in", self.path, "-noout",
                              "-modulus"], check=True, capture_output=True,
                             text=True).stdout
        modulus = bytes.fromhex(out.strip().split("=", 1)[1])
        self.jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64url(modulus),
                    "e": b64url((65537).to_bytes(3, "big"))}

    def sign(self, data):
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                               self.path], input=data, check=True,
                              capture_output=True).stdout


class IdP:
    def __init__(self, args):
        self.client_id = args.client_id
        self.client_secret = args.client_secret
        self.keys = [Key(args.workdir, "key-1"), Key(args.workdir, "key-2")]
        self.published = 1
        self.codes = {}
        self.issuer = None

    def id_token(self, grant):
        now = int(time.time())
        mode = grant["mode"]
        claims = {"iss": self.issuer, "sub": "user-42", "aud": self.client_id,
                  "exp": now + 300, "iat": now, "nonce": grant["nonce"],
                  "email": "ada@example.test", "email_verified": True,
                  "preferred_username": "ada", "name": "Ada Lovelace",
                  "groups": grant["groups"]}
        if mode == "wrong_aud":
            claims["aud"] = "someone-else"
        elif mode == "expired":
            claims["exp"] = now - 3600
            claims["iat"] = now - 7200
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-of-this-login"
        elif mode == "wrong_iss":
            claims["iss"] = self.issuer + "/other"
        elif mode == "iat_future":
            claims["iat"] = now + 3600
        key = self.keys[0]
        if mode == "rotate":
            self.published = 2
            key = self.keys[1]
        header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
        if mode == "none":
            header = {"alg": "none", "typ": "JWT"}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        if mode == "none":
            return signing_input + "."
        sig = bytearray(key.sign(signing_input.encode()))
        if mode == "bad_sig":
            sig[10] ^= 0x01
        return signing_input + "." + b64url(bytes(sig))


class Handler(BaseHTTPRequestHandler):
    server_version = "oidc-test-idp"
    timeout = 10

    def log_message(self, fmt, *args):
        sys.stderr.write("idp: " + (fmt % args) + "\n")

    def send_json(self, status, doc, extra=None, length=True):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length:      # without it, the body ends when the connection does
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def discovery(self, issuer):
        base = self.server.idp.issuer
        return {"issuer": issuer,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported":
                    ["client_secret_basic", "client_secret_post"]}

    def do_GET(self):
        idp = self.server.idp
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/.well-known/openid-configuration":
            return self.send_json(200, self.discovery(idp.issuer))
        if url.path == "/wrong-issuer/.well-known/openid-configuration":
            return self.send_json(200, self.discovery(idp.issuer + "/other"))
        for big in ("/big", "/big-unsized"):
            if url.path == big + "/.well-known/openid-configuration":
                doc = self.discovery(idp.issuer + big)
                doc["padding"] = "x" * (300 * 1024)
                return self.send_json(200, doc, length=big == "/big")
        if url.path == "/jwks":
            keys = [k.jwk for k in idp.keys[:idp.published]]
            return self.send_json(200, {"keys": keys})
        if url.path == "/authorize":
            return self.authorize(urllib.parse.parse_qs(url.query))
        self.send_json(404, {"error": "not_found"})

    def authorize(self, q):
        one = {k: v[0] for k, v in q.items() if len(v) == 1}
        idp = self.server.idp
        if (one.get("response_type") != "code" or
                one.get("client_id") != idp.client_id or
                "openid" not in one.get("scope", "").split() or
                one.get("code_challenge_method") != "S256" or
                len(one.get("code_challenge", "")) != 43 or
                not one.get("state") or not one.get("nonce") or
                not one.get("redirect_uri", "").startswith("https://")):
            return self.send_json(400, {"error": "invalid_request"})
        code = secrets.token_urlsafe(24)
        groups = one.get("test_groups", "")
        idp.codes[code] = {"nonce": one["nonce"],
                           "challenge": one["code_challenge"],
                           "redirect_uri": one["redirect_uri"],
                           "mode": one.get("test_mode", ""),
                           "groups": groups.split(",") if groups else []}
        location = one["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"code": code, "state": one["state"]})
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def client_ok(self, form):
        idp = self.server.idp
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:], validate=True).decode()
            cid, _, sec = raw.partition(":")
            cid, sec = urllib.parse.unquote(cid), urllib.parse.unquote(sec)
            if "client_secret" in form:
                return False        # one method only (RFC 6749 2.3)
        else:
            cid = form.get("client_id", "")
            sec = form.get("client_secret", "")
        return (cid == idp.client_id and
                secrets.compare_digest(sec, idp.client_secret))

    def do_POST(self):
        idp = self.server.idp
        if urllib.parse.urlsplit(self.path).path != "/token":
            return self.send_json(404, {"error": "not_found"})
        length = int(self.headers.get("Content-Length", "0"))
        if length > 65536:
            return self.send_json(413, {"error": "invalid_request"})
        body = self.rfile.read(length).decode()
        q = urllib.parse.parse_qs(body, keep_blank_values=True)
        form = {k: v[0] for k, v in q.items() if len(v) == 1}
        if not self.client_ok(form):
            return self.send_json(401, {"error": "invalid_client"},
                                  {"WWW-Authenticate": "Basic"})
        if form.get("grant_type") != "authorization_code":
            return self.send_json(400, {"error": "unsupported_grant_type"})
        grant = idp.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return self.send_json(400, {"error": "invalid_grant"})
        verifier = form.get("code_verifier", "")
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        if len(verifier) < 43 or challenge != grant["challenge"]:
            return self.send_json(400, {"error": "invalid_grant"})
        self.send_json(200, {"access_token": secrets.token_urlsafe(32),
                             "token_type": "Bearer", "expires_in": 300,
                             "id_token": idp.id_token(grant)})


def watchdog(parent, lifetime):
    """Exit when the test that started us is gone (even if it crashed
    before it could stop us), or after lifetime seconds at most."""
    end = time.monotonic() + lifetime
    while os.getppid() == parent and time.monotonic() < end:
        time.sleep(0.5)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--lifetime", type=int, default=600)
    args = ap.parse_args()
    threading.Thread(target=watchdog,
                     args=(args.parent_pid or os.getppid(), args.lifetime),
                     daemon=True).start()

    idp = IdP(args)
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.idp = idp
    port = server.server_address[1]
    idp.issuer = "https://127.0.0.1:%d" % port
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
