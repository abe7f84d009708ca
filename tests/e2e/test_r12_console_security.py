"""
R12/R13 for the web console (M8): the OWASP checks of the issue, against
a real `wharf serve`.

  - every console asset comes from the binary, on the admin listener
    only (the partner listener answers 404), with a strict CSP (no inline
    script, no eval, frame-ancestors 'none'), X-Frame-Options DENY, HSTS,
    nosniff, Referrer-Policy no-referrer; API answers are not cached;
  - the pages hold no inline script, style or event handler, and the
    scripts never parse strings as markup or code (innerHTML, eval, ...):
    what a partner or user controls can only ever be text;
  - clickjacking: a page of another origin that frames the console gets
    nothing (Chromium refuses the frame);
  - CSRF: a state-changing call of a signed-in console without the
    session's X-CSRF-Token is 403, and a page of another site posting a
    form to the API is refused (SameSite=Strict cookie: 401, no change).
"""
import http.server
import re
import threading
from pathlib import Path

from conftest import REPO, wait_until
from console import browser  # noqa: F401 - fixture
from test_r14_api import Api, Session, cli_user, new_password

WEB = REPO / "web"
JS_BANNED = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|"
                       r"document\.write|eval\s*\(|new\s+Function|"
                       r"setTimeout\(\s*['\"`]|setInterval\(\s*['\"`])")


def assets():
    return sorted("/" + str(p.relative_to(WEB)) for p in WEB.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def csp_directives(value):
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def test_r12_console_assets_headers_admin_listener_only(data_dir,
                                                        start_server):
    srv = start_server(data_dir)
    admin, partner = srv.wait_listening()
    api, other = Api(admin), Api(partner)
    names = assets()
    assert "/index.html" in names and "/js/app.js" in names, names
    for path in ["/"] + names:
        r = api.request("GET", path)
        assert r.status == 200, r
        assert r.body == (WEB / ("index.html" if path == "/" else path[1:])
                          ).read_bytes(), f"{path}: not the file of web/"
        csp = csp_directives(r.header("Content-Security-Policy") or "")
        assert csp.get("default-src") == ["'none'"], (path, csp)
        assert csp.get("script-src") == ["'self'"], (path, csp)
        assert csp.get("frame-ancestors") == ["'none'"], (path, csp)
        assert not any("unsafe" in w or w == "*" or w.startswith("http")
                       for ws in csp.values() for w in ws), (path, csp)
        assert r.header("X-Frame-Options") == "DENY", path
        assert r.header("X-Content-Type-Options") == "nosniff", path
        assert "max-age=" in (r.header("Strict-Transport-Security") or "")
        assert r.header("Referrer-Policy") == "no-referrer", path
        # the partner listener serves no console
        o = other.request("GET", path)
        assert o.status == 404 and b"<html" not in o.body.lower(), o
    assert api.request("GET", "/no-such-page.html").status == 404
    assert api.request("POST", "/").status == 405
    # API answers: no caching, the same headers
    r = api.request("GET", "/api/v1/auth/methods")
    assert r.status == 200 and r.header("Cache-Control") == "no-store", r
    assert r.header("X-Frame-Options") == "DENY"
    srv.stop()


def test_r12_console_has_no_inline_code_and_no_markup_strings():
    html = (WEB / "index.html").read_text()
    for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in m.group(1) and not m.group(2).strip(), m.group(0)
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"<style\b|\sstyle\s*=", html), "inline style"
    for p in WEB.rglob("*.js"):
        text = p.read_text()
        hits = [m.group(0) for m in JS_BANNED.finditer(text)]
        assert not hits, f"{p.relative_to(REPO)}: {hits}"
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), p
        assert "https://" not in text, f"{p}: names an outside URL"


class Attacker(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *a):
        pass


def attacker_site(page):
    handler = type("H", (Attacker,), {"page": page.encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_r12_console_clickjacking_and_csrf_refused(wharf, data_dir,
                                                  start_server, browser):
    pw = cli_user(wharf, data_dir, "omar", "operator", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    base = f"https://127.0.0.1:{port}"
    b = browser(base)
    b.sign_in("omar", pw)
    b.signed_in()
    b.check()

    # CSRF: the console's own origin, the session cookie, no token: 403
    res = b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/v1/auth/logout', {method: 'POST', credentials: 'same-origin'})
          .then(r => r.json().then(j => done([r.status, j.error && j.error.code])))
          .catch(e => done([0, String(e)]));""")
    assert res == [403, "csrf"], res
    b.expect(r"auth/logout - Failed to load resource.*403")
    b.check()
    # still signed in: the refused call changed nothing
    b.go("/account")
    b.wait_text("#main h1", "My account")

    # another site frames the console and posts a form to the API
    evil = attacker_site(
        f'<html><body><iframe id="f" src="{base}/" width="600" '
        f'height="400"></iframe><form id="x" method="POST" '
        f'action="{base}/api/v1/auth/logout"></form></body></html>')
    try:
        b.driver.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        b.wait_for("#f")
        framed = b.driver.find_element(b.By.ID, "f")
        b.driver.switch_to.frame(framed)
        # Chromium shows its own error page instead of the console
        assert not b.find_all("#main"), "the console rendered inside a frame"
        b.driver.switch_to.default_content()
        b.expect(r"frame-ancestors|Refused to (display|frame)", count=None)
        b.expect(r"Failed to load resource", count=None)
        b.js("document.getElementById('x').submit()")
        wait_until(lambda: "/api/v1/auth/logout" in b.url,
                   desc="the cross-site form post")
        assert "unauthorized" in b.main_text(), b.main_text()
        # the session is alive: the cross-site post did not log it out
        # (SameSite=Strict kept the cookie home; no CSRF token either)
        b.open("/")
        b.signed_in()
        b.check()
    finally:
        evil.shutdown()
        evil.server_close()
    srv.stop()
