"""Every answer set renders a project whose own checks pass: tsc, ESLint, prettier, vitest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import harness
from tests.answer_sets import ANSWER_SETS, expected_config

pytestmark = pytest.mark.slow

# Written into each render after lint and format checks, so that vitest proves the
# rendered config.ts holds exactly the answers, however they had to be escaped.
ANSWERS_CHECK = """\
import {{ expect, it }} from "vitest";

import * as config from "./config";

it("holds exactly the rendered answers", () => {{
  expect({{ ...config }}).toEqual({expected});
}});
"""


@pytest.fixture(scope="module", params=sorted(ANSWER_SETS))
def checked_render(request: pytest.FixtureRequest, renders_dir: Path) -> tuple[str, Path]:
    name = request.param
    return name, harness.render(renders_dir / f"checks-{name}", ANSWER_SETS[name])


@pytest.mark.parametrize(
    "tool, args",
    [
        ("tsc", ["--noEmit"]),
        ("eslint", [".", "--max-warnings=0"]),
        ("prettier", ["--check", "."]),
    ],
)
def test_rendered_project_passes_static_checks(
    checked_render: tuple[str, Path], node_workspace: Path, tool: str, args: list[str]
) -> None:
    _, project = checked_render

    result = harness.run([harness.bin_path(node_workspace, tool), *args], project)

    assert result.returncode == 0, harness.describe(result)


def test_rendered_project_unit_tests_pass_and_config_holds_the_answers(
    checked_render: tuple[str, Path], node_workspace: Path
) -> None:
    name, project = checked_render
    check = project / "lib" / "chatkit" / "answers.check.test.ts"
    expected = json.dumps(expected_config(ANSWER_SETS[name]), indent=2)
    check.write_text(ANSWERS_CHECK.format(expected=expected))

    result = harness.run([harness.bin_path(node_workspace, "vitest"), "run"], project)

    assert result.returncode == 0, harness.describe(result)
    assert "answers.check.test.ts" in result.stdout
