"""The pytest plugin works for a user exactly as the README shows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _readme_example() -> tuple[str, str]:
    """The README's conftest.py and test module, as written there."""
    text = README.read_text()
    block = text[text.index("# conftest.py\n") : text.index("```", text.index("# conftest.py\n"))]
    conftest, _, tests = block.partition("# test_my_script.py\n")
    return conftest, tests


def test_readme_example_passes_in_strict_mode(tmp_path: Path) -> None:
    """The README's example passes in a fresh project (strict mode), warning-free."""
    conftest, tests = _readme_example()
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_my_script.py").write_text(tests)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-p",
            "no:cov",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 passed\b", done.stdout)
    assert "warning" not in done.stdout.lower()
