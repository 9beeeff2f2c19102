"""Errors of the registry client: each one line naming the registry and what it said."""
from __future__ import annotations

from rootless.errors import RlError


class RegistryError(RlError):
    """The registry refused a request or answered something rl cannot use."""


class RegistryUnreachable(RegistryError):
    """No connection to the registry (down, wrong port, DNS, TLS)."""


class AuthError(RegistryError):
    """Credentials missing, refused, or a token service that failed."""


class NotFoundError(RegistryError):
    """The repository, tag, manifest or blob is not in the registry."""
