"""The README's function quickstart runs as written and prints what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _quickstart_program() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (program,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return program


def test_the_quickstart_function_program_runs(tmp_path: Path) -> None:
    program = _quickstart_program()
    assert "function_session(square)" in program
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "49\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    said = README.read_text(encoding="utf-8")
    assert "It prints `49` and `[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]`" in said
