"""`rl build` as a user runs it: Dockerfile steps, the layer cache, failures, on every driver."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from rootless.image import oci
from tests.conftest import DRIVERS, Rl, has_subuid_range

APP = """\
ARG BASE=busybox
FROM $BASE
ARG GREETING=hello
ENV NAME=world
RUN echo "$GREETING $NAME" > /greeting && mkdir -p /data/sub && echo gone > /data/sub/f && rm -rf /etc/network
COPY app/ /opt/app/
WORKDIR /opt/app
RUN rm -rf /data/sub && mkdir /data/sub && echo new > /data/sub/g && rm /opt/app/remove-me
USER 1000:1000
LABEL org.example.kind="test image"
EXPOSE 8080
CMD ["cat", "/greeting"]
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app" / "lib").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(APP)
    (ctx / "app" / "main.sh").write_text("echo main\n")
    (ctx / "app" / "main.sh").chmod(0o755)
    (ctx / "app" / "lib" / "util.txt").write_text("util\n")
    (ctx / "app" / "remove-me").write_text("x\n")
    (ctx / "app" / "secret.key").write_text("do not copy\n")
    (ctx / ".dockerignore").write_text("# keys stay out\napp/*.key\n")
    return ctx


def _steps(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("STEP ")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_build_then_run(rl: Rl, busybox: str, context: Path, driver: str) -> None:
    r = rl("--storage-driver", driver, "build", "-t", "app:1", str(context))
    assert _steps(r.out)[0] == "STEP 1/11: FROM busybox" and len(_steps(r.out)) == 11
    image_id = r.out.splitlines()[-1]
    assert image_id.startswith("sha256:") and "COMMIT docker.io/library/app:1" in r.out
    assert rl("run", "--rm", "app:1").out == "hello world\n"
    r = rl("run", "--rm", "app:1", "sh", "-c",
           "id -u; pwd; ls /opt/app; cat /opt/app/lib/util.txt; ls /data/sub; ls /etc/network 2>&1 || true; "
           "stat -c %a /opt/app/main.sh")
    lines = r.out.splitlines()
    assert lines[0] == "1000" and lines[1] == "/opt/app"
    assert "secret.key" not in r.out and "remove-me" not in r.out, ".dockerignore and RUN rm are honoured"
    assert "util" in lines and "g" in lines and "f" not in lines, "a replaced directory shows only its new contents"
    assert lines[-1] == "755"
    config = json.loads(rl("inspect", "app:1").out)[0]["Config"]
    assert config["Env"][-1] == "NAME=world" and config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Labels"] == {"org.example.kind": "test image"} and config["WorkingDir"] == "/opt/app"


def test_history_marks_metadata_steps_empty(rl: Rl, busybox: str, context: Path, tmp_path: Path) -> None:
    rl("build", "-t", "app:1", str(context))
    rl("save", "-o", str(tmp_path / "app.tar"), "app:1")
    with tarfile.open(tmp_path / "app.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tf.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    history = config["history"]
    layers = [h for h in history if not h.get("empty_layer")]
    assert len(layers) == len(config["rootfs"]["diff_ids"]) == len(manifest["Layers"])
    assert [h["created_by"].split()[0] for h in history[-9:]] == \
        ["ENV", "RUN", "COPY", "WORKDIR", "RUN", "USER", "LABEL", "EXPOSE", "CMD"]


def test_an_independent_reader_sees_the_same_tree(rl: Rl, busybox: str, context: Path, tmp_path: Path) -> None:
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed")
    rl("build", "-t", "app:1", str(context))
    rl("save", "--format", "oci-dir", "-o", str(tmp_path / "oci"), "app:1")
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'oci'}:1", str(tmp_path / "b")],
                   check=True, capture_output=True)
    root = tmp_path / "b" / "rootfs"
    assert (root / "greeting").read_text() == "hello world\n"
    assert sorted(os.listdir(root / "data" / "sub")) == ["g"]
    assert not (root / "etc" / "network").exists() and not (root / "opt" / "app" / "remove-me").exists()
    assert not (root / "opt" / "app" / "secret.key").exists()


