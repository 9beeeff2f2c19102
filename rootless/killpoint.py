"""Named moments where tests/e2e/test_faults.py kills rl with SIGKILL (RL_TEST_KILL_AT=<name>):
each is a point a crash must leave the store consistent and no container behind. Unset, a point
costs one comparison."""
from __future__ import annotations

import os
import signal

_AT = os.environ.get("RL_TEST_KILL_AT")


def reached(name: str) -> None:
    if _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
