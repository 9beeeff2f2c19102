"""The one exception tree of rl. Every message is a sentence a user can act on; the CLI prints it
as one line and exits with the class's code (125, rl's own error, unless it says otherwise).
Causes are chained (`raise ... from e`): RL_DEBUG=1 shows the errno behind a message.

    RlError                      125
    ├── UsageError               the command line is wrong
    │   └── ProfileError         a seccomp profile that cannot be used
    ├── RuntimeDirError          the runtime directory is unsafe
    ├── StoreError               the store cannot do what was asked
    │   ├── StoreFull
    │   ├── ImageNotFound
    │   └── ImageInUse
    ├── NameInvalid              an image reference that does not parse
    ├── LayerError               a layer that cannot be unpacked
    │   ├── LayerEscape
    │   └── ArchiveCorrupt
    ├── ArchiveError             an image archive rl cannot read
    ├── DigestMismatch
    ├── IdMapError               no user namespace mapping
    ├── StartFailed              125, 126 or 127: the command did not start
    ├── NameInUse
    ├── ContainerNotFound
    ├── VolumeError
    ├── RegistryError            the registry refused or answered nonsense
    │   ├── RegistryUnreachable
    │   ├── AuthError
    │   └── NotFoundError
    ├── BuildFailed              1: a build step failed, as docker build exits
    ├── DockerfileError          1: a Dockerfile that cannot be built as written
    └── SourceError              1: a COPY or ADD source that is missing or outside the context
"""
from __future__ import annotations


class RlError(Exception):
    """An error of rl itself: exit code 125, like Docker's."""

    exit_code = 125


class UsageError(RlError):
    """The command line is wrong."""


class ProfileError(UsageError):
    """A seccomp profile (--security-opt seccomp=FILE) that cannot be read or used."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"seccomp profile {source}: {problem}")


class RuntimeDirError(RlError):
    """The runtime directory is unsafe to use: another user could steer what rl writes there."""


class StoreError(RlError):
    """The image store cannot do what was asked."""


class StoreFull(StoreError):
    """The store's file system has no room left for the database to write in."""


class ImageNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"image not known: {name}")
        self.name = name


class ImageInUse(StoreError):
    """An image a container still uses."""


class NameInvalid(RlError):
    """An image reference that does not parse."""


class LayerError(RlError):
    """A layer that cannot be unpacked: corrupt, escaping, or unsupported."""


class LayerEscape(LayerError):
    """A layer entry that would land outside the layer directory."""


class ArchiveCorrupt(LayerError):
    """A layer or archive that is damaged or cut short (from a writer that stopped, say)."""


class ArchiveError(RlError):
    """An image archive that is truncated, corrupt, or of an unknown format."""


class DigestMismatch(RlError):
    def __init__(self, what: str, expected: str, got: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {got}")


class IdMapError(RlError):
    """The user namespace id mapping cannot be set up."""


class StartFailed(RlError):
    """The container's command did not start: 125 (rl's setup), 126 (not executable), 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = code


class NameInUse(RlError):
    """A container name another container has."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the container name {name!r} is already in use: remove that container or choose "
                         "another name")
        self.name = name


class ContainerNotFound(RlError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such container: {ref}")
        self.ref = ref


class VolumeError(RlError):
    """A volume that does not exist, is in use, or cannot be made."""


class RegistryError(RlError):
    """The registry refused a request or answered something rl cannot use; the message names the
    registry and what it said."""


class RegistryUnreachable(RegistryError):
    """No connection to the registry (down, wrong port, DNS, TLS)."""


class AuthError(RegistryError):
    """Credentials missing, refused, or a token service that failed."""


class NotFoundError(RegistryError):
    """The repository, tag, manifest or blob is not in the registry."""


class BuildFailed(RlError):
    """A step failed: the build stops, with docker build's exit code."""

    exit_code = 1


class DockerfileError(RlError):
    """A Dockerfile that cannot be built as written. A build failure exits 1, like docker build."""

    exit_code = 1

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"Dockerfile:{line}: {message}" if line is not None else message)
        self.line = line
        self.bare = message

    def at(self, line: int) -> DockerfileError:
        """The same error, placed on a line of the Dockerfile (for errors found while expanding)."""
        return DockerfileError(self.bare, line)


class SourceError(RlError):
    """A COPY or ADD source that is missing, excluded, or outside the context: exit 1."""

    exit_code = 1


def describe(e: BaseException) -> str:
    """The one line a user reads of an exception: an OSError of a native call as "OPERATION:
    STRERROR" ("mount shm on /dev/shm: No such file or directory"), another OSError as
    "STRERROR: PATH", anything else its text."""
    if isinstance(e, OSError):
        operation = getattr(e, "operation", None)
        if operation:
            return f"{operation}: {e.strerror or e}"
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    return str(e)