def test_rebuild_hits_the_cache_and_gives_the_same_image(rl: Rl, busybox: str, context: Path, tmp_path: Path) -> None:
    first = rl("build", "-q", str(context)).out
    again = rl("build", str(context))
    assert again.out.count("---> Using cache") == 9 and again.out.splitlines()[-1] == first.strip()
    moved = tmp_path / "elsewhere"
    shutil.copytree(context, moved)
    for p in moved.rglob("*"):
        os.utime(p, (1, 1))  # only times change: still the same inputs
    assert rl("build", "-q", str(moved)).out == first


@pytest.mark.parametrize("change, first_miss", [
    ("file", 5),      # a copied file's content: COPY and what follows
    ("arg", 4),       # --build-arg GREETING: the RUN that sees it
    ("line", 3),      # an edited ENV line: it and everything after
])
def test_cache_misses_exactly_when_an_input_changes(rl: Rl, busybox: str, context: Path, change: str,
                                                    first_miss: int) -> None:
    rl("build", "-q", str(context))
    extra: tuple[str, ...] = ()
    if change == "file":
        (context / "app" / "lib" / "util.txt").write_text("changed\n")
    elif change == "arg":
        extra = ("--build-arg", "GREETING=bye")
    else:
        (context / "Dockerfile").write_text(APP.replace("ENV NAME=world", "ENV NAME=moon"))
    out = rl("build", *extra, str(context)).out
    assert _cached_steps(out) == set(range(3, first_miss)), out


def _cached_steps(build_output: str) -> set[int]:
    """The numbers of the steps `rl build` took from its cache."""
    out = build_output.splitlines()
    return {int(line.split()[1].split("/")[0]) for line, after in zip(out, out[1:])
            if line.startswith("STEP ") and after.startswith("---> Using cache")}


CACHED = """\
FROM base
RUN echo "base=$MARK" > /seen
COPY --chown=1:2 f /f
RUN stat -c %u:%g /f >> /seen
CMD ["cat", "/seen"]
"""


@pytest.mark.parametrize("change, cached, seen", [
    ("rmi a step's image", {2}, "base=one\n1:2\n"),
    ("system prune -a", set(), "base=one\n1:2\n"),
    ("base retagged", set(), "base=two\n1:2\n"),
    ("COPY --chown", {2}, "base=one\n3:4\n"),
])
def test_what_takes_a_step_out_of_the_cache(rl: Rl, busybox_tar: Path, tmp_path: Path, change: str,
                                              cached: set[int], seen: str) -> None:
    """Every step from the change misses, and the build then succeeds with what changed."""
    rl("import", "-c", "ENV MARK=one", str(busybox_tar), "base")
    (tmp_path / "Dockerfile").write_text(CACHED)
    (tmp_path / "f").write_text("f\n")
    first = rl("build", "-t", "app", str(tmp_path)).out
    assert rl("run", "--rm", "app").out == "base=one\n1:2\n"
    if change == "rmi a step's image":
        copied = first.split("STEP 3/5")[1].split("--> ")[1].split()[0]
        assert rl("rmi", "-f", copied).code == 0
    elif change == "system prune -a":
        rl("rmi", "app")
        rl("system", "prune", "-a", "-f")
        assert rl("images", "-a", "-q").out == ""
        rl("import", "-c", "ENV MARK=one", str(busybox_tar), "base")
    elif change == "base retagged":
        rl("import", "-c", "ENV MARK=two", str(busybox_tar), "base")
    else:
        (tmp_path / "Dockerfile").write_text(CACHED.replace("--chown=1:2", "--chown=3:4"))
    again = rl("build", "-t", "app", str(tmp_path)).out
    assert _cached_steps(again) == cached, again
    assert rl("run", "--rm", "app").out == seen
    assert _cached_steps(rl("build", "-t", "app", str(tmp_path)).out) == {2, 3, 4, 5}


