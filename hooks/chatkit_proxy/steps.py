"""What `new`, `update` and `verify` do, as plain functions the CLI and the tests call."""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from copier import run_copy, run_update
from copier.errors import CopierError

from chatkit_proxy import TEMPLATE_ROOT
from chatkit_proxy.errors import (
    AnswerError,
    DestinationError,
    StepFailedError,
    ToolMissingError,
)

PACKAGE_MANAGERS = ("npm", "pnpm", "yarn", "bun")
ANSWERS_FILE = ".copier-answers.yml"

# What `verify` runs, in order, as package.json scripts of the rendered app.
VERIFY_SCRIPTS = ("typecheck", "lint", "format:check", "test", "build")


@dataclass
class Answers:
    """Answers given on the command line, and where each came from, as errors name it."""

    values: dict[str, Any]
    sources: dict[str, str]  # question -> "--data" or "--data-file <path>"


def parse_data(pairs: Sequence[str], data_file: Path | None) -> Answers:
    """Answers from `--data-file` (YAML), then `--data KEY=VALUE` pairs on top.

    Values from `--data` stay text, as with Copier's own flag: Copier reads them by
    each question's type, so `custom_headers=[{name: X-A, source: client}]` is a list.
    """
    answers = Answers({}, {})
    if data_file is not None:
        label = f"--data-file {data_file}"
        example = "for example a line `cookie_name: id_token`"
        try:
            loaded = yaml.safe_load(data_file.read_text())
        except OSError as error:
            raise AnswerError(f"{label}: cannot read it ({error.strerror})") from None
        except yaml.YAMLError as error:
            raise AnswerError(
                f"{label}: not valid YAML ({describe_yaml_error(error)}); {example}"
            ) from None
        if not isinstance(loaded, dict):
            raise AnswerError(f"{label}: expected a mapping of question: answer, {example}")
        for key, value in loaded.items():
            answers.values[str(key)] = value
            answers.sources[str(key)] = label
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AnswerError(f"--data {pair!r}: expected KEY=VALUE, such as cookie_name=id_token")
        answers.values[key.strip()] = value
        answers.sources[key.strip()] = "--data"
    return answers


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """PyYAML's complaint on one line, with where it is: its own text spans several."""
    problem = getattr(error, "problem", None)
    if not problem:
        return one_line(error)
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def check_question_names(answers: Answers, template: str | Path) -> None:
    """Refuse answers to questions the template does not ask: a typo would be ignored.

    A `--data` answer to a YAML question is parsed here too, so that a typo in it is
    reported with the question's name and a valid example rather than as PyYAML's
    error on an unnamed string.
    """
    config = Path(template) / "copier.yml"
    if not config.is_file():
        return  # a remote template: Copier reads its questions itself
    spec = yaml.safe_load(config.read_text())
    questions = [name for name in spec if not name.startswith("_")]
    for name, value in answers.values.items():
        if name not in questions:
            close = difflib.get_close_matches(name, questions, n=1)
            hint = f"did you mean {close[0]}?" if close else f"questions: {', '.join(questions)}"
            raise AnswerError(
                f"{answers.sources[name]} {name}: the template has no such question; {hint}"
            )
        question = spec[name] if isinstance(spec[name], dict) else {}
        if question.get("type") == "yaml" and isinstance(value, str):
            try:
                yaml.safe_load(value)
            except yaml.YAMLError as error:
                example = yaml.safe_dump(
                    question.get("default"), default_flow_style=True, width=10**6
                ).strip()
                raise AnswerError(
                    f"{answers.sources[name]} {name}: not valid YAML "
                    f"({describe_yaml_error(error)}); for example {name}={example}"
                ) from None


def render(
    dest: Path,
    answers: Answers,
    *,
    defaults: bool,
    template: str | Path = TEMPLATE_ROOT,
    vcs_ref: str | None = None,
    quiet: bool = False,
) -> None:
    """Render the template into `dest`, which must not exist or be empty."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DestinationError(f"{dest} already exists and is not empty; choose a new directory")
    check_question_names(answers, template)
    with copier_errors():
        run_copy(
            str(template),
            str(dest),
            data=dict(answers.values),
            defaults=defaults,
            unsafe=False,
            vcs_ref=vcs_ref,
            quiet=quiet,
        )


def update(
    dest: Path,
    answers: Answers,
    *,
    defaults: bool,
    vcs_ref: str | None = None,
    conflict: str = "inline",
    quiet: bool = False,
) -> None:
    """Bring a rendered app up to a newer template release, keeping the team's edits."""
    if not (dest / ANSWERS_FILE).is_file():
        raise DestinationError(
            f"{dest} has no {ANSWERS_FILE}: update works on an app made from this template"
        )
    if not (dest / ".git").exists():
        raise DestinationError(f"{dest} is not a git repository; `git init` and commit it first")
    if git_output(dest, "status", "--porcelain"):
        raise DestinationError(f"{dest} has uncommitted changes; commit or stash them first")
    check_question_names(answers, dest / str(recorded_answers(dest).get("_src_path", "")))
    with copier_errors():
        run_update(
            str(dest),
            data=dict(answers.values),
            defaults=defaults,
            overwrite=True,
            unsafe=False,
            vcs_ref=vcs_ref,
            conflict=conflict,  # type: ignore[arg-type]
            skip_answered=defaults,
            quiet=quiet,
        )


