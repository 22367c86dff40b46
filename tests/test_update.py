"""`copier update` through `chatkit-proxy update`: a new release arrives, team edits stay.

Template releases are git tags. The test makes a template repository of its own from
this working tree with two tagged releases, v1.0.0 (the previous one: its app README
lacks the "Check it" section) and v1.1.0 (the working tree as it is).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from chatkit_proxy.cli import app
from tests.harness import REPO_ROOT

runner = CliRunner()
IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@localhost"]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


def copy_working_tree(dest: Path) -> None:
    files = git(REPO_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, files.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def make_template_repo(root: Path) -> Path:
    repo = root / "template-repo"
    copy_working_tree(repo)
    readme = repo / "template" / "README.md.jinja"
    current = readme.read_text()
    assert "## Check it" in current

    git(repo, "init", "-q")
    readme.write_text(current.split("## Check it")[0].rstrip() + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "previous release")
    git(repo, "tag", "v1.0.0")
    readme.write_text(current)
    git(repo, "commit", "-q", "-am", "new release: the app README says how to check it")
    git(repo, "tag", "v1.1.0")
    return repo


def test_update_brings_the_new_release_and_keeps_team_edits(tmp_path: Path) -> None:
    repo = make_template_repo(tmp_path)
    dest = tmp_path / "team-app"
    created = runner.invoke(
        app,
        [
            "new",
            str(dest),
            "--defaults",
            "--no-install",
            "--template",
            str(repo),
            "--vcs-ref",
            "v1.0.0",
        ],
    )
    assert created.exit_code == 0, created.output
    assert "## Check it" not in (dest / "README.md").read_text()

    # The team edits generated files and commits, as teams do.
    page = dest / "app" / "page.tsx"
    page.write_text(page.read_text().replace("Sign in first", "Please sign in"))
    css = dest / "app" / "globals.css"
    css.write_text(css.read_text() + "\n.brand {\n  color: #0a7;\n}\n")
    git(dest, "commit", "-q", "-am", "Our wording and brand colour")

    updated = runner.invoke(app, ["update", str(dest), "--defaults"])

    assert updated.exit_code == 0, updated.output
    assert "## Check it" in (dest / "README.md").read_text()
    assert "Please sign in" in page.read_text()
    assert ".brand {" in css.read_text()
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v1.1.0"
    leftovers = [p for p in dest.rglob("*") if p.suffix == ".rej" and ".git" not in p.parts]
    assert leftovers == []
    conflicted = [
        p
        for p in dest.rglob("*")
        if p.is_file() and ".git" not in p.parts and "<<<<<<<" in p.read_text(errors="ignore")
    ]
    assert conflicted == []


def test_update_refuses_uncommitted_changes(tmp_path: Path) -> None:
    repo = make_template_repo(tmp_path)
    dest = tmp_path / "team-app"
    runner.invoke(app, ["new", str(dest), "--defaults", "--no-install", "--template", str(repo)])
    (dest / "app" / "page.tsx").write_text("// half-done edit\n")

    result = runner.invoke(app, ["update", str(dest), "--defaults"])

    assert result.exit_code == 3
    assert "uncommitted changes" in result.output
    assert (dest / "app" / "page.tsx").read_text() == "// half-done edit\n"


def test_update_rejects_an_answer_to_a_question_the_template_lacks(tmp_path: Path) -> None:
    repo = make_template_repo(tmp_path)
    dest = tmp_path / "team-app"
    runner.invoke(app, ["new", str(dest), "--defaults", "--no-install", "--template", str(repo)])

    result = runner.invoke(app, ["update", str(dest), "--defaults", "--data", "cookiename=x"])

    assert result.exit_code == 2
    assert "did you mean cookie_name?" in result.output
