"""The README's programs run as written, and print what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _programs() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using the SDK", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_shows_one_program_under_both_backends() -> None:
    asyncio_program, trio_program = _programs()
    assert (
        asyncio_program.replace("import asyncio", "import trio").replace(
            "asyncio.run(main())", "trio.run(main)"
        )
        == trio_program
    )


@pytest.mark.parametrize("index", [0, 1], ids=["asyncio", "trio"])
def test_the_program_runs(index: int, tmp_path: Path) -> None:
    program = _programs()[index]
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SUCCEED b'hello from flame\\n'\n"
