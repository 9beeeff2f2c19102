"""rl build: a Dockerfile's stages, step by step, each step an image in the store.

Each step starts from the image the previous one made (or found in the cache): metadata
instructions derive an image with a new config and an `empty_layer` history entry; RUN runs a
container on that image through the normal runtime (every storage driver and id mapping works)
and turns its upper directory into the new layer; COPY writes its layer straight from the
context. The images of the steps are the cache (rootless/build/cache.py).
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from rootless.build import cache, heredoc
from rootless.build.dockerfile import DEFAULT_SHELL, Dockerfile, Instruction, Stage, argv, global_args, read
from rootless.errors import BuildFailed, DockerfileError, ImageNotFound, RlError
from rootless.build.expand import EXPANDED, expand, expand_words, parse_key_values
from rootless.image import oci
from rootless.image.derive import derive, scratch_config
from rootless.image.reference import Reference, parse
from rootless.store.records import ImageRecord
from rootless.store.store import Store
from rootless.values import field, replace, valueclass

# BuildKit's predefined ARGs: usable without an ARG line, never stored in the image.
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_METADATA = ("ENV", "LABEL", "CMD", "ENTRYPOINT", "WORKDIR", "USER", "EXPOSE", "VOLUME", "STOPSIGNAL",
             "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER")


@valueclass
class BuildOptions:
    context: str
    dockerfile: str | None = None  # default: CONTEXT/Dockerfile
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    no_cache: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    quiet: bool = False
    storage_driver: str | None = None
    network: str = "host"  # for RUN without --network
    format: str = "oci"  # or "docker": the image's manifest and config media types
    pull: str = "missing"  # when base images (and COPY --from images) are pulled


@valueclass(frozen=False)
class StageState:
    """Where a stage is: the image so far (None: `FROM scratch` before any layer), its config,
    the ARG values in scope and the config instructions the stage itself gave."""

    image: ImageRecord | None
    config: dict[str, Any]
    args: dict[str, str]
    set_here: set[str] = field(default_factory=set)


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH, the time reproducible builds write everywhere (None when unset)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return None
    if not epoch.isdigit():
        raise RlError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {epoch!r}")
    return int(epoch)


def _created() -> str:
    """When a step's image is made: SOURCE_DATE_EPOCH when set, for reproducible image ids."""
    epoch = source_date_epoch()
    return oci.rfc3339(float(epoch) if epoch is not None else time.time())


class Builder:
    def __init__(self, store: Store, opts: BuildOptions, out: TextIO = sys.stdout) -> None:
        self.store = store
        self.opts = opts
        self.out = out
        self.build_args = dict(opts.build_args)
        self.used_args: set[str] = set()
        self.tags: list[Reference] = [parse(t) for t in opts.tags]
        self.stage_images: dict[int, ImageRecord | None] = {}
        self.step = 0
        self.steps = 0
        self.df: Dockerfile | None = None

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # ---- the whole build ------------------------------------------------------------------

    def build(self) -> ImageRecord:
        from rootless.build.dockerfile import stages_needed

        path = self.opts.dockerfile or os.path.join(self.opts.context, "Dockerfile")
        if not os.path.isdir(self.opts.context):
            raise RlError(f"the build context {self.opts.context} is not a directory")
        df = read(path)
        self.df = df
        wanted = stages_needed(df, self.opts.target, self.build_args)
        self.steps = sum(1 + len(df.stages[i].instructions) for i in wanted)
        global_env = self._global_args(df)
        result: ImageRecord | None = None
        for i in wanted:
            result = self._stage(df, df.stages[i], global_env)
            self.stage_images[i] = result
        if result is None:
            raise BuildFailed("the build made no image: the target stage is an empty FROM scratch")
        if self.opts.labels:
            result = self._derive_labels(result)
        unused = sorted(set(self.build_args) - self.used_args - set(PREDEFINED_ARGS))
        if unused:
            sys.stderr.write(f"Warning: build args not consumed by the Dockerfile: {', '.join(unused)}\n")
        manifest = self.store.manifest(result)
        wanted = manifest.as_docker() if self.opts.format == "docker" else manifest.as_oci()
        if wanted != manifest:
            # A cached step can be the result of a build that asked for the other format.
            with self.store.adding():
                result = self.store.set_manifest(result, wanted.to_bytes())
        for t in self.tags:
            self.store.tag(result, t)
        if self.tags:
            self.say("COMMIT " + " ".join(str(t) for t in self.tags))
        return result

    def _global_args(self, df: Dockerfile) -> dict[str, str]:
        env, used = global_args(df, self.build_args)
        self.used_args |= used
        return env

    # ---- one stage ------------------------------------------------------------------------

    def _stage(self, df: Dockerfile, stage: Stage, global_env: dict[str, str]) -> ImageRecord | None:
        self.step += 1
        base_name = _expand_at(stage.base, global_env, df.escape, stage.line)
        self.say(f"STEP {self.step}/{self.steps}: FROM {base_name}" + (f" AS {stage.name}" if stage.name else ""))
        state = self._base(df, base_name, stage)
        section = state.config.get("config") or {}
        if not any(e.startswith("PATH=") for e in section.get("Env") or []):
            # BuildKit and buildah give every image a PATH: a base without one gets the default.
            state.config = {**state.config, "config": {**section, "Env": [DEFAULT_PATH, *(section.get("Env") or [])]}}
        triggers = self._onbuild(state, stage)
        for instr in (*triggers, *stage.instructions):
            self.step += 1
            self.say(f"STEP {self.step}/{self.steps}: {_one_line(instr.original)}")
            try:
                self._instruction(df, state, instr, global_env)
            except DockerfileError as e:
                # One raised in the user namespace comes back without its line (only its message).
                raise e if getattr(e, "line", None) is not None or str(e).startswith("Dockerfile:") \
                    else e.at(instr.line) from e
            except BuildFailed as e:
                raise BuildFailed(f"STEP {self.step}/{self.steps}: {_one_line(instr.original)}: {e}") from e
        return state.image

    def _onbuild(self, state: StageState, stage: Stage) -> list[Instruction]:
        """The base image's ONBUILD triggers, run first (as Docker does); a child of this stage's
        image does not inherit them."""
        from rootless.build.dockerfile import parse

        section = state.config.get("config") or {}
        texts = section.get("OnBuild") or []
        if not texts:
            return []
        state.config = {**state.config, "config": {k: v for k, v in section.items() if k != "OnBuild"}}
        out = []
        for text in texts:
            try:
                (instr,) = parse(f"FROM scratch\n{text}\n").stages[0].instructions
            except (DockerfileError, ValueError):
                raise DockerfileError(f"the base image's ONBUILD trigger {text!r} cannot be run", stage.line)
            out.append(replace(instr, line=stage.line))
        self.steps += len(out)
        return out

    def _base(self, df: Dockerfile, name: str, stage: Stage) -> StageState:
        if name == "scratch":
            return StageState(None, scratch_config(), {})
        earlier = df.stage_named(name)
        if earlier is not None and earlier.index < stage.index:
            image = self.stage_images.get(earlier.index)
            config = self.store.config(image) if image is not None else scratch_config()
            return StageState(image, config, {})
        image = self.image_named(name, f"Dockerfile:{stage.line}: base image {name}")
        return StageState(image, self.store.config(image), {})

    def image_named(self, name: str, what: str) -> ImageRecord:
        """An image of the store, pulled first as --pull says. A base image that cannot be had
        fails the build as a step does (docker build's exit 1), whether it is missing under
        --pull=never or its registry fails the pull."""
        from rootless.registry import policy
        from rootless.errors import RegistryError

        try:
            return policy.resolve(self.store, name, self.opts.pull, self.say)
        except ImageNotFound:
            raise BuildFailed(f"{what} is not in the store (and --pull=never)")
        except RegistryError as e:
            raise BuildFailed(f"{what}: {e}") from e

    def image_for(self, name: str, line: int) -> ImageRecord:
        """What `COPY --from=NAME` copies from: a stage built before (by name or index), else an
        image in the store."""
        assert self.df is not None
        stage = self.df.stage_named(name)
        index = stage.index if stage is not None else (int(name) if name.isdigit() else None)
        if index is not None:
            if index not in self.stage_images:
                raise DockerfileError(f"COPY --from={name}: that stage is not built before this one", line)
            image = self.stage_images[index]
            if image is None:
                raise DockerfileError(f"COPY --from={name}: that stage has no files (an empty FROM scratch)", line)
            return image
        return self.image_named(name, f"Dockerfile:{line}: COPY --from={name}: no stage, and the image")

    def _instruction(self, df: Dockerfile, state: StageState, instr: Instruction, global_env: dict[str, str]) -> None:
        if instr.command == "ARG":
            self._arg(df, state, instr, global_env)
            return
        env = self._env(state)
        if instr.command in EXPANDED and instr.command not in ("ENV", "LABEL"):
            words = [w for a in instr.args for w in expand_words(a, env, df.escape)] if not instr.json \
                else [expand(a, env, df.escape) for a in instr.args]
        else:
            words = list(instr.args)
        if instr.command in _METADATA:
            section = dict(state.config.get("config") or {})
            self._apply_metadata(df, state, instr, words, env, section)
            created_by = _created_by(instr, words)
            key = cache.step_key(self._parent(state), [created_by, json.dumps(state.config, sort_keys=True),
                                                       json.dumps(section, sort_keys=True)], {})
            if instr.command == "WORKDIR":
                from rootless.build.copy import mkdir_layer

                self.cached_or(state, key, lambda: self._derive(state, section, created_by,
                                                                 mkdir_layer(self, state, _clean(section["WorkingDir"]))))
            elif instr.command == "VOLUME":
                from rootless.build.copy import volume_layer

                self.cached_or(state, key, lambda: self._derive(state, section, created_by,
                                                                 volume_layer(self, state, words)))
            else:
                self.cached_or(state, key, lambda: self._derive(state, section, created_by))
        elif instr.command == "RUN":
            self._run(df, state, instr)
        elif instr.command in ("COPY", "ADD"):
            from rootless.build.copy import copy_step

            copy_step(self, df, state, instr, env)
        else:
            raise DockerfileError(f"{instr.command} is not supported", instr.line)

    # ---- ARG and the environment ------------------------------------------------------------

    def _arg(self, df: Dockerfile, state: StageState, instr: Instruction, global_env: dict[str, str]) -> None:
        for key, default in parse_key_values("ARG", instr.args, self._env(state), df.escape):
            if key in self.build_args:
                state.args[key] = self.build_args[key]
                self.used_args.add(key)
            elif default is not None:
                state.args[key] = default
            elif key in global_env:  # a global ARG redeclared in the stage takes its value
                state.args[key] = global_env[key]

    def _env(self, state: StageState) -> dict[str, str]:
        """What variables expand to: ARGs in scope, the image's ENV over them (as BuildKit does)."""
        env = dict(state.args)
        for e in (state.config.get("config") or {}).get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    def run_env(self, state: StageState) -> list[str]:
        """The environment a RUN gets besides the image's: the ARGs in scope and the predefined
        proxy args given with --build-arg (never stored in the image)."""
        image_env = {e.partition("=")[0] for e in (state.config.get("config") or {}).get("Env") or []}
        extra = dict(state.args)
        for k in PREDEFINED_ARGS:
            if k in self.build_args:
                extra[k] = self.build_args[k]
                self.used_args.add(k)
        return [f"{k}={v}" for k, v in extra.items() if k not in image_env]

    # ---- metadata instructions --------------------------------------------------------------

    def _apply_metadata(self, df: Dockerfile, state: StageState, instr: Instruction, words: list[str],
                        env: dict[str, str], section: dict[str, Any]) -> None:
        cmd = instr.command
        if cmd == "ENV":
            current = list(section.get("Env") or [])
            for k, v in parse_key_values("ENV", instr.args, env, df.escape):
                current = [e for e in current if e.partition("=")[0] != k] + [f"{k}={v}"]
            section["Env"] = current
        elif cmd == "LABEL":
            labels = dict(section.get("Labels") or {})
            labels.update(parse_key_values("LABEL", instr.args, env, df.escape))  # type: ignore[arg-type]
            section["Labels"] = labels
        elif cmd in ("CMD", "ENTRYPOINT"):
            shell = section.get("Shell") or list(DEFAULT_SHELL)
            section["Cmd" if cmd == "CMD" else "Entrypoint"] = argv(instr.args, instr.json, shell)
            if cmd == "ENTRYPOINT" and "CMD" not in state.set_here:
                # Docker: an ENTRYPOINT drops the Cmd inherited from the base image.
                section.pop("Cmd", None)
        elif cmd == "WORKDIR":
            # As BuildKit records it: an absolute path as written (`/root/` keeps its slash), a
            # relative one joined to the current directory and cleaned.
            path = words[0]
            if not path.startswith("/"):
                path = _clean(os.path.join(section.get("WorkingDir") or "/", path))
            section["WorkingDir"] = path
        elif cmd == "USER":
            section["User"] = words[0]
        elif cmd == "EXPOSE":
            ports = dict(section.get("ExposedPorts") or {})
            for p in words:
                ports[p if "/" in p else f"{p}/tcp"] = {}
            section["ExposedPorts"] = ports
        elif cmd == "VOLUME":
            vols = dict(section.get("Volumes") or {})
            for v in words:
                vols[v] = {}
            section["Volumes"] = vols
        elif cmd == "STOPSIGNAL":
            section["StopSignal"] = words[0]
        elif cmd == "SHELL":
            if not instr.json:
                raise DockerfileError("SHELL requires the arguments to be in JSON form", instr.line)
            section["Shell"] = list(instr.args)
        elif cmd == "HEALTHCHECK":
            section["Healthcheck"] = _healthcheck(instr)
        elif cmd == "ONBUILD":
            section["OnBuild"] = [*(section.get("OnBuild") or []), instr.trigger]
        elif cmd == "MAINTAINER":
            state.config = {**state.config, "author": " ".join(words)}
        state.set_here.add(cmd)

    # ---- RUN --------------------------------------------------------------------------------

    def _run(self, df: Dockerfile, state: StageState, instr: Instruction) -> None:
        from rootless.build.run import run_step

        if state.image is None:
            raise DockerfileError("RUN needs a base image with the command in it: FROM scratch has "
                                  "no files yet", instr.line)
        section = state.config.get("config") or {}
        shell = section.get("Shell") or DEFAULT_SHELL
        command, script = argv(instr.args, instr.json, shell), None
        if instr.heredocs and not instr.json:
            command, script = heredoc.run_command(instr, shell)
        args_in_scope = {k: v for k, v in state.args.items()}
        args_in_scope.update({k: self.build_args[k] for k in PREDEFINED_ARGS if k in self.build_args})
        network = instr.flag("network") or "default"
        # A script run from a file is not in the command line: its body is part of the key.
        key = cache.step_key(state.image.id, ["RUN", *command, f"network={network}",
                                              *([script.content] if script else [])], args_in_scope)
        self.cached_or(state, key, lambda: run_step(self, state, command, network, _created_by(instr, command),
                                                    script))

    # ---- images of the steps ----------------------------------------------------------------

    def _parent(self, state: StageState) -> str:
        if state.image is not None:
            return state.image.id
        return "scratch:" + json.dumps(state.config, sort_keys=True)

    def cached_or(self, state: StageState, key: str, make: Any) -> None:
        if not self.opts.no_cache:
            hit = self.store.cached_build_step(key)
            if hit is not None:
                self.say(f"---> Using cache {hit.id.removeprefix('sha256:')}")
                self._now_at(state, hit)
                return
        image = make()
        self.store.record_build_step(key, image)
        self.say(f"--> {image.short_id}")
        self._now_at(state, image)

    def _now_at(self, state: StageState, image: ImageRecord) -> None:
        state.image = image
        state.config = self.store.config(image)

    def _derive(self, state: StageState, section: dict[str, Any], created_by: str,
                layer: tuple[Path, str] | None = None) -> ImageRecord:
        with self.store.adding():
            return derive(self.store, state.image, state.config, section, {"created_by": created_by},
                          _created(), layer)

    def derive_layer(self, state: StageState, created_by: str, layer: tuple[Path, str]) -> ImageRecord:
        return self._derive(state, dict(state.config.get("config") or {}), created_by, layer)

    def _derive_labels(self, image: ImageRecord) -> ImageRecord:
        config = self.store.config(image)
        section = dict(config.get("config") or {})
        section["Labels"] = {**(section.get("Labels") or {}), **dict(self.opts.labels)}
        state = StageState(image, config, {})
        with self.store.adding():
            return derive(self.store, state.image, config, section,
                          {"created_by": "LABEL " + " ".join(f"{k}={v}" for k, v in self.opts.labels)},
                          _created())


def _expand_at(text: str, env: dict[str, str], escape: str, line: int) -> str:
    try:
        return expand(text, env, escape)
    except DockerfileError as e:
        raise e.at(line) from e


def _clean(path: str) -> str:
    """Go's path.Clean of a path taken from /: normpath keeps a leading `//`, Clean does not."""
    return "/" + os.path.normpath("/" + path).lstrip("/")


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")[0].split()) + (" ..." if "\n" in text.strip() else "")


def _created_by(instr: Instruction, words: Sequence[str]) -> str:
    if instr.command == "RUN":
        return "RUN " + " ".join(words)
    return _one_line(instr.original)


def _healthcheck(instr: Instruction) -> dict[str, Any]:
    if instr.args and instr.args[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    args = list(instr.args)
    if args and args[0].upper() == "CMD":
        args = args[1:]
    test = ["CMD", *args] if instr.json else ["CMD-SHELL", " ".join(args)]
    check: dict[str, Any] = {"Test": test}
    for name, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        v = instr.flag(name)
        if v:
            check[key] = _duration_ns(v, instr.line)
    retries = instr.flag("retries")
    if retries:
        check["Retries"] = int(retries)
    return check


_DURATION_UNITS = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _duration_ns(text: str, line: int) -> int:
    """A Go duration (`30s`, `1m30s`, `1.5h`) in nanoseconds, as HEALTHCHECK's flags take it."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DockerfileError(f"bad duration {text!r} (e.g. 30s, 1m30s)", line)
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))
