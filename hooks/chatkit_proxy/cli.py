"""`chatkit-proxy`: make, update and check apps rendered from the ChatKit proxy template."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer

from chatkit_proxy import TEMPLATE_ROOT, steps
from chatkit_proxy.errors import CliError, StepFailedError, ToolMissingError

app = typer.Typer(
    help="Make, update and check Next.js apps rendered from the ChatKit proxy template.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


Command = TypeVar("Command", bound=Callable[..., None])


def reported(command: Command) -> Command:
    """Turn a CliError into one line on stderr and its exit code, never a traceback."""

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except CliError as error:
            typer.echo(f"chatkit-proxy: {error}", err=True)
            raise typer.Exit(error.exit_code) from None

    return run  # type: ignore[return-value]


class PackageManager(str, Enum):
    npm = "npm"
    pnpm = "pnpm"
    yarn = "yarn"
    bun = "bun"


Dest = Annotated[Path, typer.Argument(help="The app's directory.", show_default=False)]
Data = Annotated[
    Optional[list[str]],
    typer.Option("--data", "-d", metavar="KEY=VALUE", help="Answer a question without a prompt."),
]
DataFile = Annotated[
    Optional[Path],
    typer.Option(help="A YAML file of question: answer pairs.", exists=True, dir_okay=False),
]
Defaults = Annotated[bool, typer.Option("--defaults", help="Take the default of every question.")]
VcsRef = Annotated[
    Optional[str], typer.Option(help="The template release (git tag or commit) to use.")
]
Manager = Annotated[
    Optional[PackageManager],
    typer.Option(help="Install with this package manager instead of the detected one."),
]


@app.command()
@reported
def new(
    dest: Dest,
    data: Data = None,
    data_file: DataFile = None,
    defaults: Defaults = False,
    package_manager: Manager = None,
    git: Annotated[bool, typer.Option(help="Run git init and make the first commit.")] = True,
    install: Annotated[bool, typer.Option(help="Install the app's dependencies.")] = True,
    template: Annotated[str, typer.Option(help="The template to render.")] = str(TEMPLATE_ROOT),
    vcs_ref: VcsRef = None,
) -> None:
    """Render a new app into DEST, commit it and install its dependencies."""
    answers = steps.parse_data(data or [], data_file)
    # The tools are looked for first, so that a missing one leaves nothing on disk. The
    # template ships no lock file, so the manager found now is the one found after.
    manager = choose_manager(dest, package_manager, needed=install)
    if git:
        steps.require("git", "install git, or pass --no-git")
    existed = dest.is_dir()
    # Copier's own next steps would repeat ours, so it renders quietly.
    steps.render(dest, answers, defaults=defaults, template=template, vcs_ref=vcs_ref, quiet=True)
    typer.echo(f"Rendered the app into {dest}.")
    try:
        if install:
            typer.echo(f"Installing dependencies with {manager} …")
            steps.install(dest, manager)
        if git:
            # After the install, so the lock file is in the first commit and the tree
            # is clean for `update`.
            steps.git_init_and_commit(dest, "Create the app from the ChatKit proxy template")
    except CliError as error:
        # All or nothing: a half-made app would only make the next `new` refuse DEST.
        steps.discard(dest, existed)
        raise type(error)(f"{error}\nRemoved what was rendered into {dest}.") from None

    cookie = steps.recorded_answers(dest).get("cookie_name")
    typer.echo(f"\nDone. Next steps:\n\n  cd {dest}")
    if not install:
        typer.echo(f"  {manager} install")
    typer.echo(f"  {manager} run dev\n")
    typer.echo(
        "Then open http://localhost:3000 in a browser that has the "
        + (f"{cookie} cookie set (the user's token)." if cookie else "login cookie set.")
    )


def choose_manager(dest: Path, chosen: PackageManager | None, *, needed: bool) -> str:
    """The package manager to install with, or to name in the next steps."""
    if chosen is not None:
        if needed:
            steps.require(
                chosen.value,
                f"install {chosen.value}, choose another with --package-manager, "
                "or pass --no-install",
            )
        return chosen.value
    try:
        return steps.detect_package_manager(dest)
    except ToolMissingError:
        if needed:
            raise
        return "npm"  # only named in the next steps


@app.command()
@reported
def update(
    dest: Dest = Path("."),
    data: Data = None,
    data_file: DataFile = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Keep every recorded answer; ask only new questions.")
    ] = False,
    vcs_ref: VcsRef = None,
    conflict: Annotated[
        str, typer.Option(help="How to show conflicts: inline markers or .rej files.")
    ] = "inline",
) -> None:
    """Update the app in DEST to the template's newest release, keeping your edits."""
    answers = steps.parse_data(data or [], data_file)
    steps.update(dest, answers, defaults=defaults, vcs_ref=vcs_ref, conflict=conflict)
    typer.echo(f"Updated {dest}. Review with `git diff`, then commit.")


@app.command()
@reported
def verify(dest: Dest = Path("."), package_manager: Manager = None) -> None:
    """Type-check, lint, format-check, test and build the app in DEST; say what failed."""
    manager = package_manager.value if package_manager else steps.detect_package_manager(dest)
    results = steps.verify(dest, manager)
    for result in results:
        typer.echo(f"{'ok  ' if result.ok else 'FAIL'}  {manager} run {result.script}")
    failed = [result for result in results if not result.ok]
    for result in failed:
        tail = "\n".join(result.output.strip().splitlines()[-30:])
        typer.echo(f"\n--- {result.script} (exit {result.returncode}) ---\n{tail}", err=True)
    if failed:
        names = ", ".join(result.script for result in failed)
        raise StepFailedError(f"{len(failed)} of {len(results)} checks failed: {names}")


def main() -> None:
    """The console script."""
    app()
