"""
R24 on the console (issue "Security operations", part 3: "the same report
... on the console's dashboard"), in Debian's Chromium against a real
`wharf serve`: an auditor's dashboard shows the posture report's counts
and every check that does not pass, with what to do and its Annex A
controls, as GET /api/v1/posture says; an operator (no posture.read) sees
no such card and the console asks nothing of the route.
"""
import json

from conftest import wait_until
from console import browser  # noqa: F401 - fixture
from test_r14_api import cli_user, new_password


def test_r24_console_dashboard_shows_the_posture(wharf, data_dir,
                                                 start_server, browser):
    ana = cli_user(wharf, data_dir, "ana", "auditor", new_password())
    otto = cli_user(wharf, data_dir, "otto", "operator", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    want = json.loads(wharf("doctor", "--data", data_dir,
                            "--json").stdout)["checks"]
    open_checks = {c["id"]: c for c in want if c["status"] != "PASS"}
    assert "users.admin_mfa" in open_checks          # a FAIL to show

    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("ana", ana)
    b.signed_in()
    b.wait_for("#h-posture")
    counts = wait_until(lambda: (lambda t: t if "pass" in t else None)(
        b.find("#posture").text), desc="the posture counts")
    n = {s: sum(1 for c in want if c["status"] == s)
         for s in ("PASS", "WARN", "FAIL")}
    assert f"{n['PASS']} pass, {n['WARN']} warn, {n['FAIL']} fail" in counts
    rows = b.find_all("table.posture tr.check")
    shown = {r.get_attribute("data-id"): r.text for r in rows}
    assert set(shown) == set(open_checks), (set(shown), set(open_checks))
    mfa = shown["users.admin_mfa"]
    assert "fail" in mfa and "A.5.17 A.8.5" in mfa, mfa
    # FAILs first
    first = rows[0].get_attribute("data-id")
    assert open_checks[first]["status"] == "FAIL", first
    b.check()
    b.axe("dashboard with the posture report")
    b.shots("30-dashboard-posture")

    o = browser(f"https://127.0.0.1:{port}")
    o.sign_in("otto", otto)
    o.signed_in()
    o.wait_for("#h-hours")
    assert o.find_all("#h-posture") == []
    o.check()
    log = (data_dir / "logs" / "wharf.log").read_text()
    assert "/api/v1/posture" not in log or "403" not in log
    srv.check_alive()
    srv.stop()
