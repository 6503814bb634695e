"""A checker process does not outlive the ingest that forked it (a worker SIGKILLed mid-ingest)."""

import os
import signal
import subprocess
import sys
import time

SCRIPT = r"""
import os, sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from marketplace.deliveries.image_pool import _die_with_parent
pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent)
print(pool.submit(os.getpid).result(), flush=True)
sys.stdin.read()  # wait to be killed
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split()[2] != "Z"


def test_a_checker_process_dies_with_the_process_that_forked_it():
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):  # the kernel delivers the death signal at once; allow the scheduler its time
        if not _alive(child):
            break
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive
