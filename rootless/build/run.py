"""RUN: the command runs in a container on the step's image, through the normal runtime, and the
container's changes become the step's layer. The container is removed whatever happens."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rootless.build import heredoc
from rootless.build.dockerfile import Heredoc
from rootless.errors import RlError, StartFailed
from rootless.runtime.create import RunOptions, create_container
from rootless.runtime.execute import Container
from rootless.runtime.launch import remove_container, run_foreground
from rootless.runtime.transfer import tar_changes
from rootless.store.records import ImageRecord

if TYPE_CHECKING:
    from rootless.build.engine import Builder, StageState


def run_step(builder: Builder, state: StageState, command: list[str], network: str, created_by: str,
             script: Heredoc | None = None) -> ImageRecord:
    """`script`: a heredoc the command runs as a file, mounted read-only at heredoc.SCRIPT_DIR."""
    from rootless.build.engine import source_date_epoch
    from rootless.errors import BuildFailed

    assert state.image is not None
    mounts: tuple[str, ...] = ()
    if script is not None:
        scripts = builder.store.scratch.new_path("heredoc")
        heredoc.write_script(script, scripts)
        source = str(scripts).replace('"', '""')  # a CSV field: the store's path may hold commas
        mounts = (f'type=bind,"source={source}",target={heredoc.SCRIPT_DIR},readonly',)
    section = state.config.get("config") or {}
    if network not in ("default", "host", "none"):
        raise RlError(f"RUN --network={network} is not supported: use host, none or default")
    if network == "default":
        network = builder.opts.network
    opts = RunOptions(
        image=state.image.id, command=tuple(command), entrypoint="", env=tuple(builder.run_env(state)),
        workdir=section.get("WorkingDir") or "/", user=section.get("User") or "",
        network=network, storage_driver=builder.opts.storage_driver, volatile=True, build_step=True,
        mounts=mounts,
    )
    store = builder.store
    rec, spec, cdir = create_container(store, opts)
    try:
        try:
            code = run_foreground(store, rec, spec, cdir, echo=not builder.opts.quiet)
        except StartFailed as e:
            raise BuildFailed(f"RUN {' '.join(command)}: {e} (exit code {e.exit_code})") from e
        if code != 0:
            raise BuildFailed(f'process "{" ".join(command)}" did not complete successfully: exit code: {code}')
        with store.adding():
            tar = store.scratch.new_path("layer")
            diff_id = tar_changes(store, Container(rec, spec, cdir, 0), tar, source_date_epoch())
            return builder.derive_layer(state, created_by, (tar, diff_id))
    finally:
        remove_container(store, rec, anonymous_volumes=True)
