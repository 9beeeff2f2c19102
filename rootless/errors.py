"""The one exception tree of rl. Every message is a sentence a user can act on."""
from __future__ import annotations


class RlError(Exception):
    """An error of rl itself: exit code 125, like Docker's."""

    exit_code = 125


class UsageError(RlError):
    """The command line is wrong."""


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
