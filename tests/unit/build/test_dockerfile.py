"""Dockerfile parsing: the typed values the engine builds from, and the mistakes refused before
anything runs, each with its line."""
from __future__ import annotations

import pytest

from rootless.build.dockerfile import DEFAULT_SHELL, Heredoc, argv, parse, read, stages_needed
from rootless.errors import DockerfileError


def test_stages_global_args_and_instructions() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=debian\n"
        "FROM --platform=linux/amd64 ${BASE}:12 AS Build\n"
        "RUN --network=none make \\\n"
        "    all\n"
        "COPY --from=0 --chown=1:2 --link [\"a b\", \"/dst/\"]\n"
        "FROM scratch\n"
        "CMD [\"/app\"]\n"
    )
    assert [a.args for a in df.global_args] == [("BASE=debian",)]
    build, final = df.stages
    assert (build.index, build.name, build.base, build.platform, build.line) == (
        0, "build", "${BASE}:12", "linux/amd64", 3)
    assert (final.index, final.name, final.base) == (1, None, "scratch")
    run, copy = build.instructions
    assert (run.command, run.args, run.json, run.line) == ("RUN", ("make     all",), False, 4)
    assert run.flag("network") == "none"
    assert copy.args == ("a b", "/dst/") and copy.json
    assert copy.flags == (("from", "0"), ("chown", "1:2"), ("link", None))
    assert copy.bool_flag("link") and not copy.bool_flag("chmod") and copy.flag("chmod") is None
    assert final.instructions[0].args == ("/app",)
    assert df.stage_named("BUILD") is build


def test_lower_case_instructions_are_upper_cased() -> None:
    df = parse("from alpine\nrun echo hi\n")
    assert df.stages[0].instructions[0].command == "RUN"


def test_env_and_label_pairs_in_both_syntaxes() -> None:
    df = parse('FROM a\nENV k=v k2="v 2"\nENV old some words\nLABEL "a b"=c\n')
    env1, env2, label = df.stages[0].instructions
    assert env1.args == ("k", "v", "k2", '"v 2"')
    assert env2.args == ("old", "some words")
    assert label.args == ('"a b"', "c")


def test_heredocs_quoting_and_tab_stripping() -> None:
    df = parse(
        "FROM a\n"
        "RUN <<EOF\necho $HOME\nEOF\n"
        "COPY <<'CONF' <<-TABS /etc/\nraw $X\nCONF\n\tindented\n\tTABS\n"
        "RUN 3<<\"IN\" cat <&3\nx\nIN\n"
    )
    run, copy, fd = df.stages[0].instructions
    assert run.heredocs == (Heredoc("EOF", "echo $HOME\n", False, 0),)
    assert copy.heredocs == (Heredoc("CONF", "raw $X\n", True, 0), Heredoc("TABS", "indented\n", False, 0))
    assert fd.heredocs == (Heredoc("IN", "x\n", True, 3),)
    assert run.line == 2 and copy.line == 5


def test_heredoc_arguments_name_their_heredocs() -> None:
    (copy,) = parse("FROM a\nCOPY <<-\"EOT\" <<B ctx.txt /d/\n\tbody\n\tEOT\nb\nB\n").stages[0].instructions
    assert [copy.heredoc(a) for a in copy.args] == [
        Heredoc("EOT", "body\n", True, 0), Heredoc("B", "b\n", False, 0), None, None]
    assert copy.heredoc("<<NONE") is None


def test_escape_directive() -> None:
    df = parse("# escape=`\nFROM a\nRUN dir `\n  c:\\\n")
    assert df.escape == "`"
    assert df.stages[0].instructions[0].args == ("dir   c:\\",)
    assert parse("FROM a\n").escape == "\\"


