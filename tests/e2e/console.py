"""The web console's test harness (M8): Debian's Chromium, headless,
driven through Debian's chromium-driver with python3-selenium, against a
real `wharf serve` that the test started.

  Browser(base)        a fresh Chromium (own --user-data-dir, background
                       networking off: nothing but 127.0.0.1 is contacted)
  .open(path)          load a console URL and wait for the app to start
  .find / .wait_for    CSS selectors; .wait_text(css, text)
  .fill / .click / .press_tab
  .check()             fail on any console error, CSP violation, script
                       error or failed request in the page since the last
                       check, except those announced with .expect(...)
  .shot(name)          screenshot into build/console-screenshots/ at the
                       current viewport (1280x800 or 390x844)
  .axe()               run axe-core (tests/console/node_modules, never
                       shipped) in the page; fail on serious or critical
                       violations
  .sign_in(user, pw, code=None)  the login form, then wait for the shell

Chromium writes its log through goog:loggingPrefs: console messages,
"Refused to ..." CSP reports, uncaught exceptions, and a line per HTTP
error status or failed load.
"""
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, wait_until

SHOTS = REPO / "build" / "console-screenshots"
AXE = REPO / "tests" / "console" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--no-default-browser-check",
                  "--disable-features=Translate,OptimizationHints,"
                  "MediaRouter,AutofillServerCommunication,"
                  "PasswordManagerOnboarding,PasswordLeakDetection",
                  "--disable-dev-shm-usage", "--password-store=basic",
                  "--lang=en-US")


def _selenium():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
    except ImportError:
        pytest.fail("python3-selenium is missing: scripts/deps.sh test",
                    pytrace=False)
    return webdriver, Service, By, Keys


def _exe(*names):
    for n in names:
        p = shutil.which(n) or (Path("/usr/bin") / n if (Path("/usr/bin") / n).exists() else None)
        if p:
            return str(p)
    pytest.fail(f"{names[0]} is missing: scripts/deps.sh test installs "
                "chromium and chromium-driver", pytrace=False)


