"""The `chatkit-proxy` command line: invoke, exit code, output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatkit_proxy import steps
from chatkit_proxy.cli import app
from chatkit_proxy.errors import ToolMissingError

runner = CliRunner()


def git_log(repo: Path) -> list[str]:
    done = subprocess.run(
        ["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def git_files(repo: Path) -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_new_renders_commits_and_prints_next_steps(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = runner.invoke(app, ["new", str(dest), "--defaults", "--no-install"])

    assert result.exit_code == 0, result.output
    assert (dest / "app" / "api" / "chatkit" / "route.ts").is_file()
    assert git_log(dest) == ["Create the app from the ChatKit proxy template"]
    assert f"cd {dest}" in result.output
    assert "install" in result.output and "run dev" in result.output


def test_new_takes_answers_from_data_and_data_file(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text("cookie_name: __Host-session\ncustom_headers: []\n")
    dest = tmp_path / "my-app"

    result = runner.invoke(
        app,
        [
            "new",
            str(dest),
            "--defaults",
            "--no-git",
            "--no-install",
            "--data-file",
            str(answers),
            "--data",
            "project_name=Support Desk",
        ],
    )

    assert result.exit_code == 0, result.output
    config = (dest / "lib" / "chatkit" / "config.ts").read_text()
    assert 'cookieName = "__Host-session"' in config
    assert 'projectName = "Support Desk"' in config
    assert "readonly HeaderRule[] = [];" in config


def test_new_with_a_rejected_answer_prints_one_line_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = runner.invoke(
        app, ["new", str(dest), "--defaults", "--no-install", "--data", "upstream_url=ftp://x"]
    )

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("chatkit-proxy: Validation error for question 'upstream_url'")
    assert "Example" in lines[-1]
    assert "Traceback" not in result.output
    assert not dest.exists()


def test_new_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    result = runner.invoke(app, ["new", str(tmp_path), "--defaults", "--no-install"])

    assert result.exit_code == 3
    assert "not empty" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_new_rejects_data_without_equals_sign(tmp_path: Path) -> None:
    result = runner.invoke(app, ["new", str(tmp_path / "a"), "--defaults", "--data", "cookie"])

    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output


def test_update_refuses_a_directory_not_made_from_the_template(tmp_path: Path) -> None:
    result = runner.invoke(app, ["update", str(tmp_path)])

    assert result.exit_code == 3
    assert ".copier-answers.yml" in result.output


def test_verify_refuses_an_app_without_node_modules(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"
    runner.invoke(app, ["new", str(dest), "--defaults", "--no-git", "--no-install"])

    result = runner.invoke(app, ["verify", str(dest), "--package-manager", "npm"])

    assert result.exit_code == 3
    assert "npm install" in result.output


@pytest.mark.parametrize(
    ("lock", "manager"),
    [
        ("package-lock.json", "npm"),
        ("pnpm-lock.yaml", "pnpm"),
        ("yarn.lock", "yarn"),
        ("bun.lock", "bun"),
    ],
)
def test_package_manager_follows_the_lock_file(tmp_path: Path, lock: str, manager: str) -> None:
    (tmp_path / lock).write_text("")

    assert steps.detect_package_manager(tmp_path, env={}) == manager


def test_package_manager_follows_the_launching_tool(tmp_path: Path) -> None:
    env = {"npm_config_user_agent": "pnpm/9.1.0 npm/? node/v20.20.2 linux x64"}

    assert steps.detect_package_manager(tmp_path, env=env) == "pnpm"


def test_package_manager_falls_back_to_an_installed_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(steps.shutil, "which", lambda name: "/bin/x" if name == "yarn" else None)

    assert steps.detect_package_manager(tmp_path, env={}) == "yarn"


def test_missing_package_managers_name_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(steps.shutil, "which", lambda name: None)

    with pytest.raises(ToolMissingError, match="--no-install"):
        steps.detect_package_manager(tmp_path, env={})


def test_console_script_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("chatkit-proxy")

    done = subprocess.run(
        [str(script), "new", str(tmp_path / "a"), "--defaults", "--data", "cookie_name=a;b"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 2
    assert "chatkit-proxy: Validation error for question 'cookie_name'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_new_installs_and_verify_names_the_failing_check(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"
    created = runner.invoke(app, ["new", str(dest), "--defaults", "--package-manager", "npm"])
    assert created.exit_code == 0, created.output
    assert (dest / "node_modules" / "next").is_dir()

    passing = runner.invoke(app, ["verify", str(dest)])
    (dest / "lib" / "broken.ts").write_text('export const answer: number = "forty-two";\n')
    failing = runner.invoke(app, ["verify", str(dest)])

    assert passing.exit_code == 0, passing.output
    # The lock file is committed with the app: update needs a clean tree.
    assert "package-lock.json" in git_files(dest)
    assert passing.output.count("ok  ") == len(steps.VERIFY_SCRIPTS)
    assert failing.exit_code == 5
    assert "FAIL  npm run typecheck" in failing.output
    assert "ok    npm run lint" in failing.output
    assert "checks failed: typecheck" in failing.output


def test_new_rejects_an_answer_to_a_question_the_template_lacks(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = runner.invoke(
        app, ["new", str(dest), "--defaults", "--no-install", "--data", "cookie-name=session"]
    )

    assert result.exit_code == 2
    assert "did you mean cookie_name?" in result.output
    assert not dest.exists()


def test_new_names_the_question_when_a_yaml_answer_does_not_parse(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = runner.invoke(
        app,
        [
            "new",
            str(dest),
            "--defaults",
            "--no-install",
            "--data",
            "custom_headers=[{name: X-A, source: env, value: K}",
        ],
    )

    assert result.exit_code == 2
    assert "--data custom_headers: not valid YAML" in result.output
    assert "for example custom_headers=[{name: X-Page-URL, source: client}" in result.output
    assert not dest.exists()


def test_new_with_a_missing_package_manager_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "my-app"
    real_which = steps.shutil.which
    monkeypatch.setattr(
        steps.shutil, "which", lambda name: None if name == "bun" else real_which(name)
    )

    result = runner.invoke(app, ["new", str(dest), "--defaults", "--package-manager", "bun"])

    assert result.exit_code == 4
    assert "bun is not installed" in result.output
    assert "Rendered" not in result.output
    assert not dest.exists()


def test_new_removes_the_render_when_a_later_step_fails(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "my-app"
    dest.mkdir()  # an empty directory stays, emptied again

    def failing_install(where: Path, manager: str) -> None:
        raise steps.StepFailedError(f"`{manager} install` failed in {where} (exit 1):\nE404")

    monkeypatch.setattr(steps, "install", failing_install)

    result = runner.invoke(app, ["new", str(dest), "--defaults", "--package-manager", "npm"])

    assert result.exit_code == 5
    assert "E404" in result.output
    assert f"Removed what was rendered into {dest}." in result.output
    assert dest.is_dir() and list(dest.iterdir()) == []


def test_new_names_the_cookie_in_its_next_steps(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["new", str(tmp_path / "a"), "--defaults", "--no-git", "--no-install"]
        + ["--data", "cookie_name=__Host-session"],
    )

    assert result.exit_code == 0, result.output
    assert "has the __Host-session cookie set" in result.output


def test_data_file_errors_name_the_file_on_one_line(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yml"
    typo.write_text("cookie-name: session\n")
    broken = tmp_path / "broken.yml"
    broken.write_text("cookie_name: id_token\ncustom_headers: [{name: X-A, source: client\n")

    misnamed = runner.invoke(
        app, ["new", str(tmp_path / "a"), "--defaults", "--data-file", str(typo)]
    )
    unparsable = runner.invoke(
        app, ["new", str(tmp_path / "b"), "--defaults", "--data-file", str(broken)]
    )

    assert misnamed.exit_code == 2
    assert f"--data-file {typo} cookie-name: the template has no such question" in misnamed.output
    assert "did you mean cookie_name?" in misnamed.output
    assert unparsable.exit_code == 2
    message = unparsable.output.strip().splitlines()
    assert len(message) == 1, unparsable.output
    assert message[0].startswith(f"chatkit-proxy: --data-file {broken}: not valid YAML (")
    assert "at line 3, column 1" in message[0]
    assert "for example a line `cookie_name: id_token`" in message[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
