"""Rendering alone: which files appear and what the answers turn into (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.answer_sets import ANSWER_SETS

PINNED = {
    "next": "16.4.6",
    "react": "19.3.1",
    "react-dom": "19.3.1",
    "@openai/chatkit-react": "1.6.1",
    "typescript": "5.9.3",
    "eslint": "9.39.5",
    "eslint-config-next": "16.4.6",
    "vitest": "4.1.12",
}

EXPECTED_FILES = [
    ".copier-answers.yml",
    ".env.example",
    ".gitignore",
    "README.md",
    "app/api/chatkit/route.ts",
    "app/layout.tsx",
    "app/page.tsx",
    "components/chat-panel.tsx",
    "eslint.config.mjs",
    "lib/chatkit/config.ts",
    "lib/chatkit/fetch.ts",
    "lib/chatkit/proxy.ts",
    "next.config.ts",
    "package.json",
    "tsconfig.json",
]


@pytest.fixture(params=sorted(ANSWER_SETS))
def rendered(request: pytest.FixtureRequest, copie) -> tuple[str, Path]:
    result = copie.copy(extra_answers=ANSWER_SETS[request.param])
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    return request.param, result.project_dir


def test_render_writes_a_complete_project(rendered: tuple[str, Path]) -> None:
    _, project = rendered

    missing = [name for name in EXPECTED_FILES if not (project / name).is_file()]
    leftovers = [str(p) for p in project.rglob("*.jinja")]

    assert missing == []
    assert leftovers == []


def test_package_json_pins_the_supported_versions(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    manifest = json.loads((project / "package.json").read_text())
    versions = manifest["dependencies"] | manifest["devDependencies"]

    assert {name: versions[name] for name in PINNED} == PINNED
    assert set(manifest["scripts"]) >= {"dev", "build", "start", "lint", "typecheck", "test"}


def test_answers_file_records_every_answer_for_updates(rendered: tuple[str, Path]) -> None:
    name, project = rendered
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())

    for question, value in ANSWER_SETS[name].items():
        assert answers[question] == value
    assert "_commit" in answers and "_src_path" in answers


def test_package_name_derives_from_project_name(copie) -> None:
    result = copie.copy(extra_answers={"project_name": "Ünïcode Support Desk!"})

    manifest = json.loads((result.project_dir / "package.json").read_text())
    assert manifest["name"] == "n-code-support-desk"


def test_env_example_lists_env_sourced_headers(copie) -> None:
    result = copie.copy(extra_answers=ANSWER_SETS["every-source"])

    env_example = (result.project_dir / ".env.example").read_text()
    assert "\nCHATKIT_API_KEY=\n" in env_example
    assert "CHATKIT_UPSTREAM_URL" in env_example
    assert "NEXT_PUBLIC_CHATKIT_DOMAIN_KEY=" in env_example


def test_layout_and_route_hold_no_answers(copie) -> None:
    # Answers live in lib/chatkit/config.ts only, so the logic files are the same in
    # every render and lint, type-check and test alike.
    first = copie.copy(extra_answers={})
    second = copie.copy(extra_answers=ANSWER_SETS["odd-values"])

    for name in ["app/layout.tsx", "app/api/chatkit/route.ts", "lib/chatkit/proxy.ts"]:
        assert (first.project_dir / name).read_text() == (second.project_dir / name).read_text()
