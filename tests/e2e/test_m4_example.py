"""M4: the two-partner example (examples/two-partners/run.sh) runs end to
end with the binary under test: two Wharf instances on 127.0.0.1, one
message A -> B signed + encrypted + compressed with a signed synchronous
MDN, one with a signed asynchronous MDN, and what each side recorded
printed. The script stops both servers itself and fails on a non-zero
exit or a sanitizer report of either server; this test also checks its
own output for sanitizer reports (the CLI commands it runs)."""
import os
import re
import subprocess

from conftest import REPO, assert_no_sanitizer_report, child_env

SCRIPT = REPO / "examples" / "two-partners" / "run.sh"


def test_m4_two_partner_example_runs(wharf_bin, tmp_path):
    env = child_env()
    env["WHARF_BIN"] = str(wharf_bin)
    env["TMPDIR"] = str(tmp_path)       # its work dir, removed on success
    env.pop("WHARF_KEEP", None)
    p = subprocess.run([str(SCRIPT)], capture_output=True, text=True,
                       errors="replace", timeout=300, env=env,
                       cwd=tmp_path, stdin=subprocess.DEVNULL)
    out = p.stdout
    assert_no_sanitizer_report(p.stderr, "two-partners/run.sh")
    assert_no_sanitizer_report(out, "two-partners/run.sh")
    assert p.returncode == 0, (
        f"exit {p.returncode}\nstdout: {out[-4000:]}\nstderr: "
        f"{p.stderr[-4000:]}")

    for line in ("order-1.edi: sent at A, arrived at B byte for byte",
                 "invoice-2.edi: sent at A, arrived at B byte for byte",
                 "both servers loaded flow generation 2",
                 "both servers stopped (exit 0)",
                 "  order-1.edi    signed synchronous MDN verified at A",
                 "  invoice-2.edi  signed asynchronous MDN verified at A"):
        assert line in out.splitlines(), f"{line!r} not printed:\n{out}"
    assert out.rstrip().endswith("two-partners: OK"), out[-2000:]

    # What each side recorded, as printed: two messages on each side, all
    # sent; A's as2-b hops sent on signed MDNs, one after waiting for the
    # asynchronous MDN; the MDNs stored on both sides; certificates and
    # partners listed.
    assert out.count("== partner a: wharf message show ") == 2, out
    assert out.count("== partner b: wharf message show ") == 2, out
    listed = re.findall(r"^([0-9a-f-]{36})\s+(\S+)\s+(\S+)\s+\d+\s+(\S+)$",
                        out, re.M)
    assert sorted((s, src, f) for _, s, src, f in listed) == sorted([
        ("sent", "outbox", "order-1.edi"), ("sent", "outbox", "invoice-2.edi"),
        ("sent", "as2-a", "order-1.edi"), ("sent", "as2-a", "invoice-2.edi"),
    ]), listed
    assert len(re.findall(r"sent by as2-b \(attempt \d+\): MDN processed "
                          r"\(signed\), MIC \S+, sha-256", out)) == 2, out
    assert out.count("waiting for the asynchronous MDN") == 1, out
    assert len(re.findall(r"^  received MDN <", out, re.M)) == 2, out
    assert len(re.findall(r"^  sent     MDN <", out, re.M)) == 2, out
    assert len(re.findall(r"\sinfo\s+sent by inbox \(attempt 1\): written to ",
                          out, re.M)) == 2, out
    for me, other in (("a", "b"), ("b", "a")):
        assert re.search(rf"\(profile\)\s+\S+\s+valid\s+/CN=wharf-{me}/", out)
        assert re.search(rf"^[0-9a-f]+\s+{other}\s+\S+\s+valid\s+"
                         rf"/CN=wharf-{other}/", out, re.M)
        assert re.search(rf"^{other}\s+wharf-{other}\s+sha256\s+aes256-cbc\s+"
                         rf"async\s+https://127\.0\.0\.1:\d+/as2$", out, re.M)
    assert not [f for f in os.listdir(tmp_path)
                if f.startswith("wharf-two-partners-")], \
        "the script left its work dir behind after success"
