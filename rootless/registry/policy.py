"""--pull: when `rl run` and `rl build` fetch an image (kept apart from the client, so that
checking the flag, or finding an image already in the store, does not load httpx)."""
from __future__ import annotations

from collections.abc import Callable

from rootless.errors import ImageNotFound, UsageError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from rootless.store.records import ImageRecord
    from rootless.store.store import Store

PULL_POLICIES = ("missing", "always", "never")


def check_policy(value: str) -> str:
    """--pull as Docker and podman take it: missing (the default), always or never; `true` and
    `newer` mean always, `false` means missing."""
    value = {"true": "always", "false": "missing", "newer": "always"}.get(value, value)
    if value not in PULL_POLICIES:
        raise UsageError(f"--pull={value} is not one of {', '.join(PULL_POLICIES)}")
    return value


def resolve(store: Store, name: str, policy: str, say: Callable[[str], None]) -> ImageRecord:
    """The image `name`, pulled first when the policy says so: always, or when it is missing
    here (an image id is never pulled). Raises ImageNotFound when it is missing and not pulled."""
    from rootless.image.reference import looks_like_id

    if policy != "always":
        try:
            return store.resolve(name)
        except ImageNotFound:
            if looks_like_id(name):
                raise
            local = _pulled_before(store, name)
            if local is not None:
                return local
            if policy == "never":
                raise
        say(f"Unable to find image '{name}' locally")
    from rootless.registry.pull import pull

    return pull(store, name, say=say).image


def _pulled_before(store: Store, name: str) -> ImageRecord | None:
    """A short name pulled before from a search registry of registries.conf: the image is named
    after that registry."""
    from rootless.registry.conf import candidates

    for candidate in candidates(name):
        try:
            return store.resolve(candidate)
        except ImageNotFound:
            continue
    return None
