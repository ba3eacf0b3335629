"""A caller killed outright leaves no pool processes behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

CALLER = """
import os, sys, numpy as np
import multiprocessing
from sam_convex import ConvexProjector

if __name__ == "__main__":
    masks = np.zeros((4, 48, 48), np.float32)
    masks[:, 8:30, 10:40] = 0.9
    ConvexProjector(workers=2)(masks)
    children = multiprocessing.active_children()
    print(" ".join(str(p.pid) for p in children), flush=True)
    sys.stdin.read()  # until killed
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_caller_ends_its_workers_and_fork_server():
    caller = subprocess.Popen([sys.executable, "-c", CALLER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in caller.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        with open(f"/proc/{workers[0]}/stat") as f:
            server = int(f.read().split()[3])  # the workers' parent: the fork server
        assert server != caller.pid and alive(server)
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in [*workers, server]):
        time.sleep(0.2)
    left = [pid for pid in [*workers, server] if alive(pid)]
    for pid in left:  # do not leave them to the rest of the test run
        os.kill(pid, signal.SIGKILL)
    assert not left
