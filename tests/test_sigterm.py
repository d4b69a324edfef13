"""A test run ended with SIGTERM unwinds the running test (its ``finally`` blocks and fixtures run), as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.support.rabbit import wait_until

#: A test that holds something until it is stopped, and says when it let it go.
HOLDING = '''
import os
import threading
from pathlib import Path


def test_holds_until_stopped() -> None:
    marker = Path(os.environ["HOLD_MARKER"])
    marker.write_text("held")
    try:
        threading.Event().wait()
    finally:
        marker.write_text("released")
'''


def test_sigterm_runs_the_test_s_finally_blocks_before_the_run_ends(tmp_path: Path) -> None:
    test_file, marker = tmp_path / "test_holding.py", tmp_path / "marker"
    test_file.write_text(HOLDING)
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                            str(test_file)], cwd=ROOT, env={**os.environ, "HOLD_MARKER": str(marker)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text() == "held", timeout=60)
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert marker.read_text() == "released", output.decode(errors="replace")
    assert run.returncode == 2  # pytest's "interrupted"
