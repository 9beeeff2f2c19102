"""Dockerfiles as typed values, parsed by BuildKit's own parser (the `dockerfile` package) and
checked here the way BuildKit's instruction layer checks them, with its messages where it has one.

Nothing is expanded here: FROM references, flags and arguments are kept as written, since their
variables depend on build args and on the ENV/ARG state of the stage when the engine reaches them.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

import dockerfile as _bk

from rootless.errors import DockerfileError
from rootless.image import oci
from rootless.values import replace, valueclass

DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")

INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})

# Flag name -> whether it is a boolean (`--link` alone means true); BuildKit's per-instruction sets.
_FLAGS: dict[str, dict[str, bool]] = {
    "FROM": {"platform": False},
    "RUN": {"mount": False, "network": False, "security": False},
    "COPY": {"from": False, "chown": False, "chmod": False, "link": True, "parents": True,
             "exclude": False},
    "ADD": {"chown": False, "chmod": False, "link": True, "checksum": False, "keep-git-dir": True,
            "exclude": False},
    "HEALTHCHECK": {"interval": False, "timeout": False, "start-period": False,
                    "start-interval": False, "retries": False},
}
# Flags BuildKit has and rl does not do yet: refused by name rather than silently ignored.
_UNSUPPORTED = frozenset({
    ("RUN", "mount"), ("COPY", "parents"), ("COPY", "exclude"), ("ADD", "checksum"),
    ("ADD", "keep-git-dir"), ("ADD", "exclude"),
})
_REPEATABLE = frozenset({"mount", "exclude"})

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]+)$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@valueclass
class Heredoc:
    name: str
    content: str  # leading tabs already removed for `<<-`
    quoted: bool  # `<<"EOF"` or `<<'EOF'`: the content is taken literally, never expanded
    fd: int = 0


@valueclass
class Instruction:
    command: str  # upper case: "RUN", "COPY", ...
    args: tuple[str, ...]  # as the parser split them, unexpanded; ENV/LABEL: key, value, key, value...
    json: bool  # exec (JSON array) form
    flags: tuple[tuple[str, str | None], ...]  # ("from", "build"), ("link", None) for a bare flag
    heredocs: tuple[Heredoc, ...]
    original: str
    line: int

    def flag(self, name: str) -> str | None:
        """The value of the flag (the last one given), None when absent or given bare."""
        value = None
        for key, v in self.flags:
            if key == name:
                value = v
        return value

    def heredoc(self, word: str) -> Heredoc | None:
        """The heredoc an argument such as `<<EOF` or `<<-"EOF"` stands for, None for any other."""
        opened = heredoc_word(word)
        return next((h for h in self.heredocs if opened is not None and h.name == opened[0]), None)

    def has_flag(self, name: str) -> bool:
        return any(key == name for key, _ in self.flags)

    def bool_flag(self, name: str) -> bool:
        return self.has_flag(name) and self.flag(name) in (None, "true")

    @property
    def trigger(self) -> str:
        """ONBUILD's instruction text, stored as written and parsed when a child image runs it."""
        return re.sub(r"(?i)^\s*ONBUILD\s*", "", self.original)


@valueclass
class Stage:
    index: int
    name: str | None  # from `AS name`, lower case
    base: str  # image reference, stage name or `scratch`, unexpanded
    platform: str | None
    instructions: tuple[Instruction, ...]
    line: int


@valueclass
class Dockerfile:
    global_args: tuple[Instruction, ...]  # the ARGs before the first FROM
    stages: tuple[Stage, ...]
    escape: str = "\\"

    def stage_named(self, name: str) -> Stage | None:
        name = name.lower()
        for stage in self.stages:
            if stage.name == name:
                return stage
        return None