@contextlib.contextmanager
def copier_errors() -> Iterator[None]:
    """Copier reports a rejected answer as ValueError, everything else as CopierError."""
    try:
        yield
    except ValueError as error:
        raise AnswerError(one_line(error)) from None
    except CopierError as error:
        raise DestinationError(one_line(error)) from None


def git_init_and_commit(dest: Path, message: str) -> None:
    """Make `dest` a git repository whose first commit is the rendered app."""
    require("git", "install git, or pass --no-git")
    run_step(dest, ["git", "init", "-q"])
    run_step(dest, ["git", "add", "-A"])
    identity: list[str] = []
    if not git_output(dest, "config", "user.email"):
        # A fresh machine has no identity; the commit still needs one.
        identity = ["-c", "user.name=chatkit-proxy", "-c", "user.email=chatkit-proxy@localhost"]
    run_step(dest, ["git", *identity, "commit", "-q", "-m", message])


def detect_package_manager(dest: Path, env: Mapping[str, str] | None = None) -> str:
    """The package manager to install with, in this order:

    1. the one whose lock file is in `dest`;
    2. the one that launched us (npm_config_user_agent, as `npx` or `pnpm dlx` set it);
    3. the first of npm, pnpm, yarn and bun that is installed.
    """
    env = os.environ if env is None else env
    locks = {
        "package-lock.json": "npm",
        "pnpm-lock.yaml": "pnpm",
        "yarn.lock": "yarn",
        "bun.lock": "bun",
        "bun.lockb": "bun",
    }
    for lock, manager in locks.items():
        if (dest / lock).is_file():
            return manager
    agent = env.get("npm_config_user_agent", "").split("/", 1)[0]
    if agent in PACKAGE_MANAGERS:
        return agent
    for manager in PACKAGE_MANAGERS:
        if shutil.which(manager):
            return manager
    raise ToolMissingError(
        "none of npm, pnpm, yarn or bun is installed; install Node.js 20 (it brings npm), "
        "or pass --no-install"
    )


def discard(dest: Path, existed: bool) -> None:
    """Undo a render: remove `dest`, or only what is in it if it was an empty directory."""
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def recorded_answers(dest: Path) -> dict[str, Any]:
    """The answers a rendered app records in its answers file; empty if it has none."""
    with contextlib.suppress(OSError, yaml.YAMLError):
        recorded = yaml.safe_load((dest / ANSWERS_FILE).read_text())
        if isinstance(recorded, dict):
            return recorded
    return {}


def install(dest: Path, manager: str) -> None:
    require(manager, f"install {manager}, choose another with --package-manager, or --no-install")
    run_step(dest, [manager, "install"])


@dataclass
class StepResult:
    script: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def verify(dest: Path, manager: str, scripts: Sequence[str] = VERIFY_SCRIPTS) -> list[StepResult]:
    """Run the app's own checks and build, every one even after a failure."""
    if not (dest / "package.json").is_file():
        raise DestinationError(f"{dest} has no package.json; pass the app's directory")
    if not (dest / "node_modules").is_dir():
        raise DestinationError(f"{dest} has no node_modules; run `{manager} install` there first")
    require(manager, f"install {manager}, or choose another with --package-manager")
    results = []
    for script in scripts:
        done = subprocess.run(
            [manager, "run", script],
            cwd=dest,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"},
        )
        results.append(StepResult(script, done.returncode, done.stdout + done.stderr))
    return results


def require(program: str, advice: str) -> None:
    if shutil.which(program) is None:
        raise ToolMissingError(f"{program} is not installed; {advice}")


def run_step(cwd: Path, cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise StepFailedError(
            f"`{' '.join(cmd)}` failed in {cwd} (exit {done.returncode}):\n{tail}"
        )


def git_output(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
