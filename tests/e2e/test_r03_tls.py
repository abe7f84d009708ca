"""
R3 (transport security), R22 (separate listeners): the TLS policy of both
HTTPS listeners, driven from outside with the `openssl s_client` CLI and
nmap's ssl-enum-ciphers script.

Every refusal is paired with a positive control made by the same client in
the same way, so a test cannot pass because the client could not connect
at all; and refusals are checked to come from the server (its alert), not
from the client's own configuration (the client is run at SECLEVEL=0 so it
really offers TLS 1.0/1.1 and weak suites).

The policy is checked against a server with the ECDSA certificate that
`wharf init` makes AND against one with an RSA certificate (made here with
the openssl CLI): a static-RSA or ECDHE-RSA suite can only be tested
against an RSA key.
"""
import re
import shutil
import subprocess

import pytest

from conftest import new_data_dir, tune_conf

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr}"
    return p


def s_client(port, *args, data=REQUEST, cert=None, key=None):
    """openssl s_client to 127.0.0.1:port; returns its stdout+stderr."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
            "-servername", "localhost", "-ign_eof", *args]
    if cert:
        argv += ["-cert", str(cert), "-key", str(key)]
    p = subprocess.run(argv, input=data, capture_output=True, timeout=30)
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def negotiated(out):
    """(protocol, cipher) of a completed handshake, or None."""
    m = re.search(r"^New, (TLSv[\d.]+), Cipher is (\S+)", out, re.M)
    if not m or m.group(2) == "(NONE)":
        return None
    return m.group(1), m.group(2)


def http_status(out):
    m = re.search(r"^HTTP/1\.1 (\d{3}) ", out, re.M)
    return int(m.group(1)) if m else None


# ---- servers ------------------------------------------------------------------


def make_rsa_pair(tmp_path):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", "rsa-key.pem", "-out", "rsa-cert.pem", cwd=tmp_path)
    (tmp_path / "rsa-key.pem").chmod(0o600)
    return tmp_path / "rsa-cert.pem", tmp_path / "rsa-key.pem"


@pytest.fixture(params=["ecdsa", "rsa"])
def policy_server(request, wharf, start_server, tmp_path):
    """A running server with the generated ECDSA certificate or an RSA one.
    Yields (kind, admin_port, partner_port)."""
    data = new_data_dir(wharf, tmp_path / "data")
    if request.param == "rsa":
        cert, key = make_rsa_pair(tmp_path)
        tune_conf(data, tls_cert=cert, tls_key=key)
    srv = start_server(data)
    admin, partner = srv.wait_listening()
    yield request.param, admin, partner
    srv.stop()


def good_suite(kind):
    return ("ECDHE-ECDSA-AES128-GCM-SHA256" if kind == "ecdsa"
            else "ECDHE-RSA-AES128-GCM-SHA256")


# ---- protocol versions ------------------------------------------------------------


@pytest.mark.parametrize("listener", ["admin", "partner"])
@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_r03_old_tls_versions_refused(policy_server, listener, version):
    kind, admin, partner = policy_server
    port = admin if listener == "admin" else partner
    out = s_client(port, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert negotiated(out) is None, out
    assert "alert protocol version" in out, (
        "the refusal must come from the server's protocol_version alert:\n"
        + out)
    # control: the same client gets TLS 1.2 when it asks for it
    ok = s_client(port, "-tls1_2", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert negotiated(ok) and negotiated(ok)[0] == "TLSv1.2", ok


def test_r03_tls13_negotiated_by_default(policy_server):
    kind, admin, partner = policy_server
    for port in (admin, partner):
        out = s_client(port)
        assert negotiated(out) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), out
        assert "Compression: NONE" in out, out


# ---- suites ------------------------------------------------------------------------

WEAK_TLS12 = {
    "ecdsa": ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA",
              "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES256-SHA",
              # the brief's examples (need RSA; refused here in any case)
              "AES128-SHA256", "ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256"],
    "rsa": ["AES128-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA256",
            "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA",
            "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-SHA256"],
}


@pytest.mark.parametrize("listener", ["admin", "partner"])
def test_r03_cbc_and_non_forward_secret_suites_refused(policy_server,
                                                       listener):
    kind, admin, partner = policy_server
    port = admin if listener == "admin" else partner
    for suite in WEAK_TLS12[kind]:
        out = s_client(port, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
        assert negotiated(out) is None, f"{suite} was accepted:\n{out}"
        assert "alert handshake failure" in out, (
            f"{suite}: expected the server's handshake_failure alert:\n{out}")
    # control: the forward-secret AEAD suite of the same key type works
    ok = s_client(port, "-tls1_2", "-cipher", good_suite(kind))
    assert negotiated(ok) == ("TLSv1.2", good_suite(kind)), ok


def test_r03_server_prefers_strongest_suite(policy_server):
    """The client lists AES-128 first; the server's order (AES-256 first)
    wins, in TLS 1.2 and in TLS 1.3."""
    kind, admin, partner = policy_server
    sig = "ECDSA" if kind == "ecdsa" else "RSA"
    out = s_client(admin, "-tls1_2", "-cipher",
                   f"ECDHE-{sig}-AES128-GCM-SHA256:ECDHE-{sig}-AES256-GCM-SHA384")
    assert negotiated(out) == ("TLSv1.2", f"ECDHE-{sig}-AES256-GCM-SHA384"), out
    out = s_client(admin, "-ciphersuites",
                   "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")
    assert negotiated(out) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), out


def test_r03_no_session_resumption(policy_server):
    """Tickets off and no session cache: a reconnect is a full handshake."""
    kind, admin, partner = policy_server
    out = s_client(admin, "-tls1_2", "-reconnect")
    assert negotiated(out) is not None, out
    assert "Reused," not in out, out
    assert out.count("New, TLSv1.2") >= 6, out
    assert "TLS session ticket:" not in out, out


# ---- nmap ssl-enum-ciphers ------------------------------------------------------------


def test_r03_nmap_lists_only_strong_suites(policy_server):
    kind, admin, partner = policy_server
    nmap = shutil.which("nmap")
    assert nmap, "nmap is needed (scripts/deps.sh test installs it)"
    for port in (admin, partner):
        p = subprocess.run([nmap, "-Pn", "-n", "--script", "ssl-enum-ciphers",
                            "-p", str(port), "127.0.0.1"],
                           capture_output=True, text=True, timeout=300)
        out = p.stdout
        assert p.returncode == 0, p.stderr
        assert "TLSv1.2:" in out and "TLSv1.3:" in out, (
            f"nmap did not enumerate the listener:\n{out}")
        for bad in ("TLSv1.0:", "TLSv1.1:", "SSLv3:", "_CBC_", "RC4", "3DES",
                    "NULL_", "TLS_RSA_WITH_", "TLS_DHE_", "least strength: B",
                    "least strength: C", "least strength: F"):
            assert bad not in out, f"nmap reports {bad}:\n{out}"
        suites = re.findall(r"\|\s+(TLS_\w+)", out)
        assert suites, out
        assert all("_GCM_" in s or "CHACHA20_POLY1305" in s for s in suites), out
        assert "least strength: A" in out, out


# ---- mutual TLS --------------------------------------------------------------------------


def make_ca(tmp_path, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", f"/CN={name} CA", "-keyout", f"{name}-ca.key",
            "-out", f"{name}-ca.pem", cwd=tmp_path)
    return tmp_path / f"{name}-ca.pem", tmp_path / f"{name}-ca.key"


def make_client(tmp_path, ca, ca_key, name):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=tmp_path)
    ext = tmp_path / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext,
            "-out", f"{name}.pem", cwd=tmp_path)
    return tmp_path / f"{name}.pem", tmp_path / f"{name}.key"


@pytest.fixture
def mtls(wharf, start_server, tmp_path):
    """Admin listener with a client CA (mutual TLS), partner without.
    Yields (admin, partner, trusted (cert, key), untrusted (cert, key))."""
    ca, ca_key = make_ca(tmp_path, "partners")
    rogue, rogue_key = make_ca(tmp_path, "rogue")
    good = make_client(tmp_path, ca, ca_key, "good-client")
    bad = make_client(tmp_path, rogue, rogue_key, "bad-client")
    data = new_data_dir(wharf, tmp_path / "data")
    tune_conf(data, admin_client_ca=ca, ban_after_failures=1000)
    srv = start_server(data)
    admin, partner = srv.wait_listening()
    yield admin, partner, good, bad
    srv.stop()


def test_r03_mutual_tls_accepts_trusted_client(mtls):
    admin, partner, good, bad = mtls
    for version in ("-tls1_3", "-tls1_2"):
        out = s_client(admin, version, cert=good[0], key=good[1])
        assert negotiated(out), out
        assert http_status(out) == 200, out
        assert "Acceptable client certificate CA names" in out, out
        assert "CN = partners CA" in out, out


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_r03_mutual_tls_refuses_untrusted_and_missing(mtls, version):
    admin, partner, good, bad = mtls
    untrusted = s_client(admin, version, cert=bad[0], key=bad[1])
    assert http_status(untrusted) is None, untrusted
    assert re.search(r"alert (unknown ca|certificate unknown|bad certificate)",
                     untrusted), untrusted
    missing = s_client(admin, version)
    assert http_status(missing) is None, missing
    assert "alert certificate required" in missing or \
        "alert handshake failure" in missing, missing
    # control: without a client CA (partner listener) no certificate is
    # asked for and the same client gets an HTTP answer (404: not routed)
    plain = s_client(partner, version)
    assert http_status(plain) == 404, plain
    assert "Acceptable client certificate CA names" not in plain, plain


# ---- the certificate `wharf init` makes ------------------------------------------------


def test_r03_init_certificate_verifies_for_localhost(wharf, start_server,
                                                     tmp_path):
    """The self-signed ECDSA P-256 certificate of `wharf init` is trusted by
    a verifying client (host name checks on) for localhost and 127.0.0.1;
    its key is mode 0600 in a 0700 folder; a wrong name is refused."""
    import socket
    import ssl
    import stat
    data = new_data_dir(wharf, tmp_path / "data")
    tls = data / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    text = openssl("x509", "-in", tls / "cert.pem", "-noout", "-text",
                   cwd=tmp_path).stdout
    assert "ASN1 OID: prime256v1" in text and "ecdsa-with-SHA256" in text
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    srv = start_server(data)
    admin, partner = srv.wait_listening()
    ctx = ssl.create_default_context(cafile=str(tls / "cert.pem"))
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", admin), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                assert s.version() == "TLSv1.3"
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", admin), timeout=10) as raw:
            ctx.wrap_socket(raw, server_hostname="wharf.example.org")
    srv.stop()