def parse(text: str) -> Dockerfile:
    """Parse and check a Dockerfile's text."""
    escape = _escape_directive(text)
    try:
        commands = _bk.parse_string(text)
    except _bk.GoParseError as e:
        raise DockerfileError(str(e), _error_line(text, str(e))) from e
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    for command in commands:
        instr = _instruction(command)
        if instr.command == "FROM":
            if stages:
                stages[-1] = replace(stages[-1], instructions=tuple(current))
            current = []
            stages.append(_stage(instr, len(stages), stages))
        elif not stages:
            if instr.command != "ARG":
                raise DockerfileError("no build stage in current context", instr.line)
            global_args.append(instr)
        else:
            current.append(instr)
    if not stages:
        raise DockerfileError("dockerfile contains no stages to build")
    stages[-1] = replace(stages[-1], instructions=tuple(current))
    return Dockerfile(tuple(global_args), tuple(stages), escape)


def read(path: str) -> Dockerfile:
    """The Dockerfile at path; `-` is stdin, as in `docker build -f - CONTEXT`."""
    try:
        if path == "-":
            text = sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")
        else:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
    except FileNotFoundError as e:
        raise DockerfileError(f"cannot read the Dockerfile {path}: no such file") from e
    except OSError as e:
        raise DockerfileError(f"cannot read the Dockerfile {path}: {e.strerror}") from e
    return parse(text)


def platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs, defined in the global scope of every build (a stage sees
    one it declares with a bare `ARG TARGETARCH`). rl builds for the host, so the target and the
    build platform are both the host's."""
    os_name, arch = oci.host_platform()
    variant = "v7" if arch == "arm" else ""
    platform = f"{os_name}/{arch}" + (f"/{variant}" if variant else "")
    return {f"{side}{key}": value for side in ("TARGET", "BUILD")
            for key, value in (("PLATFORM", platform), ("OS", os_name), ("ARCH", arch), ("VARIANT", variant))}


