"""Entry point of `rl`. Imports stay light here: each command loads what it needs when it runs."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from rootless import __version__

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import NoReturn


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() finds it; argparse would import shutil
    (with bz2, lzma and fnmatch) for it, ~2 ms of every start."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _untranslated(message: str) -> str:
    return message


def _untranslated_plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


class _English:
    """While rl builds its parser and parses, argparse's own words stay English like the rest of
    rl's help and are not looked up through gettext, which searched the locale directories on
    each of the hundreds of calls building a parser makes (~1.5 ms of every start, with the
    import of locale). argparse offers no hook for this but its module-level `_` and `ngettext`:
    they are swapped for this span only, so a program that imports rl's API keeps its own."""

    def __enter__(self) -> None:
        self.saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
        argparse._, argparse.ngettext = _untranslated, _untranslated_plural  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        argparse._, argparse.ngettext = self.saved  # type: ignore[attr-defined]


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kw: object) -> None:
        kw.setdefault("formatter_class", _Formatter)
        # Docker's flags are not abbreviated: `--pid host` must not be taken for --pids-limit.
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"Error: {message} (see '{self.prog} --help')\n")
        sys.exit(125)


class _Skipped:
    """Stands in for the parser of a command that is not the one being run, and for the options
    of every command when none is (`rl --help` lists only their names): building all ~35 argparse
    parsers with their options costs ~30 ms, a third of what `rl images` may take."""

    def add_argument(self, *args: object, **kw: object) -> None:
        pass

    def add_subparsers(self, **kw: object) -> "_Skipped":
        return self


_only: str | None = None  # the command being run; None: none is, the commands are only listed


def _add(sub: argparse._SubParsersAction, name: str, help: str, run: str, **kw: object) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    if isinstance(sub, _Skipped) or (_only is not None and getattr(sub, "_rl_top", False) and name != _only):
        return _Skipped()  # type: ignore[return-value]
    kw.setdefault("add_help", name != "run")
    p = sub.add_parser(name, help=help, description=help, **kw)  # type: ignore[arg-type]
    p.set_defaults(run=run)
    return p if _only is not None else _Skipped()  # type: ignore[return-value]


def _group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    if _only is not None and name != _only:
        return _Skipped()  # type: ignore[return-value]
    p = sub.add_parser(name, help=help, description=help)
    return p if _only is not None else _Skipped()  # type: ignore[return-value]