class Browser:
    def __init__(self, base, tmp, viewport="desktop"):
        webdriver, Service, self.By, self.Keys = _selenium()
        self.base = base.rstrip("/")
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
        o = webdriver.ChromeOptions()
        o.binary_location = _exe("chromium", "chromium-browser")
        for a in CHROMIUM_FLAGS:
            o.add_argument(a)
        o.add_argument(f"--user-data-dir={self.profile}")
        w, h = VIEWPORTS[viewport]
        o.add_argument(f"--window-size={w},{h}")
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        o.set_capability("acceptInsecureCerts", True)   # self-signed cert
        # no password manager or autofill pop-ups: they swallow the next
        # click after typing, as a real user's saved profile would not
        o.add_experimental_option("prefs", {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "profile.password_manager_leak_detection": False,
            "autofill.enabled": False,
            "autofill.profile_enabled": False,
            "autofill.credit_card_enabled": False})
        self.driver = webdriver.Chrome(
            service=Service(_exe("chromedriver")), options=o)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)
        self.viewport = viewport
        self.allowed = []       # [(regex, count left or None)]
        self.problems = []

    # ---- viewport, navigation ---------------------------------------------

    def set_viewport(self, name):
        w, h = VIEWPORTS[name]
        # the window's inner size is what a page sees: set it exactly
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": w, "height": h, "deviceScaleFactor": 1,
            "mobile": name == "phone"})
        self.viewport = name

    def open(self, path="/"):
        self.driver.get(self.base + path)
        self.wait_for("#main")
        return self

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    @property
    def url(self):
        return self.driver.current_url

    def go(self, hash_path):
        """Follow the console's router to #hash_path, as a link would."""
        self.js("location.hash = arguments[0]", hash_path)

    # ---- finding and acting -------------------------------------------------

    def find(self, css):
        return self.driver.find_element(self.By.CSS_SELECTOR, css)

    def find_all(self, css):
        return self.driver.find_elements(self.By.CSS_SELECTOR, css)

    @staticmethod
    def redrawn_is_none(fn):
        """fn() or None when the page redrew the element fn read between
        finding and reading it: a wait tries again on its next round."""
        from selenium.common.exceptions import StaleElementReferenceException

        def attempt():
            try:
                return fn()
            except StaleElementReferenceException:
                return None
        return attempt

    def wait_for(self, css, timeout=30, visible=True):
        def ready():
            for el in self.find_all(css):
                if not visible or el.is_displayed():
                    return el
            return None
        try:
            return wait_until(self.redrawn_is_none(ready), timeout=timeout,
                              interval=0.1, desc=f"{css} on {self.url}")
        except AssertionError as e:
            raise AssertionError(f"{e}\npage text: {self.main_text()[:1500]!r}"
                                 f"\nlog: {self.driver.get_log('browser')}"
                                 f"\nresources: {self.resources()}")

    def wait_gone(self, css, timeout=30):
        wait_until(self.redrawn_is_none(
                       lambda: not [e for e in self.find_all(css)
                                    if e.is_displayed()]),
                   timeout=timeout, interval=0.1, desc=f"{css} to go")

    def wait_text(self, css, text, timeout=30):
        def has():
            for el in self.find_all(css):
                if text in el.text:
                    return el
            return None
        return wait_until(self.redrawn_is_none(has), timeout=timeout,
                          interval=0.1,
                          desc=f"{text!r} in {css} on {self.url}; page: "
                               f"{self.main_text()[:800]!r}")

    def resources(self):
        return self.js("return performance.getEntriesByType('resource')"
                       ".map(e => e.name + ' ' + e.responseStatus + ' ' +"
                       " Math.round(e.duration))")

    def main_text(self):
        try:
            return self.find("body").text
        except Exception:       # noqa: BLE001 - page between loads
            return ""

    def fill(self, css, text, clear=True):
        el = self.wait_for(css)
        if clear:
            el.clear()
        el.send_keys(text)
        self.dismiss_suggestions(el)
        return el

    def fill_label(self, label, text, scope="#main"):
        """The input whose <label> reads `label` (the accessible way)."""
        el = self.by_label(label, scope)
        el.clear()
        el.send_keys(text)
        self.dismiss_suggestions(el)
        return el

    def dismiss_suggestions(self, el):
        """Escape, as a user does: Chromium's list of earlier entries of a
        field (autocomplete="username" ...) would take the next click."""
        if el.tag_name == "input":
            self.type_keys(self.Keys.ESCAPE)    # to the focused field

    def by_label(self, label, scope="#main"):
        def hit():
            for lab in self.find_all(f"{scope} label"):
                if lab.text.strip() == label and lab.is_displayed():
                    return self.find("#" + lab.get_attribute("for"))
            return None
        return wait_until(hit, timeout=30, interval=0.1,
                          desc=f"a field labelled {label!r}")

    def click(self, css):
        el = self.wait_for(css)
        self.press(el)
        return el

    def press(self, el):
        """Activate a button or link. Dispatched in the page (after
        scrolling it into view), not as a mouse event at its position:
        headless Chromium's own pop-ups (a field's earlier entries) sit
        above the page and take the first mouse click after typing. The
        keyboard tests press real keys."""
        wait_until(lambda: el.is_displayed() and el.is_enabled(), timeout=30,
                   desc=f"{el.get_attribute('outerHTML')[:200]} to be usable")
        self.js("arguments[0].scrollIntoView({block: 'center'});"
                "if (arguments[0].click) arguments[0].click(); else "
                "arguments[0].dispatchEvent(new MouseEvent('click', "
                "{bubbles: true, cancelable: true}));", el)

    def click_text(self, text, tag="button", scope="#main"):
        def hit():
            for el in self.find_all(f"{scope} {tag}"):
                if el.text.strip() == text and el.is_displayed() and el.is_enabled():
                    return el
            return None
        el = wait_until(hit, timeout=30, interval=0.1,
                        desc=f"<{tag}> {text!r}")
        self.press(el)
        return el

    def texts(self, css):
        """The texts of css's elements (read again if the page redrew
        them meanwhile)."""
        from selenium.common.exceptions import StaleElementReferenceException
        for _ in range(20):
            try:
                return [e.text for e in self.find_all(css)]
            except StaleElementReferenceException:
                time.sleep(0.1)
        return [e.text for e in self.find_all(css)]

    def press_tab(self, times=1, shift=False):
        from selenium.webdriver.common.action_chains import ActionChains
        a = ActionChains(self.driver)
        for _ in range(times):
            if shift:
                a.key_down(self.Keys.SHIFT).send_keys(self.Keys.TAB).key_up(self.Keys.SHIFT)
            else:
                a.send_keys(self.Keys.TAB)
        a.perform()
        return self.driver.switch_to.active_element

    def type_keys(self, *keys):
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(self.driver).send_keys(*keys).perform()

    # ---- the page's log -------------------------------------------------------

    def expect(self, pattern, count=1):
        """Allow `count` log lines matching pattern (a request the test
        makes fail on purpose, e.g. a refused login: 401)."""
        self.allowed.append([re.compile(pattern), count])

    def _allowed(self, msg):
        for a in self.allowed:
            if a[0].search(msg) and (a[1] is None or a[1] > 0):
                if a[1] is not None:
                    a[1] -= 1
                return True
        return False

    def check(self):
        """Fail on errors in the page since the last check."""
        for e in self.driver.get_log("browser"):
            msg = e.get("message", "")
            bad = (e.get("level") == "SEVERE" or "Content Security Policy" in msg
                   or "Refused to" in msg)
            if bad and not self._allowed(msg):
                self.problems.append(f"{e.get('level')} {e.get('source')}: {msg}")
        problems, self.problems = self.problems, []
        assert not problems, "errors in the console page:\n" + "\n".join(problems)

    # ---- screenshots and accessibility -----------------------------------------

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        w, h = VIEWPORTS[self.viewport]
        path = SHOTS / f"{name}-{w}x{h}.png"
        time.sleep(0.2)         # let a layout change finish painting
        self.driver.save_screenshot(str(path))
        return path

    def shots(self, name):
        """A screenshot at both viewports (back to desktop after)."""
        for v in ("desktop", "phone"):
            self.set_viewport(v)
            self.shot(name)
            if v == "phone":
                self.assert_fits()
        self.set_viewport("desktop")

    def assert_fits(self):
        """At the phone viewport nothing but wide tables (which scroll in
        their own box) makes the page scroll sideways."""
        over = self.js("return document.documentElement.scrollWidth - "
                       "document.documentElement.clientWidth")
        assert over <= 1, (f"the page is {over}px wider than the "
                           f"{self.viewport} viewport")

    def axe(self, what):
        if not AXE.is_file():
            pytest.fail(f"{AXE} is missing: scripts/deps.sh test runs npm ci "
                        "in tests/console", pytrace=False)
        self.js(AXE.read_text())
        res = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(JSON.stringify(r.violations)))"
            ".catch(e => done(JSON.stringify([{id: 'axe-error', impact: 'critical', "
            "description: String(e), nodes: []}])));")
        bad = [v for v in json.loads(res)
               if v.get("impact") in ("serious", "critical")]
        assert not bad, f"accessibility ({what}): " + "\n".join(
            f"{v['id']} ({v['impact']}): {v.get('description')} at "
            f"{[n.get('target') for n in v.get('nodes', [])][:5]}"
            for v in bad)

    # ---- the console's own steps ------------------------------------------------

    def sign_in(self, user, password, code=None):
        self.open("/")
        self.wait_for("#login")
        self.fill_label("User name", user)
        self.fill_label("Password", password)
        if code is not None:
            self.click("#login-submit")
            self.by_label("Code from your authenticator app, or a recovery code")
            self.expect(r"/api/v1/auth/login .*401")
            self.fill_label("Code from your authenticator app, or a recovery code", code)
        self.click("#login-submit")

    def signed_in(self):
        return self.wait_for("#whoami")

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser(tmp_path):
    """Factory: browser(base_url, viewport="desktop") -> Browser; each one
    is checked for page errors and closed at the end."""
    made = []

    def make(base, viewport="desktop"):
        b = Browser(base, tmp_path, viewport)
        made.append(b)
        return b
    yield make
    for b in made:
        b.quit()
