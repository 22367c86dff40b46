"""The real `copier` command line, as a user runs it: no --trust, no Python API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import REPO_ROOT

COPIER = str(Path(sys.executable).with_name("copier"))


def copier_copy(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COPIER, "copy", "--defaults", "--vcs-ref", "HEAD", *args, str(REPO_ROOT), str(dest)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_copier_copy_without_trust_renders_the_app(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = copier_copy(dest)

    assert result.returncode == 0, result.stderr
    assert "unsafe" not in result.stderr.lower()
    assert (dest / "app" / "api" / "chatkit" / "route.ts").is_file()
    assert (dest / ".copier-answers.yml").is_file()
    assert "npm run dev" in result.stderr + result.stdout


def test_invalid_answer_names_the_question_and_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "my-app"

    result = copier_copy(dest, "--data", "cookie_name=session id")

    assert result.returncode != 0
    assert "Validation error for question 'cookie_name'" in result.stderr
    assert "Examples: id_token" in result.stderr
    assert not dest.exists()


def test_next_steps_name_the_backend_url_without_a_double_slash(tmp_path: Path) -> None:
    result = copier_copy(tmp_path / "my-app", "--data", "upstream_url=http://127.0.0.1:8765/v2/")

    assert result.returncode == 0, result.stderr
    assert "its value to http://127.0.0.1:8765/v2/chatkit as" in result.stderr + result.stdout
