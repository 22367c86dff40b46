"""Every shell block in the README and docs/ is run: here, by .ci/run, or by a named test.

A block says which with the HTML comment on the line before it:
- `<!-- docs: run -->`: run by this file. A file's run blocks form one bash script,
  run top to bottom in a scratch directory with `TEMPLATE` set to this repository,
  so `cd` in one block holds for the next, as it would for a reader.
- `<!-- docs: run by .ci/run -->`: each command line must appear in .ci/run.
- `<!-- docs: not run…(tests/test_x.py …) -->`: the named test file runs it; it must exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, node_env

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- docs: (?P<marker>.*?) -->\n)?```(?:bash|sh)\n(?P<code>.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str | None, str]]:
    return [(m["marker"], m["code"]) for m in BLOCK.finditer(path.read_text())]


def command_lines(code: str) -> list[str]:
    lines = [line.split(" #")[0].strip() for line in code.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_shell_block_says_how_it_is_run(path: Path) -> None:
    for marker, code in blocks(path):
        assert marker is not None, f"{path.name}: a shell block has no docs marker:\n{code}"
        if marker == "run by .ci/run":
            ci = (REPO_ROOT / ".ci" / "run").read_text()
            for line in command_lines(code):
                assert line in ci, f"{path.name}: `{line}` is not in .ci/run"
        elif marker.startswith("not run"):
            named = re.search(r"tests/\S+\.py", marker)
            assert named, f"{path.name}: '{marker}' names no test file"
            assert (REPO_ROOT / named.group()).is_file(), f"{named.group()} does not exist"
        else:
            assert marker == "run", f"{path.name}: unknown docs marker '{marker}'"


RUNNABLE = [path for path in DOCS if any(marker == "run" for marker, _ in blocks(path))]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_doc_commands_run(path: Path, tmp_path: Path) -> None:
    script = "\n".join(code for marker, code in blocks(path) if marker == "run")
    venv_bin = str(Path(sys.executable).parent)
    env = node_env(TEMPLATE=str(REPO_ROOT))
    env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert done.returncode == 0, (
        f"{path.name}:\n{script}\n--- output ---\n{done.stdout}\n{done.stderr}"
    )
