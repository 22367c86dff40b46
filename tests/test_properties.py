"""Property: any answer set is either rejected clearly or renders code that passes its checks.

Hypothesis draws answer sets from alphabets full of what breaks generated code (quotes,
backslashes, backticks, `${…}`, `{{ … }}`, `</script>`, control and non-ASCII
characters). The first test renders each one; the second runs tsc, ESLint, prettier and
a vitest equality check over every accepted render at once, since each tool takes
seconds to start and the renders differ only where answers land.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from copier import run_copy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import harness
from tests.answer_sets import expected_config

pytestmark = pytest.mark.slow

TOKEN_CHARS = "!#$%&'*+-.^_`|~" + "abcXYZ019"
# Printable, and full of what breaks generated code; accepted by the text questions.
PRINTABLE = " \"'\\`${}</>;=,?#@[]:*!%&()+|~^aZ9é日💥"
PIECES = ["</script>", "${x}", "{{ y }}", "{% z %}", '\\"', "*/", "\\u0041", "`"]
# Control characters: only the hostile strategies draw them.
CONTROL = "\t\n\r\x00\x7f"
PATH_CHARS = "abc019-._~%!$&'()*+,;=:@"


def text(alphabet: str, min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    """Text from `alphabet`, with whole tricky pieces mixed in where they fit."""
    pieces = [piece for piece in PIECES if set(piece) <= set(alphabet)]
    part = st.text(alphabet=st.sampled_from(list(alphabet)), max_size=max_size)
    if pieces:
        part = st.one_of(part, st.sampled_from(pieces))
    return st.lists(part, max_size=3).map("".join).filter(lambda t: len(t) >= min_size)


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]):
    """Valid three times in four, so that renders get tested as well as rejections."""
    return st.one_of(valid, valid, valid, invalid)


hostile = text(PRINTABLE + CONTROL + TOKEN_CHARS)
token = text(TOKEN_CHARS, min_size=1, max_size=16)
path = st.lists(text(PATH_CHARS, min_size=1, max_size=8), min_size=1, max_size=3).map(
    lambda segments: "/" + "/".join(segments)
)


@st.composite
def header(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(mostly(st.sampled_from(["client", "claim", "env", "static"]), st.just("x")))
    entry: dict[str, Any] = {
        "name": draw(mostly(token.map(lambda t: "X-" + t), hostile)),
        "source": source,
    }
    values = {
        "client": st.nothing(),
        "claim": text(PRINTABLE, min_size=1),
        "env": st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,20}\Z"),
        "static": text(PRINTABLE.replace("日", "").replace("💥", ""), min_size=1).map(
            lambda t: t.strip() or "v"
        ),
        "x": hostile,
    }[source]
    if source != "client" and draw(mostly(st.just(True), st.just(False))):
        entry["value"] = draw(mostly(values, hostile))
    return entry


answer_sets = st.fixed_dictionaries(
    {},
    optional={
        "project_name": mostly(text(PRINTABLE, min_size=1), hostile),
        "cookie_name": mostly(token, hostile),
        "upstream_url": mostly(
            st.builds(
                lambda scheme, host, tail: f"{scheme}://{host}{tail}",
                st.sampled_from(["http", "https"]),
                st.sampled_from(["localhost:8000", "[::1]:9", "api.example.com", "b.internal"]),
                st.one_of(st.just(""), st.just("/"), path),
            ),
            hostile,
        ),
        "upstream_path": mostly(path, hostile),
        "custom_headers": st.lists(header(), max_size=4),
        "chatkit_script_url": mostly(
            path.map(lambda tail: "https://cdn.example.com" + tail), hostile
        ),
    },
)

ACCEPTED: list[tuple[Path, dict[str, Any]]] = []


@pytest.fixture(scope="module")
def property_renders(renders_dir: Path) -> Path:
    path = renders_dir / "properties"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


@settings(
    max_examples=int(os.environ.get("CHATKIT_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
@given(answers=answer_sets)
def test_answers_are_rejected_clearly_or_render(
    property_renders: Path, answers: dict[str, Any]
) -> None:
    dest = property_renders / f"example-{len(ACCEPTED)}"
    shutil.rmtree(dest, ignore_errors=True)
    try:
        run_copy(
            str(harness.REPO_ROOT),
            str(dest),
            data=answers,
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
        )
    except ValueError as error:
        message = str(error)
        assert message.startswith("Validation error for question '"), message
        assert "Example" in message, message
        assert not dest.exists()
        return
    ACCEPTED.append((dest, answers))


def test_accepted_renders_pass_tsc_eslint_prettier_and_hold_their_answers(
    property_renders: Path, node_workspace: Path
) -> None:
    if not ACCEPTED:
        pytest.fail("no answer set was accepted; the strategies are too hostile to test renders")
    examples = [dest.name for dest, _ in ACCEPTED]
    shutil.copy(ACCEPTED[0][0] / "eslint.config.mjs", property_renders)
    (property_renders / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "target": "ES2022",
                    "module": "esnext",
                    "moduleResolution": "bundler",
                    "skipLibCheck": True,
                    "lib": ["dom", "esnext"],
                },
                "include": [f"{name}/lib/chatkit/config.ts" for name in examples]
                + ["answers.test.ts"],
            }
        )
    )
    checks = "\n".join(
        f'import * as config{i} from "./{name}/lib/chatkit/config";'
        for i, name in enumerate(examples)
    )
    checks += '\nimport { expect, it } from "vitest";\n\n'
    for i, (dest, answers) in enumerate(ACCEPTED):
        expected = json.dumps(expected_config(answers))
        checks += f'it("{dest.name} holds its answers", () => {{\n'
        checks += f"  expect({{ ...config{i} }}).toEqual({expected});\n}});\n"
    (property_renders / "answers.test.ts").write_text(checks)

    files = []
    for name in examples:
        files += [f"{name}/lib/chatkit/config.ts", f"{name}/README.md", f"{name}/package.json"]
    tool = lambda name: harness.bin_path(node_workspace, name)  # noqa: E731
    commands = {
        "tsc": [tool("tsc"), "--noEmit", "-p", "."],
        "eslint": [
            tool("eslint"),
            "--max-warnings=0",
            *[f"{n}/lib/chatkit/config.ts" for n in examples],
        ],
        "prettier": [tool("prettier"), "--check", *files],
        "vitest": [tool("vitest"), "run", "--root", ".", "answers.test.ts"],
    }
    failures = {}
    for name, command in commands.items():
        result = harness.run(command, property_renders)
        if result.returncode != 0:
            failures[name] = harness.describe(result)[-4000:]

    assert failures == {}, (
        "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
        + "\n\n"
        + "\n".join(f"{dest.name}: {answers!r}" for dest, answers in ACCEPTED)
    )