def global_args(df: Dockerfile, build_args: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """The values in the global scope: the platform ARGs, then the ARGs before the first FROM
    (a build arg overriding a default); and which build args those ARGs used."""
    # Imported here: expand raises this module's DockerfileError.
    from rootless.build.expand import parse_key_values

    env = platform_args()
    used: set[str] = set()
    for instr in df.global_args:
        for key, value in parse_key_values("ARG", instr.args, env, df.escape):
            if key in build_args:
                env[key] = build_args[key]
                used.add(key)
            elif value is not None:
                env[key] = value
    return env, used


def stages_needed(df: Dockerfile, target: str | None,
                  build_args: Mapping[str, str] | None = None) -> list[int]:
    """Indexes, in build order, of the stages `target` (default: the last) depends on through
    `FROM <stage>` and `COPY --from=<stage or index>`, itself included.

    FROM references and --from values are expanded with the global ARGs (build args overriding
    their defaults), as BuildKit does for FROM; a value naming no stage is an image.
    """
    # Imported here: expand raises this module's DockerfileError.
    from rootless.build.expand import expand

    if target is None:
        goal = df.stages[-1]
    else:
        found = df.stage_named(target)
        if found is None:
            names = ", ".join(s.name for s in df.stages if s.name) or "none are named"
            raise DockerfileError(f'target stage "{target}" could not be found (stages: {names})')
        goal = found
    env, _ = global_args(df, build_args or {})

    def expand_at(text: str, line: int) -> str:
        try:
            return expand(text, env, df.escape)
        except DockerfileError as e:
            raise e.at(line) from e

    def deps(stage: Stage) -> list[int]:
        out = []
        base = df.stage_named(expand_at(stage.base, stage.line))
        if base is not None and base.index < stage.index:
            out.append(base.index)
        for instr in stage.instructions:
            source = instr.flag("from") if instr.command == "COPY" else None
            if source is None:
                continue
            ref = expand_at(source, instr.line)
            named = df.stage_named(ref)
            if named is not None:
                out.append(named.index)
            elif ref.isdigit():
                if int(ref) >= stage.index:
                    raise DockerfileError(f"COPY --from={ref}: stage {ref} is not defined before "
                                          f"this one", instr.line)
                out.append(int(ref))
        return out

    needed: set[int] = set()
    visiting: set[int] = set()

    def visit(index: int) -> None:
        if index in needed:
            return
        if index in visiting:
            stage = df.stages[index]
            raise DockerfileError(f"circular dependency detected on stage: {stage.name or index}",
                                  stage.line)
        visiting.add(index)
        for dep in deps(df.stages[index]):
            visit(dep)
        visiting.discard(index)
        needed.add(index)

    visit(goal.index)
    return sorted(needed)


def argv(args: Sequence[str], json: bool, shell: Sequence[str] = DEFAULT_SHELL) -> list[str]:
    """The command line of RUN, CMD or ENTRYPOINT: the exec form as written, the shell form as one
    string handed to the stage's SHELL."""
    if json:
        return list(args)
    return [*shell, " ".join(args)]


def _escape_directive(text: str) -> str:
    for line in text.lstrip("\ufeff").splitlines():
        m = _DIRECTIVE.match(line)
        if m is None:
            break
        if m.group(1).lower() == "escape":
            return m.group(2)
    return "\\"


def _error_line(text: str, message: str) -> int | None:
    """The parser's errors carry no line: the first prefix of the file that fails the same way
    ends on it. Only run on the error path, and Dockerfiles are small."""
    lines = text.splitlines(keepends=True)
    for n in range(1, len(lines) + 1):
        try:
            _bk.parse_string("".join(lines[:n]))
        except _bk.GoParseError as e:
            if str(e) == message:
                return n
    return None


def _instruction(command: _bk.Command) -> Instruction:
    name = command.cmd.upper()
    line = command.start_line
    if name not in INSTRUCTIONS:
        raise DockerfileError(f"unknown instruction: {name}", line)
    flags = _flags(name, command.flags, line)
    args = tuple(command.value)
    if name == "ONBUILD":
        sub = (command.sub_cmd or "").upper()
        if not sub:
            raise DockerfileError("ONBUILD requires at least one argument", line)
        if sub in ("ONBUILD", "FROM", "MAINTAINER"):
            message = ("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed" if sub == "ONBUILD"
                       else f"{sub} isn't allowed as an ONBUILD trigger")
            raise DockerfileError(message, line)
        if sub not in INSTRUCTIONS:
            raise DockerfileError(f"unknown instruction: {sub}", line)
    instr = Instruction(name, args, command.json, flags, _heredocs(command), command.original, line)
    _check_args(instr)
    return instr


def _flags(name: str, raw: Sequence[str], line: int) -> tuple[tuple[str, str | None], ...]:
    allowed = _FLAGS.get(name, {})
    out: list[tuple[str, str | None]] = []
    for flag in raw:
        if not flag.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {flag}", line)
        key, eq, value = flag[2:].partition("=")
        if key not in allowed:
            raise DockerfileError(f"Unknown flag: {key}", line)
        if (name, key) in _UNSUPPORTED:
            raise DockerfileError(f"{name} --{key} is not supported yet by rl build", line)
        if key not in _REPEATABLE and any(k == key for k, _ in out):
            raise DockerfileError(f"Duplicate flag specified: {key}", line)
        if allowed[key]:
            if eq and value not in ("true", "false"):
                raise DockerfileError(f"expecting boolean value for flag {key}, not: {value}", line)
            out.append((key, value if eq else None))
            continue
        if not eq:
            raise DockerfileError(f"Missing a value on flag: {key}", line)
        if key == "network" and value not in ("default", "none", "host"):
            raise DockerfileError(f'unsupported network mode "{value}": use default, none or host', line)
        if key == "security":
            if value == "insecure":
                raise DockerfileError("RUN --security=insecure is not supported yet by rl build", line)
            if value != "sandbox":
                raise DockerfileError(f'unsupported security mode "{value}"', line)
        out.append((key, value))
    return tuple(out)


def heredoc_word(word: str) -> tuple[str, bool, bool] | None:
    """A word that opens a heredoc (`<<EOF`, `<<-EOF`, `3<<"EOF"`): its name, whether it strips
    leading tabs (`<<-`) and whether it was quoted (no expansion); None for any other word."""
    m = _HEREDOC_WORD.match(word)
    if m is None or len(m.group(3).split()) != 1:
        return None
    rest = m.group(3)
    return (rest.replace('"', "").replace("'", "").replace("\\", ""), m.group(2) == "-",
            any(q in rest for q in "'\""))


def _heredocs(command: _bk.Command) -> tuple[Heredoc, ...]:
    if not command.heredocs:
        return ()
    # The parser gives each heredoc's name and body; whether the delimiter was quoted (no
    # expansion) and `<<-` (strip leading tabs) are read from the words of the first line.
    words = [w for w in map(heredoc_word, command.original.split("\n", 1)[0].split()) if w is not None]
    out = []
    for doc in command.heredocs:
        chomp, quoted = False, False
        for i, (name, c, q) in enumerate(words):
            if name == doc.name:
                chomp, quoted = c, q
                del words[i]
                break
        content = doc.content
        if chomp:
            content = "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))
        out.append(Heredoc(doc.name, content, quoted, doc.file_descriptor))
    return tuple(out)


def _check_args(instr: Instruction) -> None:
    name, args, line = instr.command, instr.args, instr.line
    if name == "VOLUME" and instr.json and any(not a.strip() for a in args):
        raise DockerfileError("VOLUME specified can not be an empty string", line)
    if name in ("COPY", "ADD") and len(args) < 2:
        raise DockerfileError(f"{name} requires at least two arguments, but only one was provided. "
                              f"Destination could not be determined.", line)
    if name in ("COPY", "ADD") and heredoc_word(args[-1]) is not None:
        raise DockerfileError(f"{name} cannot accept a heredoc as a destination", line)
    if name in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER") and len(args) != 1:
        raise DockerfileError(f"{name} requires exactly one argument", line)
    if name in ("RUN", "ENV", "LABEL", "ARG", "EXPOSE", "VOLUME", "HEALTHCHECK") and not any(args):
        raise DockerfileError(f"{name} requires at least one argument", line)
    if name == "FROM":
        if len(args) not in (1, 3):
            raise DockerfileError("FROM requires either one or three arguments", line)
        if len(args) == 3 and args[1].lower() != "as":
            raise DockerfileError('when using FROM with three arguments, the second argument must '
                                  'be "AS"', line)
    if name == "SHELL":
        if not instr.json:
            raise DockerfileError("SHELL requires the arguments to be in JSON form", line)
        if not args:
            raise DockerfileError("SHELL requires at least one argument", line)
    if name == "ENV" and any(not key for key in args[::2]):
        raise DockerfileError("ENV names can not be blank", line)
    if name == "ARG" and any(arg.startswith("=") for arg in args):
        raise DockerfileError("ARG names can not be blank", line)
    if name == "HEALTHCHECK":
        kind = args[0].upper()
        if kind == "NONE" and len(args) > 1:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments", line)
        if kind == "CMD" and (len(args) < 2 or not any(args[1:])):
            raise DockerfileError("Missing command after HEALTHCHECK CMD", line)
        if kind not in ("NONE", "CMD"):
            raise DockerfileError(f'Unknown type "{args[0]}" in HEALTHCHECK (try CMD)', line)


def _stage(instr: Instruction, index: int, earlier: Sequence[Stage]) -> Stage:
    name = None
    if len(instr.args) == 3:
        name = instr.args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(f'invalid name for build stage: "{instr.args[2]}", name can\'t '
                                  f'start with a number or contain symbols', instr.line)
        if any(s.name == name for s in earlier):
            raise DockerfileError(f'duplicate stage name "{name}"', instr.line)
    return Stage(index, name, instr.args[0], instr.flag("platform"), (), instr.line)
