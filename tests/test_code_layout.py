"""The README's "Code layout" section is the map of the tree: every package it names exists, and
every package in the tree is named in it (so the map cannot silently fall behind a move)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Code layout", 1)[1]
    block = section.split("```", 2)[1]
    return block.splitlines()


def named_packages() -> set[str]:
    """Folders the map names, as paths: `  ledger/` under `governance/` is `governance/ledger`."""
    names, parents = set(), {}
    for line in layout_block():
        match = re.match(r"^( {0,4})([\w.]+)/\s", line + " ")  # entries, not continuation lines
        if not match:
            continue
        depth = len(match.group(1)) // 2
        parents[depth] = match.group(2)
        names.add("/".join(parents[d] for d in range(depth + 1)))
    return names


def tree_packages() -> set[str]:
    found = set()
    for app in ("marketplace", "governance"):
        for init in (ROOT / app).rglob("__init__.py"):
            folder = init.parent.relative_to(ROOT).as_posix()
            if "/migrations" in folder or folder.count("/") > 1:
                continue  # the map goes two levels deep; migrations are Django's
            found.add(folder)
    return found


def test_every_package_named_in_the_readme_exists():
    missing = {name for name in named_packages() if not (ROOT / name).is_dir()}
    assert not missing, f"README names packages that do not exist: {sorted(missing)}"


def test_every_package_in_the_tree_is_named_in_the_readme():
    text = "\n".join(layout_block())
    unnamed = {
        folder
        for folder in tree_packages()
        if folder not in named_packages() and f"{folder.rsplit('/', 1)[-1]}/" not in text
    }
    assert not unnamed, f"packages missing from the README's code layout: {sorted(unnamed)}"
