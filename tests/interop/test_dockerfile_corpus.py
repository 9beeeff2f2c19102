"""Dockerfiles of public projects (tests/interop/corpus/NAME: Dockerfile, reduced context, SOURCE
saying where each comes from and what was changed, `run`: a shell command whose output is compared,
or nothing for the image's default command),
built by rl and by podman build on the same base: the same config, files and output.

The bases are the locally made busybox and Debian images; a Dockerfile that names Debian gets it
as every tag in DEBIAN_TAGS, one that names busybox as every tag in BUSYBOX_TAGS.

Left out of the comparison, each for a reason:
- timestamps and inode numbers: they record when and where, not what, was built;
- the image and layer digests: they follow from the timestamps;
- /run, the mount point buildah leaves in every image (BUILDAH_MOUNT_POINTS);
- the contents of /etc/hostname and /etc/hosts, which the runtime writes for each container
  (its id is in them; RUNTIME_FILES);
- the label io.buildah.version, which buildah adds to every image it builds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range
from tests.interop.conftest import Podman, build_both, listing

CORPUS = Path(__file__).parent / "corpus"
BUSYBOX_TAGS = ("busybox", "busybox:1.35-musl")
DEBIAN_TAGS = ("debian:bookworm", "debian:bookworm-slim", "debian:12", "debian:12-slim")

# Cases where rl and podman build disagree, with what differs and whose bug it is taken to be.
DIFFERENCES = {
    "files-add-plain-tar-dot-entry": (
        "`ADD dist.tar /opt/yeoldwiz` of an archive whose first member is ./ (1000:1000, 0775): "
        "rl's /opt/yeoldwiz stays root's 0755, as BuildKit's (it makes the target, then moby's "
        "Untar skips the entry `.` of a directory that exists); podman build's (buildah 1.28) "
        "gives the target the ./ entry's owner and mode"),
    "files-volume-then-run-webdata": (
        "`RUN ... chown -R nobody:root /data/ && chmod -R g+w /data/` after `VOLUME /data`: rl's "
        "image has /data 65534:0 775, as BuildKit's (a VOLUME does not change what RUN writes); "
        "podman build's (buildah 1.28) keeps what the RUN made inside /data, chowned and chmodded, "
        "but leaves /data itself 0:0 755: buildah cannot change a declared volume's own owner and "
        "mode in a later RUN, while BuildKit can (buildah issue 4407)"),
    "cbuild-vs-buildtools-escape-backtick": (
        "`# escape=`` then `ENV ROSLYN_COMPILER_LOCATION C:\\BuildTools\\MSBuild\\...`: rl's Env keeps the "
        "backslashes (C:\\BuildTools\\MSBuild\\15.0\\Bin\\Roslyn), as the Dockerfile reference says and "
        "BuildKit's lexer, made with the directive's escape token, does; podman build's (buildah 1.28) "
        "has C:BuildToolsMSBuild15.0BinRoslyn: imagebuilder's ProcessWord takes no escape token and "
        "always treats a backslash as the escape, the bug Docker fixed in moby/moby#27644. The file "
        "trees, SHELL and the rest of the config agree"),
}
# Cases podman build cannot build at all, with the feature it lacks. rl's image is checked against
# the case's `expected` file (the output of its run command, as BuildKit's would print it), and
# podman's failure is an expected failure: the day podman builds it, the test fails until the
# entry is removed and the comparison runs.
ORACLE_GAPS: dict[str, str] = {
    "files-chmod-workdir-connectorr": (
        "HEALTHCHECK --start-interval (Dockerfile 1.6, Docker 25): podman 4.3's builder (buildah "
        "1.28) knows only --interval, --timeout, --start-period and --retries: flag provided but "
        "not defined: -start-interval"),
    "files-copy-link-from-stage": (
        "COPY --link (Dockerfile 1.4): podman 4.3's builder (buildah 1.28) refuses the flag: "
        "COPY only supports the --chmod=<permissions> --chown=<uid:gid> and the --from=<image|stage> flags"),
    "files-etherpad-chown-workdir": (
        "`FROM build_${BUILD_ENV} AS production`, a stage named through a global ARG's default: "
        "podman 4.3's builder (buildah 1.28) does not look the expanded name up among the stages "
        "and tries to pull an image `build_copy` (buildah issue 4312: only a --build-arg given on "
        "the command line makes it resolve)"),
    "files-heredoc-copy-chmod-multiple": (
        "`RUN <<EOF`, `COPY <<EOF`, two heredocs in one COPY (Dockerfile 1.3-labs/1.4): podman 4.3's "
        "builder (buildah 1.28) takes the heredoc's first line for an instruction and fails: "
        "Unknown instruction: \"LS\""),
    "files-heredoc-run-bash-useradd": (
        "`RUN <<EOF` (Dockerfile 1.4 heredocs): podman 4.3's builder (buildah 1.28, imagebuilder) "
        "runs `<<EOF` as the whole command (bash warns of a here-document ended by end of file) and "
        "then fails on the heredoc's next line as an instruction: Unknown instruction: \"SET\""),
}
CASES = [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DIFFERENCES[name]))
         if name in DIFFERENCES else name
         for name in sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())]

CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
               "StopSignal", "Healthcheck", "Shell", "OnBuild")


def _config(rl: Rl, image: str) -> dict[str, object]:
    config = json.loads(rl("inspect", image).out)[0]["Config"]
    config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if k != "io.buildah.version"}
    # An empty list or map and an absent one mean the same to a runtime.
    return {k: config.get(k) or None for k in CONFIG_KEYS}


def _bases(rl: Rl, dockerfile: str, request: pytest.FixtureRequest) -> tuple[str, ...]:
    bases: tuple[str, ...] = ()
    if "busybox" in dockerfile:
        request.getfixturevalue("busybox")
        bases += BUSYBOX_TAGS
    if "debian" in dockerfile:
        rl("import", str(request.getfixturevalue("debian_tar")), DEBIAN_TAGS[0])
        bases += DEBIAN_TAGS
    for tags in (BUSYBOX_TAGS, DEBIAN_TAGS):
        for tag in tags[1:]:
            if tag in bases:
                rl("tag", tags[0], tag)
    assert bases, "the case names neither busybox nor debian as its base"
    return bases


@pytest.mark.parametrize("case", CASES)
def test_corpus_dockerfile_builds_as_podman_build(case: str, rl: Rl, podman_overlay: Podman, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    if not has_subuid_range():
        pytest.skip("the images hold files of other ids, which needs a subordinate id range")
    src = CORPUS / case
    ctx = tmp_path / "ctx"
    shutil.copytree(src, ctx, ignore=shutil.ignore_patterns("SOURCE", "run", "expected"))
    script = (src / "run").read_text().strip()
    command = ["sh", "-c", script] if script else []
    bases = _bases(rl, (src / "Dockerfile").read_text(), request)

    if case in ORACLE_GAPS:
        rl("build", "-t", "mine", str(ctx))
        assert rl("run", "--rm", "mine", *command).out == (src / "expected").read_text()
        rl("save", "-o", str(tmp_path / "base.tar"), *bases)
        podman_overlay("load", "-q", "-i", str(tmp_path / "base.tar"))
        with pytest.raises(AssertionError, match="exited"):
            podman_overlay("build", "-q", "--network", "host", "-t", "theirs", str(ctx), timeout=600)
        pytest.xfail(ORACLE_GAPS[case])

    theirs = build_both(rl, podman_overlay, ctx, tmp_path, bases=bases, fmt="docker")
    assert _config(rl, "mine") == _config(rl, theirs)
    mine, podmans = listing(rl, "mine"), listing(rl, theirs)
    assert mine == podmans, ("only rl: " + repr(sorted(set(mine) - set(podmans))) +
                             "\nonly podman: " + repr(sorted(set(podmans) - set(mine))))
    assert rl("run", "--rm", "mine", *command).out == rl("run", "--rm", theirs, *command).out
