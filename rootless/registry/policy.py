"""--pull: when `rl run` and `rl build` fetch an image (kept apart from the client, so that
checking the flag does not load httpx)."""
from __future__ import annotations

from rootless.errors import UsageError

PULL_POLICIES = ("missing", "always", "never")


def check_policy(value: str) -> str:
    """--pull as Docker and podman take it: missing (the default), always or never; `true` and
    `newer` mean always, `false` means missing."""
    value = {"true": "always", "false": "missing", "newer": "always"}.get(value, value)
    if value not in PULL_POLICIES:
        raise UsageError(f"--pull={value} is not one of {', '.join(PULL_POLICIES)}")
    return value
