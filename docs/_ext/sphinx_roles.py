"""A griffe extension: the docstrings' reStructuredText idioms, as mkdocstrings reads them.

The SDK's docstrings are written to read well in ``help()``, with the roles
Python's own documentation uses (``:class:`Task```, ``:meth:`close```) and
``::`` before a code block. mkdocstrings renders docstrings as Markdown; this
extension turns each role into a cross-reference, resolved from where the
docstring is (so ``:meth:`close``` in a method of ``Connection`` points at
``Connection.close``), and each ``::`` into the colon it stands for. A role
that resolves to nothing is left as a reference to its own text, which the
strict build then reports as broken.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(class|meth|func|data|attr|mod|exc|obj):`(~?)([^`<>]+)`")
CALLABLE_ROLES = {"meth", "func"}


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` seen from ``obj``, or ``name`` itself when nothing matches."""
    if "." in name and not name.startswith("."):
        head, _, rest = name.partition(".")
    else:
        head, rest = name, ""
    scope: griffe.Object | None = obj
    while scope is not None:
        if head in scope.members:
            member = scope.members[head]
            # An imported name stands for what it was imported from.
            found = member.target_path if member.is_alias else member.path
            return f"{found}.{rest}" if rest else found
        scope = scope.parent
    try:
        found = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError):
        return name
    return f"{found}.{rest}" if rest else found


def _markdown(obj: griffe.Object, text: str) -> str:
    def reference(match: re.Match[str]) -> str:
        role, short, name = match.groups()
        target = _resolve(obj, name)
        shown = name.rsplit(".", 1)[-1] if short else name
        if role in CALLABLE_ROLES:
            shown += "()"
        return f"[`{shown}`][{target}]"

    return _literal_blocks(ROLE.sub(reference, text))


def _literal_blocks(text: str) -> str:
    """``text::``, a blank line and an indented block: ``text:`` and a fenced code block."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.rstrip().endswith("::"):
            out.append(line)
            continue
        before = line.rstrip()[:-2].rstrip()
        if before:
            out.append(before + ":")
        block: list[str] = []
        while index < len(lines) and (not lines[index].strip() or lines[index][:1].isspace()):
            block.append(lines[index])
            index += 1
        while block and not block[0].strip():
            block.pop(0)
        while block and not block[-1].strip():
            block.pop()
        code = [b for b in block if b.strip()]
        indent = min((len(b) - len(b.lstrip()) for b in code), default=0)
        out += ["", "```python", *(b[indent:] for b in block), "```", ""]
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._rewrite(pkg, set())

    def _rewrite(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, seen)  # type: ignore[arg-type]