def test_no_cache_rebuilds_every_step(rl: Rl, busybox: str, context: Path) -> None:
    rl("build", "-q", str(context))
    assert "Using cache" not in rl("build", "--no-cache", str(context)).out


def test_failing_run_stops_the_build_and_leaves_nothing(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo before\nRUN exit 3\nRUN echo never\n")
    before = rl("images", "-a", "-q").out
    r = rl("build", "-t", "broken", str(tmp_path), check=False)
    assert r.code == 1
    last = r.err.strip().splitlines()[-1]
    assert "STEP 3/4" in last and "exit 3" in last and "exit code: 3" in last
    assert "never" not in r.out and "Traceback" not in r.err
    assert rl("ps", "-a", "-q").out == ""
    assert "broken" not in rl("images").out
    assert len(rl("images", "-a", "-q").out.split()) == len(before.split()) + 1, "only the cached RUN step is kept"


def test_run_steps_mount_the_kernel_overlay_volatile(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """A RUN step's writable layer only lives until it is turned into the step's layer: fsync in it
    (dpkg's, pip's) skips the disk."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN grep ' / ' /proc/mounts > /root-mount\n")
    rl("--storage-driver", "overlay", "build", "-t", "mounts", str(tmp_path))
    assert "volatile" in rl("run", "--rm", "mounts", "cat", "/root-mount").out


# Each a failure of the build, not of rl: docker build's exit 1.
@pytest.mark.parametrize("dockerfile, message", [
    ("FROM busybox\nFROBNICATE x\n", "Dockerfile:2: unknown instruction: FROBNICATE"),
    ("RUN true\n", "Dockerfile:1: no build stage"),
    ("FROM 127.0.0.1:9/nosuchimage\n", "Dockerfile:1: base image 127.0.0.1:9/nosuchimage: cannot reach the registry "
                                       "127.0.0.1:9"),
    ("FROM busybox\nCOPY missing /x\n", "file not found in build context"),
    ("FROM busybox\nCOPY ../outside /x\n", "outside"),
    ("FROM busybox\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", "Dockerfile:2: Unknown flag: bogus"),
])
def test_bad_dockerfiles_fail_in_one_line(rl: Rl, busybox: str, tmp_path: Path, dockerfile: str, message: str) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    r = rl("build", "-q", str(tmp_path), check=False)
    assert r.code == 1 and r.err.startswith("Error: ") and message in r.err, r
    assert len(r.err.strip().splitlines()) == 1


def test_source_date_epoch_makes_builds_reproducible(rl: Rl, busybox: str, context: Path) -> None:
    (context / "Dockerfile").write_text("FROM busybox\nCOPY app /app\nRUN echo hi > /made && mkdir /d\n"
                                        "ENV A=1\nCMD [\"sh\"]\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = rl("build", "-q", "--no-cache", str(context), env=env).out
    assert rl("build", "-q", "--no-cache", str(context), env=env).out == first


@pytest.mark.single_id
def test_build_in_single_id_mode(rl: Rl, busybox: str, context: Path) -> None:
    (context / "Dockerfile").write_text(APP.replace("USER 1000:1000\n", ""))  # only root exists here
    rl("build", "-t", "app:1", str(context))
    assert rl("run", "--rm", "app:1").out == "hello world\n"


MULTI = """\
FROM busybox AS builder
RUN mkdir -p /out/sub && echo built > /out/sub/artifact && chown 1000:1000 /out/sub/artifact \\
    && chmod 640 /out/sub/artifact && ln -s sub/artifact /out/link

FROM busybox AS never
RUN exit 1

FROM scratch AS tiny
COPY --from=builder /out/sub/artifact /artifact

FROM busybox
COPY --from=builder /out /app
COPY --from=tiny /artifact /tiny-artifact
COPY --from=busybox /bin/busybox /copied-busybox
CMD ["sh"]
"""


def test_multi_stage_builds_only_what_the_target_needs(rl: Rl, busybox: str, tmp_path: Path) -> None:
    if not has_subuid_range():
        pytest.skip("the builder stage chowns to uid 1000, which needs a subordinate id range")
    (tmp_path / "Dockerfile").write_text(MULTI)
    out = rl("build", "-t", "multi", str(tmp_path)).out
    assert "STEP 1/9: FROM busybox AS builder" in out and "exit 1" not in out, "the unused stage is skipped"
    r = rl("run", "--rm", "multi", "sh", "-c",
           "stat -c '%u:%g %a' /app/sub/artifact /tiny-artifact; cat /app/link; readlink /app/link; "
           "cmp /bin/busybox /copied-busybox && echo same")
    assert r.out.split("\n") == ["1000:1000 640", "1000:1000 640", "built", "sub/artifact", "same", ""]
    tiny = rl("build", "-q", "--target", "tiny", str(tmp_path)).out.strip()
    r = rl("inspect", tiny)
    assert len(json.loads(r.out)[0]["RootFS"]["Layers"]) == 1, "a scratch stage holds only what it copied"


def test_unknown_target_names_the_stages(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(MULTI)
    r = rl("build", "--target", "nope", str(tmp_path), check=False)
    assert r.code == 1 and "builder" in r.err and "tiny" in r.err


def test_add_unpacks_local_archives_and_copies_other_files(rl: Rl, busybox: str, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    (payload / "pkg").mkdir(parents=True)
    (payload / "pkg" / "data.txt").write_text("inside\n")
    with tarfile.open(tmp_path / "pkg.tar.gz", "w:gz") as tf:
        tf.add(payload / "pkg", arcname="pkg")
    (tmp_path / "plain.txt").write_text("plain\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nADD pkg.tar.gz /opt\nADD plain.txt /opt/\n")
    rl("build", "-t", "added", str(tmp_path))
    r = rl("run", "--rm", "added", "sh", "-c", "cat /opt/pkg/data.txt /opt/plain.txt; ls /opt")
    assert r.out == "inside\nplain\npkg\nplain.txt\n"


def test_add_refuses_an_archive_that_escapes(rl: Rl, busybox: str, tmp_path: Path) -> None:
    evil = tarfile.TarInfo("../../etc/evil")
    evil.size = 1
    with tarfile.open(tmp_path / "evil.tar", "w") as tf:
        tf.addfile(evil, io.BytesIO(b"x"))
    (tmp_path / "Dockerfile").write_text("FROM busybox\nADD evil.tar /opt/\n")
    r = rl("build", str(tmp_path), check=False)
    assert r.code == 1 and "outside" in r.err


def test_onbuild_triggers_run_in_the_child(rl: Rl, busybox: str, tmp_path: Path) -> None:
    parent, child = tmp_path / "parent", tmp_path / "child"
    parent.mkdir()
    child.mkdir()
    (parent / "Dockerfile").write_text("FROM busybox\nONBUILD COPY note /note\nONBUILD RUN echo triggered >> /note\n")
    rl("build", "-t", "base-with-triggers", str(parent))
    (child / "note").write_text("from the child context\n")
    (child / "Dockerfile").write_text("FROM base-with-triggers\nCMD [\"cat\", \"/note\"]\n")
    rl("build", "-t", "child", str(child))
    assert rl("run", "--rm", "child").out == "from the child context\ntriggered\n"
    assert json.loads(rl("inspect", "child").out)[0]["Config"].get("OnBuild") in (None, [])


def test_heredoc_shell_entrypoint_and_cmd(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\n'
        'RUN <<EOF\n'
        'echo one > /script-out\n'
        'echo two >> /script-out\n'
        'EOF\n'
        'SHELL ["/bin/sh", "-ec"]\n'
        'RUN test "$0" = /bin/sh && echo shell-ok >> /script-out\n'
        'ENTRYPOINT ["cat"]\n'
        'CMD ["/script-out"]\n')
    rl("build", "-t", "hd", str(tmp_path))
    assert rl("run", "--rm", "hd").out == "one\ntwo\nshell-ok\n"
    # Arguments replace CMD, not add to it: cat gets /etc/hostname alone.
    assert rl("run", "--rm", "--hostname", "box", "hd", "/etc/hostname").out == "box\n"
    (tmp_path / "Dockerfile").write_text("FROM hd\nENTRYPOINT echo shell-form\n")
    rl("build", "-t", "hd2", str(tmp_path))
    config = json.loads(rl("inspect", "hd2").out)[0]["Config"]
    assert config["Entrypoint"] == ["/bin/sh", "-ec", "echo shell-form"] and not config.get("Cmd"), \
        "a new ENTRYPOINT drops the base image's CMD"


# Not compared with podman build: the podman here (4.3, buildah 1.28) predates heredocs, which
# came with podman 4.9 (containers/buildah#5092); before, `COPY <<EOF` fails with
# 'copier: stat: "/<<EOF": no such file or directory' (containers/podman#19578).
HEREDOCS = """\
FROM busybox
ARG FOO=from-arg
ENV BAR=from-env
COPY <<EOF /bin/ping.sh
#!/bin/sh
echo pong $FOO ${BAR}
EOF
COPY <<-EOT /script.sh
\techo ${FOO}
\tEOT
COPY <<"RAW" <<PLAIN /docs/
$FOO raw
RAW
$FOO plain \\$FOO
PLAIN
COPY --chmod=750 <<EOF /bin/run.sh
#!/bin/sh
EOF
ADD <<EOF /added
added
EOF
RUN <<EOT wc -l > /lines
one
two
EOT
RUN <<EOT
#!/usr/bin/awk -f
BEGIN { print "awk ran" > "/awk-out" }
EOT
RUN cat /dev/stdin /dev/fd/3 <<A 3<<-B > /two
a $FOO
A
\tb
\tB
"""


def _build_and_check_heredocs(rl: Rl, context: Path, extra: str = "", extra_show: str = "",
                              driver: str = "overlay") -> str:
    (context / "Dockerfile").write_text(HEREDOCS + extra)
    rl("--storage-driver", driver, "build", "-t", "heredocs", str(context))
    show = ("stat -c %a /bin/ping.sh; stat -c %a /bin/run.sh; "
            "cat /bin/ping.sh /script.sh /docs/RAW /docs/PLAIN /added /lines /awk-out /two; "
            "ls -a / | grep -c heredoc")
    out = rl("run", "--rm", "heredocs", "sh", "-c", f"{show}; {extra_show}", check=False).out
    assert out.startswith("644\n"  # a file of 0644...
                          "750\n"  # ...unless --chmod says
                          "#!/bin/sh\necho pong from-arg from-env\n"  # expanded with ARG and ENV
                          "echo from-arg\n"  # <<- strips the tabs
                          "$FOO raw\nfrom-arg plain $FOO\n"  # a quoted delimiter keeps $FOO
                          "added\n"  # ADD takes heredocs too
                          "2\n"  # <<EOT wc -l: the body is wc's input
                          "awk ran\n"  # a shebang body runs with its interpreter
                          "a from-arg\nb\n"  # two heredocs of one command, on the fds it names
                          "0\n"), out  # the script's mount point is no part of the image
    return out[out.index("b\n0\n") + 4:]


@pytest.mark.parametrize("driver", DRIVERS)
def test_heredocs_of_copy_and_run(rl: Rl, busybox: str, tmp_path: Path, driver: str) -> None:
    # --chown applies to heredoc files; a user other than root runs a script too.
    more = "COPY --chown=12:34 <<EOF /owned\nx\nEOF\nUSER 1000\nRUN <<EOT\n#!/bin/sh\nid -u > /tmp/as-user\nEOT\n"
    out = _build_and_check_heredocs(rl, tmp_path, more, "stat -c %u:%g /owned; cat /tmp/as-user", driver)
    assert out == "12:34\n1000\n"


@pytest.mark.single_id
def test_heredocs_in_single_id_mode(rl: Rl, busybox: str, tmp_path: Path) -> None:
    assert _build_and_check_heredocs(rl, tmp_path) == ""


def test_heredoc_changes_are_not_taken_from_the_cache(rl: Rl, busybox: str, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nARG WHO=one\nCOPY <<EOF /who\n$WHO\nEOF\nRUN <<EOT\n#!/bin/sh\necho {} >> /who\nEOT\n"
    (tmp_path / "Dockerfile").write_text(dockerfile.format("first"))
    rl("build", "-t", "hd-cache", str(tmp_path))
    rl("build", "-t", "hd-cache", "--build-arg", "WHO=two", str(tmp_path))
    assert rl("run", "--rm", "hd-cache", "cat", "/who").out == "two\nfirst\n"
    (tmp_path / "Dockerfile").write_text(dockerfile.format("second"))
    rl("build", "-t", "hd-cache", "--build-arg", "WHO=two", str(tmp_path))
    assert rl("run", "--rm", "hd-cache", "cat", "/who").out == "two\nsecond\n"


def test_build_with_apt_get_install(rl: Rl, debian_tar: Path, tmp_path: Path, apt_mirror: str) -> None:
    if not has_subuid_range():
        pytest.skip("apt drops privileges to _apt, which needs a subordinate id range")
    rl("import", str(debian_tar), "debian:bookworm")
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null "
        "&& rm -rf /var/lib/apt/lists/*\n"
        'CMD ["hello"]\n')
    rl("build", "-t", "with-hello", str(tmp_path), timeout=900)
    assert rl("run", "--rm", "with-hello").out == "Hello, world!\n"


def test_add_fetches_a_url_and_says_when_it_cannot(rl: Rl, busybox: str, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    (served / "notes.txt").write_text("fetched over http\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD http://127.0.0.1:{port}/notes.txt /opt/\n")
        rl("build", "-t", "fetched", str(ctx))
        assert rl("run", "--rm", "fetched", "sh", "-c", "cat /opt/notes.txt; stat -c %a /opt/notes.txt").out == \
            "fetched over http\n600\n"
        (served / "notes.txt").write_text("changed on the server\n")
        assert "Using cache" not in rl("build", str(ctx)).out.split("ADD")[1], "new content must miss the cache"
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD http://127.0.0.1:{port}/missing.txt /opt/\n")
        r = rl("build", str(ctx), check=False)
        assert r.code == 1 and "cannot fetch" in r.err and "404" in r.err
    finally:
        server.shutdown()


def test_concurrent_builds_share_one_store(rl: Rl, busybox: str, context: Path) -> None:
    procs = [rl.popen("build", "-q", "-t", f"app:{i}", str(context), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    for i in range(3):
        assert rl("run", "--rm", f"app:{i}").out == "hello world\n"
    # The store is whole: the next build finds every step in the cache one of them left.
    assert rl("build", str(context)).out.count("---> Using cache") == 9


def test_flags_and_the_rest_of_the_config(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "# escape=`\n"
        "ARG VERSION=1\n"
        "FROM --platform=linux/amd64 busybox AS base\n"
        "ARG VERSION\n"
        "ARG LOCAL=stage-default\n"
        "RUN echo \"v=$VERSION local=$LOCAL proxy=$HTTP_PROXY\" > /args && `\n"
        "    (wget -q -T 2 -O /dev/null http://127.0.0.1:9/ 2>/dev/null; ip link 2>/dev/null | grep -c '^[0-9]' > /links)\n"
        "FROM base\n"
        "RUN echo \"second stage sees: ${LOCAL:-nothing}\" >> /args\n"
        "STOPSIGNAL SIGINT\n"
        "VOLUME /data\n"
        "HEALTHCHECK --interval=1m30s --retries=2 CMD wget -q -O /dev/null http://localhost/ || exit 1\n")
    iid = tmp_path / "iid"
    rl("build", "-t", "flags", "--build-arg", "VERSION=7", "--build-arg", "HTTP_PROXY=http://proxy:3128",
       "--label", "team=qa", "--iidfile", str(iid), "--network", "none", str(tmp_path))
    inspect = json.loads(rl("inspect", "flags").out)[0]
    assert iid.read_text() == inspect["Id"]
    assert rl("run", "--rm", "flags", "cat", "/args", "/links").out == \
        "v=7 local=stage-default proxy=http://proxy:3128\nsecond stage sees: nothing\n1\n"
    config = inspect["Config"]
    assert config["Labels"] == {"team": "qa"} and config["StopSignal"] == "SIGINT"
    assert config["Volumes"] == {"/data": {}}
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O /dev/null http://localhost/ || exit 1"],
                                     "Interval": 90 * 10**9, "Retries": 2}
    assert not any(e.startswith(("VERSION=", "HTTP_PROXY=")) for e in config["Env"]), "build args are not kept"


def test_platform_args_are_global_and_seen_by_a_stage_that_declares_them(rl: Rl, busybox: str,
                                                                          tmp_path: Path) -> None:
    # BuildKit's automatic platform ARGs: FROM may use them as they are; a stage sees one only
    # through a bare ARG (as golang Dockerfiles do for GOOS=$TARGETOS GOARCH=$TARGETARCH).
    os_name, arch = oci.host_platform()
    rl("tag", "busybox", f"plat:{arch}")
    (tmp_path / "Dockerfile").write_text(
        "FROM plat:${TARGETARCH}\n"
        "ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG BUILDARCH=mine\n"
        "RUN echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDARCH [$BUILDOS]\" > /platform\n")
    rl("build", "-t", "plat-args", str(tmp_path))
    assert rl("run", "--rm", "plat-args", "cat", "/platform").out == \
        f"{os_name}/{arch} {os_name} {arch} mine []\n"
    env = json.loads(rl("inspect", "plat-args").out)[0]["Config"]["Env"]
    assert not any(e.startswith(("TARGET", "BUILD")) for e in env), "build args are not kept"


def test_workdir_records_an_absolute_path_as_written(rl: Rl, busybox: str, tmp_path: Path) -> None:
    # BuildKit (and podman build) keep `WORKDIR /srv/app/` verbatim in the config and join and
    # clean only a relative one; the directory made is the clean path either way.
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nWORKDIR srv/../data/./x/\nRUN pwd > /pwd\nWORKDIR /srv/app/\n")
    rl("build", "-t", "wd", str(tmp_path))
    assert json.loads(rl("inspect", "wd").out)[0]["Config"]["WorkingDir"] == "/srv/app/"
    assert rl("run", "--rm", "wd", "sh", "-c", "cat /pwd; pwd; ls -d /srv/*").out == "/data/x\n/srv/app\n/srv/app\n"


def test_format_docker_gives_docker_media_types(rl: Rl, busybox: str, context: Path, tmp_path: Path) -> None:
    for fmt, manifest_type in (("docker", "application/vnd.docker.distribution.manifest.v2+json"),
                               ("oci", "application/vnd.oci.image.manifest.v1+json")):
        rl("build", "-q", "--format", fmt, "-t", f"fmt:{fmt}", str(context))
        rl("save", "--format", "oci-dir", "-o", str(tmp_path / fmt), f"fmt:{fmt}")
        index = json.loads((tmp_path / fmt / "index.json").read_text())
        assert index["manifests"][0]["mediaType"] == manifest_type


def test_build_with_pip_install(rl: Rl, debian_tar: Path, tmp_path: Path, apt_mirror: str, pypi: str) -> None:
    if not has_subuid_range():
        pytest.skip("apt drops privileges to _apt, which needs a subordinate id range")
    rl("import", str(debian_tar), "debian:bookworm")
    # This host reaches the package indexes through a proxy with its own CA: the image must trust
    # it as the host does (see shared/notes); elsewhere the directory is empty and changes nothing.
    cas = tmp_path / "cas"
    cas.mkdir()
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(crt, cas / crt.name)
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip ca-certificates "
        ">/dev/null && rm -rf /var/lib/apt/lists/*\n"
        "COPY cas/ /usr/local/share/ca-certificates/\n"
        "RUN update-ca-certificates >/dev/null 2>&1; "
        "pip install -q --break-system-packages --root-user-action=ignore six==1.16.0\n"
        'CMD ["python3", "-c", "import six; print(six.__version__)"]\n')
    rl("build", "-t", "with-six", str(tmp_path), timeout=1200)
    assert rl("run", "--rm", "with-six").out == "1.16.0\n"


def test_workdir_exec_form_link_syntax_and_file_flag(rl: Rl, busybox: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "x.txt").write_text("x\n")
    dockerfile = tmp_path / "elsewhere.Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\n"
        "FROM busybox\n"
        "WORKDIR /made/by/workdir\n"
        "COPY --link x.txt /linked.txt\n"
        'RUN ["/bin/sh", "-c", "echo exec-form > /exec"]\n')
    rl("build", "-t", "misc", "-f", str(dockerfile), str(ctx))
    r = rl("run", "--rm", "-w", "/", "misc", "sh", "-c", "stat -c '%U %a' /made/by/workdir; cat /linked.txt /exec")
    assert r.out == "root 755\nx\nexec-form\n"


@pytest.mark.parametrize("kind", ["xz", "zst", "bz2"])
def test_add_unpacks_every_compression(rl: Rl, busybox: str, tmp_path: Path, kind: str) -> None:
    if kind == "zst" and shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in.txt").write_text(f"{kind}\n")
    plain = tmp_path / "a.tar"
    with tarfile.open(plain, "w") as tf:
        tf.add(tmp_path / "d", arcname="d")
    flag = {"xz": "-J", "zst": "--zstd", "bz2": "-j"}[kind]
    subprocess.run(["tar", "-C", str(tmp_path), flag, "-cf", str(tmp_path / f"a.tar.{kind}"), "d"], check=True)
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nADD a.tar.{kind} /x/\n")
    rl("build", "-t", f"add-{kind}", str(tmp_path))
    assert rl("run", "--rm", f"add-{kind}", "cat", "/x/d/in.txt").out == f"{kind}\n"


def test_dockerfile_from_stdin(rl: Rl, busybox: str, context: Path) -> None:
    """`-f -` reads the Dockerfile from stdin, as docker build does; the context is still CONTEXT."""
    r = rl("build", "-q", "-t", "fromstdin", "-f", "-", str(context),
           input=b'FROM busybox\nCOPY app/main.sh /\nCMD ["sh", "/main.sh"]\n')
    assert r.out.startswith("sha256:")
    assert rl("run", "--rm", "fromstdin").out == "main\n"


def test_bad_build_arg_and_context(rl: Rl, busybox: str, context: Path, tmp_path: Path) -> None:
    r = rl("build", "--build-arg", "=x", str(context), check=False)
    assert r.code == 125 and "--build-arg needs KEY=VALUE" in r.err
    r = rl("build", str(tmp_path / "nope"), check=False)
    assert r.code == 125 and "not a directory" in r.err and len(r.err.strip().splitlines()) == 1, r
    assert rl("images", "-a", "-q").out.split() == [busybox[7:19]], "nothing was left behind"
