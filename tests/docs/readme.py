"""Read the shell commands out of README.md, so that tests run them as the README writes them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w*)\s*$")


def code_blocks(lang: str = "sh") -> list[list[str]]:
    """Every fenced block of that language, as its lines with the fence's indentation removed."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    indent = ""
    for line in README.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and current is None and fence["lang"] == lang:
            current, indent = [], fence["indent"]
        elif fence and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line[len(indent) :] if line.startswith(indent) else line)
    return blocks


def block_containing(text: str, lang: str = "sh") -> list[str]:
    """The one block that mentions ``text``; its commands, blank lines dropped."""
    found = [block for block in code_blocks(lang) if any(text in line for line in block)]
    assert len(found) == 1, f"expected one ```{lang} block with {text!r} in README.md, found {len(found)}"
    return [line for line in found[0] if line.strip()]