def _command_word(argv: Sequence[str]) -> str | None:
    """The command of a command line, found without building the parser (None: show all)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--root", "--storage-driver"):
            i += 2
            continue
        if a.startswith("-"):
            if a.startswith(("--root=", "--storage-driver=")):
                i += 1
                continue
            return None
        return a
    return None


def build_parser() -> argparse.ArgumentParser:
    """rl's whole command line: the global options, every command with Docker's flags, and its
    handler named as "module:function" (`_add`'s `run`), imported only when that command runs.

    Building ~35 parsers costs ~30 ms, a third of a short command's time, so only the parser of
    the command being run (`_only`) gets its options; the others are `_Skipped` stand-ins.
    Every parser is a `_Parser`: usage errors exit 125 with one line, as Docker's do, and no
    option is taken for an abbreviation of another (`--pid` is not `--pids-limit`)."""
    parser = _Parser(prog="rl", description="rl: build, run and share container images without root or a daemon")
    parser.add_argument("--version", action="version", version=f"rl version {__version__}")
    parser.add_argument("--root", help="the image store (default: $RL_ROOT, else $XDG_DATA_HOME/rl)")
    parser.add_argument("--storage-driver", choices=("overlay", "fuse-overlay", "vfs"),
                        help="how containers see their layers (default: $RL_STORAGE_DRIVER, else chosen by rl info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub._rl_top = True  # type: ignore[attr-defined]

    p = _add(sub, "import", "Import a root filesystem (tarball, directory or -) as an image", "images:cmd_import")
    p.add_argument("source", metavar="TARBALL|DIR|-")
    p.add_argument("reference", metavar="NAME[:TAG]", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction (CMD, ENV, ...)")
    p.add_argument("-m", "--message", help="commit message for the history")
    p.add_argument("-q", "--quiet", action="store_true")

    p = _add(sub, "build", "Build an image from a Dockerfile", "build:cmd_build")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name the image")
    p.add_argument("-f", "--file", metavar="DOCKERFILE", help="default: CONTEXT/Dockerfile; -: stdin")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", help="set a build-time variable")
    p.add_argument("--target", metavar="STAGE", help="build this stage (and the ones it needs) only")
    p.add_argument("--no-cache", action="store_true", help="rebuild every step")
    p.add_argument("--pull", default="missing", metavar="POLICY", help="missing (the default), always or "
                                                                      "never: when to pull base images")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="add a label to the image")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--iidfile", metavar="FILE", help="write the image id to FILE")
    p.add_argument("--format", choices=("oci", "docker"), default="oci", help="image format (default oci)")
    p.add_argument("--network", default="host", help="for RUN: host (the default) or none")

    p = _add(sub, "images", "List images", "images:cmd_images")
    p.add_argument("name", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("-a", "--all", action="store_true", help="also the intermediate images of rl build's cache")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--format", help=_LISTING_FORMAT)

    p = _add(sub, "tag", "Give an image another name", "images:cmd_tag")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")

    p = _add(sub, "rmi", "Remove images", "images:cmd_rmi")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true")

    p = _add(sub, "inspect", "Show details of images or containers as JSON", "images:cmd_inspect")
    p.add_argument("objects", nargs="+", metavar="IMAGE|CONTAINER")
    p.add_argument("--type", choices=("image", "container"))
    p.add_argument("-f", "--format", help="'json' (the default) or a Go template such as '{{.State.Running}}'")

    p = _add(sub, "history", "Show the history of an image", "images:cmd_history")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-H", "--human", default=True, type=lambda s: s.lower() not in ("false", "0", "no"))
    p.add_argument("--format", help=_LISTING_FORMAT)

    p = _add(sub, "save", "Save images to a tar archive (OCI layout plus Docker manifest.json)", "archive:cmd_save")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--format", default="docker-archive", choices=("docker-archive", "oci-archive", "oci-dir"),
                   help="docker-archive and oci-archive both hold an OCI layout and a manifest.json; oci-dir writes a directory")

    p = _add(sub, "load", "Load images from a Docker or OCI archive, or an OCI layout directory", "archive:cmd_load")
    p.add_argument("-i", "--input", default="-", help="archive file or OCI layout directory (default: stdin)")
    p.add_argument("-q", "--quiet", action="store_true")

    p = _add(sub, "run", "Run a command in a new container", "containers:cmd_run")
    _run_options(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")

    p = _add(sub, "ps", "List containers", "containers:cmd_ps")
    p.add_argument("-a", "--all", action="store_true", help="also containers that are not running")
    p.add_argument("-q", "--quiet", action="store_true", help="only container ids")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", help=_LISTING_FORMAT)

    p = _add(sub, "rm", "Remove containers", "containers:cmd_rm")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove its anonymous volumes")

    p = _add(sub, "logs", "Show a container's output", "lifecycle:cmd_logs")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", default="all", help="only the last N lines")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since", help=argparse.SUPPRESS)

    p = _add(sub, "stop", "Stop running containers (StopSignal, then SIGKILL after a timeout)", "lifecycle:cmd_stop")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", type=int, help="seconds to wait before SIGKILL (default: the container's, 10)")

    p = _add(sub, "kill", "Send a signal to running containers", "lifecycle:cmd_kill")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", default="SIGKILL")

    p = _add(sub, "start", "Start stopped containers (their changes kept)", "lifecycle:cmd_start")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-a", "--attach", action="store_true", help="attach to its output and wait")
    p.add_argument("-i", "--interactive", action="store_true")

    p = _add(sub, "restart", "Restart containers", "lifecycle:cmd_restart")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", type=int, help="seconds to wait before SIGKILL")

    p = _add(sub, "wait", "Wait for containers to exit and print their exit codes", "lifecycle:cmd_wait")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = _add(sub, "exec", "Run a command in a running container", "execute:cmd_exec", add_help=False)
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--preserve-fds", type=_fd_count, default=0, metavar="N", help=_PRESERVE_FDS_HELP)
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")

    p = _add(sub, "cp", "Copy files between a container and the host (CONTAINER:PATH on one side)", "transfer:cmd_cp")
    p.add_argument("source", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("-a", "--archive", action="store_true", help="keep owners (uid/gid)")

    p = _add(sub, "export", "Write a container's file system as a tar archive", "transfer:cmd_export")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = _add(sub, "commit", "Make an image of a container's changes", "transfer:cmd_commit")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="NAME[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-a", "--author")
    p.add_argument("-q", "--quiet", action="store_true")

    volp = _group(sub, "volume", "Manage volumes")
    volsub = volp.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser, required=True)
    p = _add(volsub, "create", "Create a volume", "volumes:cmd_create")
    p.add_argument("name", nargs="?")
    p.add_argument("--label", action="append", default=[])
    p = _add(volsub, "ls", "List volumes", "volumes:cmd_ls")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", help=_LISTING_FORMAT)
    p = _add(volsub, "inspect", "Show volumes as JSON", "volumes:cmd_inspect")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p = _add(volsub, "rm", "Remove volumes", "volumes:cmd_rm")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true")
    p = _add(volsub, "prune", "Remove volumes no container uses", "volumes:cmd_prune")
    p.add_argument("-f", "--force", action="store_true")

    p = _add(sub, "info", "Show how rl runs on this host", "system:cmd_info")
    p.add_argument("--format", help="'json'")

    sysp = _group(sub, "system", "Manage the store")
    syssub = sysp.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser, required=True)
    p = _add(syssub, "df", "Show disk usage", "system:cmd_df")
    p.add_argument("--format", help="'json'")
    p = _add(syssub, "prune", "Remove unused images, layers and blobs", "system:cmd_prune")
    p.add_argument("-a", "--all", action="store_true", help="remove every image no container uses, not only untagged ones")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p = _add(syssub, "info", "Show how rl runs on this host", "system:cmd_info")
    p.add_argument("--format", help="'json'")
    p = _add(syssub, "check", "Check the store for what a crash left, and repair it", "system:cmd_check")
    p.add_argument("-r", "--repair", action="store_true", help="remove what is damaged or left over, "
                   "except images that containers use")
    p.add_argument("-f", "--force", action="store_true", help="with --repair, also remove damaged images that "
                   "containers use, and those containers")
    p.add_argument("-q", "--quick", action="store_true", help="skip hashing every blob")
    p.add_argument("--format", help="'json'")

    # ---- registries (rootless/cli/registry.py) ----
    def _tls_bool(v: str) -> bool:
        return v.lower() not in ("false", "0", "no")

    tls_help = "false: skip certificate checks and allow plain HTTP (default true; localhost is always plain HTTP)"
    p = _add(sub, "pull", "Pull an image from a registry", "registry:cmd_pull")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="from a multi-platform image (default: the host's)")
    p.add_argument("--tls-verify", type=_tls_bool, default=True, metavar="BOOL", help=tls_help)
    p = _add(sub, "push", "Push an image to a registry", "registry:cmd_push")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("destination", nargs="?", metavar="DEST", help="the name to push as (default: IMAGE)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--compression", choices=("gzip", "zstd", "none"), default="gzip",
                   help="compress the layers stored uncompressed, as Docker and podman do (default gzip; "
                        "none: push as stored)")
    p.add_argument("--tls-verify", type=_tls_bool, default=True, metavar="BOOL", help=tls_help)
    p = _add(sub, "login", "Log in to a registry", "registry:cmd_login")
    p.add_argument("registry", nargs="?", metavar="REGISTRY", help="host[:port] (default docker.io)")
    p.add_argument("-u", "--username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--tls-verify", type=_tls_bool, default=True, metavar="BOOL", help=tls_help)
    p = _add(sub, "logout", "Log out of a registry", "registry:cmd_logout")
    p.add_argument("registry", nargs="?", metavar="REGISTRY", help="host[:port] (default docker.io)")
    manp = _group(sub, "manifest", "Look at manifests in registries")
    mansub = manp.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser, required=True)
    p = _add(mansub, "inspect", "Print an image's manifest (or index) as the registry has it", "registry:cmd_manifest_inspect")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--tls-verify", type=_tls_bool, default=True, metavar="BOOL", help=tls_help)
    # ---- end of registries ----

    p = _add(sub, "version", "Show the rl version", "system:cmd_version")
    return parser


_LISTING_FORMAT = "'table' (the default), 'json', or a Go template of a row such as '{{.ID}}'"
_PRESERVE_FDS_HELP = "pass descriptors 3 to 3+N-1 to the command (no other descriptor goes through)"


def _fd_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of descriptors: {text!r}")
    return int(text)


def _run_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--rm", action="store_true", help="remove the container when it exits")
    a("--name", help="a name for the container")
    a("-i", "--interactive", action="store_true", help="keep stdin open")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    a("-d", "--detach", action="store_true", help="run in the background and print the container id")
    a("-e", "--env", action="append", default=[], metavar="K=V|K", help="set an environment variable")
    a("--env-file", action="append", default=[], help="read environment variables from a file")
    a("-w", "--workdir", help="working directory inside the container")
    a("-u", "--user", help="user[:group] to run as (name or number)")
    a("--preserve-fds", type=_fd_count, default=0, metavar="N", help=_PRESERVE_FDS_HELP)
    a("--group-add", action="append", default=[], help="another group for the user")
    a("-h", "--hostname", help="the container's host name")
    a("--entrypoint", help="override the image's entrypoint")
    a("-v", "--volume", action="append", default=[], metavar="SRC:DST[:OPTS]", help="bind mount or volume")
    a("--mount", action="append", default=[], help="type=bind|volume|tmpfs,source=...,target=...[,readonly]")
    a("--tmpfs", action="append", default=[], metavar="PATH[:OPTS]", help="mount a tmpfs")
    a("--read-only", action="store_true", help="mount the root file system read-only")
    a("--userns", default="", metavar="keep-id", help="keep-id: your uid and gid are yours inside too")
    a("--pull", default="missing", metavar="POLICY", help="missing (the default), always or never: "
                                                          "when to pull the image from its registry")
    a("--init", action="store_true", help="run a minimal init as pid 1 that forwards signals and reaps zombies")
    a("--network", "--net", default="host", help="host (the default) or none")
    a("-p", "--publish", action="append", default=[], help="not supported yet: use --network host")
    a("--cap-add", action="append", default=[], help="add a capability (inside the user namespace)")
    a("--cap-drop", action="append", default=[], help="drop a capability")
    a("--security-opt", action="append", default=[], help="no-new-privileges, seccomp=unconfined|PROFILE.json")
    a("--stop-signal", help="signal to stop the container (default: the image's, else SIGTERM)")
    a("--stop-timeout", type=int, help="seconds to wait before killing on stop")
    a("--memory", "-m", help=argparse.SUPPRESS)
    a("--cpus", help=argparse.SUPPRESS)
    a("--pids-limit", help=argparse.SUPPRESS)
    a("--help", action="help", help="show this help message and exit")


def _load(target: str) -> Callable[[argparse.Namespace], int | None]:
    module, func = target.split(":")
    import importlib

    return getattr(importlib.import_module(f"rootless.cli.{module}"), func)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    global _only
    argv = list(sys.argv[1:] if argv is None else argv)
    _only = _command_word(argv)
    with _English():
        parser = build_parser()
        if _only is not None and _only not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
            _only = None
            parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 0 if args.command is None else 125
    from rootless.errors import RlError, describe

    try:
        code = _load(args.run)(args)
    except RlError as e:
        if os.environ.get("RL_DEBUG"):
            raise
        sys.stderr.write(f"Error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `rl images | head`); say nothing, as Docker does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if os.environ.get("RL_DEBUG"):
            raise
        sys.stderr.write(f"Error: {describe(e)}\n")
        return 125
    except Exception as e:  # noqa: BLE001 - a user never sees a traceback
        if os.environ.get("RL_DEBUG"):
            raise
        sys.stderr.write(f"Error: internal error: {type(e).__name__}: {e} (run with RL_DEBUG=1 for details)\n")
        return 125
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code or 0


def run() -> NoReturn:
    """The `rl` command. It ends with os._exit: the interpreter's teardown (freeing every module,
    ~5 ms of each `rl run`) has nothing to do that a finished command needs."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