def test_onbuild_trigger_kept_as_text() -> None:
    df = parse("FROM a\nONBUILD RUN echo one \\\n  two\nONBUILD COPY . /src\n")
    assert [i.trigger for i in df.stages[0].instructions] == ["RUN echo one   two", "COPY . /src"]


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("RUN echo\n", "Dockerfile:1: no build stage in current context"),
    ("ARG A\n", "dockerfile contains no stages to build"),
    ("", "file with no instructions"),
    ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM a\nADD x\n", "Dockerfile:2: ADD requires at least two arguments"),
    ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
    ("FROM a\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
    ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a TO b\n", 'Dockerfile:1: when using FROM with three arguments, the second argument must be "AS"'),
    ("FROM a AS 1st\n", 'Dockerfile:1: invalid name for build stage: "1st"'),
    ("FROM a AS x\nFROM b AS X\n", 'Dockerfile:2: duplicate stage name "x"'),
    ("FROM a\nCOPY --form=b x y\n", "Dockerfile:2: Unknown flag: form"),
    ("FROM a\nRUN --chown=1 x\n", "Dockerfile:2: Unknown flag: chown"),
    ("FROM a\nCOPY --from x y\n", "Dockerfile:2: Missing a value on flag: from"),
    ("FROM a\nCOPY --link=yes x y\n", "Dockerfile:2: expecting boolean value for flag link, not: yes"),
    ("FROM a\nCOPY --from=a --from=b x y\n", "Dockerfile:2: Duplicate flag specified: from"),
    ("FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n",
     "Dockerfile:2: RUN --mount is not supported yet by rl build"),
    ("FROM a\nRUN --network=bridge x\n", 'Dockerfile:2: unsupported network mode "bridge"'),
    ("FROM a\nRUN --security=insecure x\n", "Dockerfile:2: RUN --security=insecure is not supported yet"),
    ("FROM a\nCOPY --parents a/b /c\n", "Dockerfile:2: COPY --parents is not supported yet"),
    ("FROM a\nCOPY --exclude=*.md . /c\n", "Dockerfile:2: COPY --exclude is not supported yet"),
    ("FROM a\nADD --checksum=sha256:00 http://x/y /z\n", "Dockerfile:2: ADD --checksum is not supported yet"),
    ("FROM a\nADD --keep-git-dir https://x/y.git /z\n", "Dockerfile:2: ADD --keep-git-dir is not supported yet"),
    ("FROM a\nSHELL bash -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK curl x\n", 'Dockerfile:2: Unknown type "curl" in HEALTHCHECK (try CMD)'),
    ("FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
    ('FROM a\nVOLUME [""]\n', "Dockerfile:2: VOLUME specified can not be an empty string"),
    ("FROM a\nRUN true\nRUN <<EOF\nnever ends\n", "Dockerfile:3: unterminated heredoc"),
    ("FROM a\nCOPY x <<EOF\nbody\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
    ("FROM a\n\nENV a\n", "Dockerfile:3: ENV must have two arguments"),
    ('FROM a\nCMD ["a", 1]\n', "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
])
def test_refused_with_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 1


def test_read_missing_file(tmp_path: object) -> None:
    with pytest.raises(DockerfileError, match="cannot read the Dockerfile .*: no such file"):
        read(f"{tmp_path}/Dockerfile")


def test_expansion_errors_are_placed_on_a_line() -> None:
    error = DockerfileError("failed to process")
    assert str(error.at(7)) == "Dockerfile:7: failed to process"


MULTI = (
    "ARG TOOLS=tools\n"
    "FROM alpine AS base\n"
    "FROM base AS tools\n"
    "FROM golang AS build\n"
    "COPY --from=${TOOLS} /bin/t /bin/t\n"
    "FROM alpine AS unrelated\n"
    "FROM base AS final\n"
    "COPY --from=build /app /app\n"
    "COPY --from=docker.io/library/busybox /bin/sh /bin/sh\n"
)


def test_stages_needed_follows_from_and_copy_from() -> None:
    df = parse(MULTI)
    assert stages_needed(df, None) == [0, 1, 2, 4]
    assert stages_needed(df, "build") == [0, 1, 2]
    assert stages_needed(df, "BASE") == [0]
    assert stages_needed(df, "unrelated") == [3]
    # a build arg changes what --from names
    assert stages_needed(df, "build", {"TOOLS": "base"}) == [0, 2]


def test_stages_needed_by_index_and_unknown_target() -> None:
    df = parse("FROM a\nFROM b\nFROM c\nCOPY --from=1 /x /x\n")
    assert stages_needed(df, None) == [1, 2]
    with pytest.raises(DockerfileError, match=r'target stage "nope" could not be found \(stages: none are named\)'):
        stages_needed(df, "nope")
    with pytest.raises(DockerfileError, match="stages: base, tools, build, unrelated, final"):
        stages_needed(parse(MULTI), "prod")


def test_copy_from_a_later_stage_index_is_refused() -> None:
    df = parse("FROM a AS first\nCOPY --from=1 /x /x\nFROM b\n")
    with pytest.raises(DockerfileError, match="Dockerfile:2: COPY --from=1"):
        stages_needed(df, "first")


def test_argv_shell_and_exec_forms() -> None:
    assert DEFAULT_SHELL == ("/bin/sh", "-c")
    assert argv(("echo $HOME",), json=False) == ["/bin/sh", "-c", "echo $HOME"]
    assert argv(("echo", "$HOME"), json=True) == ["echo", "$HOME"]
    assert argv(("echo hi",), json=False, shell=("bash", "-exc")) == ["bash", "-exc", "echo hi"]


def test_copy_from_cycle_is_refused() -> None:
    df = parse("FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n")
    with pytest.raises(DockerfileError, match="circular dependency detected on stage: y"):
        stages_needed(df, "y")


def test_bad_expansion_in_from_names_its_line() -> None:
    df = parse("FROM a\nFROM ${IMAGE:?required}\n")
    with pytest.raises(DockerfileError, match="^Dockerfile:2: failed to process .*IMAGE: required"):
        stages_needed(df, None)
