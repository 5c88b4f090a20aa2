"""The `crashcart` commands (click): help, usage errors, and every command but the fast path."""

from __future__ import annotations

import sys
from pathlib import Path

import click

# Both commands' default toolbox directory (crashcart/prefix.py's DEFAULT_TOOLBOX), in words.
DEFAULT_TOOLBOX_HELP = "$CRASHCART_TOOLBOX, else /var/lib/crashcart/toolbox"


# The options attach and debug share.
TOOLBOX_OPTION = click.option(
    "--toolbox",
    help="Toolbox to mount: a directory, or an image (OCI layout/archive, registry reference). "
    f"Default: {DEFAULT_TOOLBOX_HELP}, where `toolbox build` writes it.",
)
DOCKER_HOST_OPTION = click.option(
    "--docker-host",
    help="Docker Engine socket (default: $DOCKER_HOST, else unix:///var/run/docker.sock).",
)
PRIVILEGED_OPTION = click.option(
    "--privileged",
    is_flag=True,
    help="Lift the confinement: every capability, no seccomp filter, no no_new_privs.",
)
NAMESPACE_OPTION = click.option(
    "-n",
    "--namespace",
    help="Kubernetes namespace: TARGET is POD or POD/CONTAINER, found through the CRI socket.",
)
RUNTIME_ENDPOINT_OPTION = click.option(
    "--runtime-endpoint",
    help="The node's CRI socket (default: $CONTAINER_RUNTIME_ENDPOINT, else containerd's, "
    "else CRI-O's).",
)
ALLOW_OPTION = click.option(
    "--allow",
    metavar="NAME",
    multiple=True,
    help="Let one denied thing through the confinement and nothing else: bpf (the bpf() "
    "system call and CAP_BPF, for bpftool and BPF-based tools).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def cli(debug: bool) -> None:
    """Bring a toolbox into a running container's namespaces, and take it away again."""


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("target")
@click.argument("command", nargs=-1)
@TOOLBOX_OPTION
@click.option(
    "-m",
    "--mount-only",
    is_flag=True,
    help="Mount the toolbox in the target itself and leave it there (for the runtime's exec).",
)
@click.option("-u", "--unmount", is_flag=True, help="Remove a toolbox left by --mount-only.")
@click.option("--force", is_flag=True, help="Attach to a process in the host's namespaces.")
@DOCKER_HOST_OPTION
@click.option(
    "-t/-T",
    "--tty/--no-tty",
    default=None,
    help="Run the command on a pty (default: the shell yes, a COMMAND no); "
    "only when stdin is a terminal.",
)
@PRIVILEGED_OPTION
@click.option(
    "--target-path",
    is_flag=True,
    help="Put the target's own PATH after the toolbox's (default: the toolbox's only).",
)
@click.option(
    "--record",
    metavar="FILE",
    help="Write the terminal session to FILE as an asciicast v2 transcript (asciinema play).",
)
@NAMESPACE_OPTION
@RUNTIME_ENDPOINT_OPTION
@ALLOW_OPTION
def attach(
    target: str,
    command: tuple[str, ...],
    toolbox: str | None,
    mount_only: bool,
    unmount: bool,
    force: bool,
    docker_host: str | None,
    tty: bool | None,
    privileged: bool,
    target_path: bool,
    record: str | None,
    namespace: str | None,
    runtime_endpoint: str | None,
    allow: tuple[str, ...],
) -> None:
    """Run COMMAND (default: a shell) in TARGET: a pid, a runc/crun/Docker/podman container
    name or id, containerd NAMESPACE/ID, or a Kubernetes POD[/CONTAINER]. The session is
    confined and leaves nothing."""
    from crashcart.attach import AttachRequest, run_request

    request = AttachRequest(
        target=target,
        command=command,
        toolbox=toolbox,
        mount_only=mount_only,
        unmount=unmount,
        force=force,
        docker_host=docker_host,
        tty=tty,
        privileged=privileged,
        target_path=target_path,
        record=record,
        namespace=namespace,
        runtime_endpoint=runtime_endpoint,
        allow=allow,
    )
    sys.exit(run_request(request))


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("target")
@click.argument("command", nargs=-1)
@click.option("--core", metavar="FILE", help="A core file of the crashed program: gdb opens it.")
@click.option(
    "--program",
    metavar="PATH",
    help="The crashed program in the container (default: its configured command).",
)
@click.option(
    "--ex",
    metavar="GDBCMD",
    multiple=True,
    help="Run gdb on the core in batch mode with this command (repeatable), e.g. --ex bt.",
)
@TOOLBOX_OPTION
@DOCKER_HOST_OPTION
@NAMESPACE_OPTION
@RUNTIME_ENDPOINT_OPTION
@PRIVILEGED_OPTION
@ALLOW_OPTION
def debug(
    target: str,
    command: tuple[str, ...],
    core: str | None,
    program: str | None,
    ex: tuple[str, ...],
    toolbox: str | None,
    docker_host: str | None,
    namespace: str | None,
    runtime_endpoint: str | None,
    privileged: bool,
    allow: tuple[str, ...],
) -> None:
    """Post-mortem: run COMMAND (default: a shell; gdb on --core) on the files of TARGET, a
    container that crashed or keeps crashing (runc/crun/Docker/podman name or id, or a
    Kubernetes POD[/CONTAINER]), or a bundle, root directory or image by path. Its files
    are mounted read-only with its mounts and the toolbox, in namespaces of the session's
    own, confined as attach's sessions are."""
    from crashcart.debug import DebugRequest, run_debug

    request = DebugRequest(
        target=target,
        command=command,
        core=core,
        program=program,
        ex=ex,
        toolbox=toolbox,
        docker_host=docker_host,
        privileged=privileged,
        allow=allow,
        namespace=namespace,
        runtime_endpoint=runtime_endpoint,
    )
    sys.exit(run_debug(request))


@cli.group()
def toolbox() -> None:
    """Build the toolbox that attach mounts."""


@toolbox.command()
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    help="smith recipe of the toolbox (default: recipes/crashcart-toolbox/smith.yaml).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help=f"Toolbox directory (default: {DEFAULT_TOOLBOX_HELP}).",
)
@click.option("--image", help="Also write the toolbox as an image (OCI layout or archive).")
@click.option("--cache-dir", help="smith's package cache (default: smith's own).")
@click.option(
    "--extra-repo",
    help="Add the toolbox extension (tcpdump, ltrace, bash, openssl, readelf, objdump, drill, "
    "jq) from this repository (package crashcart-toolbox-extra).",
)
def build(
    recipe: Path | None,
    output: Path | None,
    image: str | None,
    cache_dir: str | None,
    extra_repo: str | None,
) -> None:
    """Build the toolbox with smith from a recipe, relocated to run from /dev/crashcart.

    The packages come from the recipe's repositories: the default recipe's is the example
    universe in out/universe, which scripts/demo.sh builds."""
    from crashcart.toolbox import DEFAULT_RECIPE, DEFAULT_TOOLBOX, build_toolbox

    dest = (output or DEFAULT_TOOLBOX).absolute()
    size = build_toolbox(recipe or DEFAULT_RECIPE, dest, cache_dir=cache_dir, extra_repo=extra_repo)
    click.echo(f"crashcart: toolbox built at {dest} ({size / 1e6:.1f} MB)")
    if image:
        from crashcart.image import write_toolbox_image

        digest = write_toolbox_image(str(dest), image)
        click.echo(f"crashcart: toolbox image written to {image} ({digest})")
