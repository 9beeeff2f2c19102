"""Image references with Docker's normalization: `busybox` is docker.io/library/busybox:latest."""
from __future__ import annotations

import re

from rootless.errors import NameInvalid
from rootless.values import valueclass

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# Patterns, not compiled ones: re compiles (and caches) one when it is first used, so a start
# pays only for those it uses.
_PATH_RE = rf"^{_COMPONENT}(?:/{_COMPONENT})*$"
_DOMAIN_RE = r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
_TAG_RE = r"^[\w][\w.-]{0,127}$"
_DIGEST_RE = r"^sha256:[0-9a-f]{64}$"


@valueclass
class Reference:
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar_repository(self) -> str:
        """What Docker shows: no docker.io/ and no library/ for official images."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix("library/")
        return self.repository

    def familiar(self) -> str:
        s = self.familiar_repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag, None)


def parse(ref: str, default_tag: bool = True) -> Reference:
    if not ref:
        raise NameInvalid("an image name is required")
    original = ref
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not re.match(_DIGEST_RE, digest):
            raise NameInvalid(f"invalid reference {original!r}: bad digest")
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
        if not re.match(_TAG_RE, tag):
            raise NameInvalid(f"invalid reference {original!r}: bad tag {tag!r}")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
        if not re.match(_DOMAIN_RE, domain):
            raise NameInvalid(f"invalid reference {original!r}: bad registry {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, ref
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not re.match(_PATH_RE, path):
        raise NameInvalid(f"invalid reference {original!r}: repository names must be lowercase "
                          "letters, digits and separators")
    if len(f"{domain}/{path}") > 255:
        raise NameInvalid(f"invalid reference {original!r}: longer than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def looks_like_id(s: str) -> bool:
    h = s.removeprefix("sha256:")
    return 3 <= len(h) <= 64 and all(c in "0123456789abcdef" for c in h)
