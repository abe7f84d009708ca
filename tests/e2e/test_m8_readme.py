"""M8: the README's first-run path works as written. The "A first flow"
block is taken from README.md itself and run with bash, after what
`make run` does (init with --allowed-paths ./wharf-files, serve), in a
folder laid out like a checkout (build/release/wharf is the binary under
test). If the README changes, this test runs the new text."""
import os
import re
import subprocess
from pathlib import Path

from conftest import (REPO, child_env, tune_conf, free_port, root_conf,
                      wharf_bin_path)


def readme_block(title):
    text = (REPO / "README.md").read_text()
    part = text.split(f"## {title}", 1)[1]
    m = re.search(r"```sh\n(.*?)```", part, re.S)
    assert m, f"no sh block under '## {title}'"
    return m.group(1)


def test_m8_readme_first_flow_runs_as_written(tmp_path, start_server):
    (tmp_path / "build" / "release").mkdir(parents=True)
    os.symlink(wharf_bin_path(), tmp_path / "build" / "release" / "wharf")
    # what `make run` does
    for d in ("wharf-files/in", "wharf-files/out"):
        (tmp_path / d).mkdir(parents=True)
    init = subprocess.run(
        ["build/release/wharf", "init", "--data", "./wharf-data",
         "--allowed-paths", str(tmp_path / "wharf-files")], cwd=tmp_path,
        capture_output=True, text=True, env=child_env(), timeout=120)
    assert init.returncode == 0, init.stderr
    assert "one-time password" in init.stdout
    tune_conf(tmp_path / "wharf-data",
              admin_listen=f"127.0.0.1:{free_port()}",
              partner_listen=f"127.0.0.1:{free_port()}", **root_conf())
    srv = start_server(tmp_path / "wharf-data")
    srv.wait_listening()
    block = readme_block("A first flow")
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", block],
                       cwd=tmp_path, capture_output=True, text=True,
                       env=child_env(), timeout=120)
    assert p.returncode == 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert (tmp_path / "wharf-files" / "out" / "invoice.edi").read_bytes() \
        == (tmp_path / "invoice.edi").read_bytes()
    assert not (tmp_path / "wharf-files" / "in" / "invoice.edi").exists()
    assert "state:    sent" in p.stdout and "invoice.edi" in p.stdout
    srv.stop()
