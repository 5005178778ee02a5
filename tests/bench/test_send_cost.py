"""The tier section's CPU figures come from the OS: the helper must see real CPU, and only CPU."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.harness import cpu_seconds

# A child that burns 0.2 s of its own CPU clock (however long that takes on a busy machine), then
# waits for a line on stdin so that the parent can read its accounting while it is still alive.
_SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2:\n    pass\nprint('done', flush=True)\ninput()\n"
_SLEEP = "import time\ntime.sleep(0.3)\nprint('done', flush=True)\ninput()\n"


def _charged(code: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
        return cpu_seconds(proc.pid)
    finally:
        proc.communicate("\n", timeout=30)


def test_another_process_spinning_is_charged_its_cpu() -> None:
    baseline = _charged("print('done', flush=True)\ninput()\n")  # interpreter start-up alone
    spun = _charged(_SPIN)
    assert spun - baseline >= 0.15, (baseline, spun)


def test_another_process_sleeping_is_not_charged_its_wall_time() -> None:
    baseline = _charged("print('done', flush=True)\ninput()\n")
    slept = _charged(_SLEEP)
    assert slept - baseline < 0.1, (baseline, slept)


def test_this_process_threads_included() -> None:
    import threading

    def spin() -> None:
        t = time.thread_time()
        while time.thread_time() - t < 0.2:
            pass

    before = cpu_seconds()
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    assert cpu_seconds() - before >= 0.15
