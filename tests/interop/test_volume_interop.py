"""An image's VOLUMEs under rl and podman: the same Dockerfile built by each, each image run by
its own tool, shows the same volumes with the same content, and each tool's `rm -v` removes them."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import Rl, has_subuid_range
from tests.interop.conftest import Podman

# /made/here is missing from the base image: both builders make it. Its parent /made is left out:
# podman's has the sticky bit (1755), a quirk rl does not copy (BuildKit's WORKDIR makes 0755).
DOCKERFILE = """\
FROM busybox
RUN mkdir -p /seed/sub && echo hi > /seed/sub/f && chmod 700 /seed/sub && chmod 1777 /seed {chown}
VOLUME /seed /made/here
"""

SHOW = ("stat -c '%n %a %u:%g' /seed /seed/sub /made/here; cat /seed/sub/f; "
        "echo new > /seed/new && touch /made/here/x && ls -A /made/here /seed")


def test_same_volumes_as_podman(rl: Rl, busybox: str, podman: Podman, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(chown="&& chown 1000:100 /seed/sub" if has_subuid_range()
                                                      else ""))
    rl("save", "-o", str(tmp_path / "base.tar"), "busybox")
    podman("load", "-q", "-i", str(tmp_path / "base.tar"))
    rl("build", "-q", "-t", "mine", str(ctx))
    podman("build", "-q", "--network", "host", "-t", "theirs", str(ctx), timeout=600)

    mine = rl("run", "--name", "c", "mine", "sh", "-c", SHOW).out
    theirs = podman("run", "--cgroups=disabled", "--network", "none", "--name", "c", "theirs", "sh", "-c", SHOW)
    assert mine == theirs
    assert len(rl("volume", "ls", "-q").out.split()) == len(podman("volume", "ls", "-q").split()) == 2
    rl("rm", "-v", "c")
    podman("rm", "-v", "c")
    assert rl("volume", "ls", "-q").out == podman("volume", "ls", "-q") == ""
