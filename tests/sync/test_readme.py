"""The README's blocking program runs as written against a running cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flame.local import LocalCluster

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_blocking_program_runs(cluster: LocalCluster, tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Without async: `flame.sync`", 1)[1].split("\n## ", 1)[0]
    (program,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "FLAME_ENDPOINT": cluster.endpoint, "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SUCCEED b'hello from flame\\n'\n[b'1\\n', b'2\\n']\n100 tasks finished\n"
    # What the README says it prints.
    assert "prints `SUCCEED b'hello from flame\\n'`, `[b'1\\n', b'2\\n']` and `100 tasks" in text
