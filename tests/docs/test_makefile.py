"""`make demo` and `make test` as the README describes them, read from a dry run of the Makefile."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dry_run(tmp_path):
    """`make -n TARGET ...` in a fresh checkout (Makefile and pyproject.toml only, no .venv yet)."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in {"SITE_URL", "PORT", "HOST", "MAKEFLAGS"}}

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            ["make", "-n", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    return run


def shell_value(assignment: str, **env: str) -> str:
    """What bash makes of `NAME=value` as it appears in a recipe line."""
    _, value = assignment.split("=", 1)
    done = subprocess.run(
        ["bash", "-c", f"printf %s {value}"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_make_demo_installs_the_runtime_only(dry_run):
    lines = dry_run("demo")
    installs = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [".venv/bin/pip install --quiet -e ."]


def test_make_test_installs_the_test_extras(dry_run):
    lines = dry_run("test")
    assert any("pip install --quiet -e '.[test]'" in line for line in lines)


def test_make_demo_on_another_port_links_to_that_port(dry_run):
    lines = dry_run("demo", "PORT=8101")
    [serve] = [line for line in lines if "runserver" in line]
    words = shlex.split(serve, posix=False)
    assert words[-1] == "127.0.0.1:8101"
    [site] = [w for w in words if w.startswith("SITE_URL=")]
    assert shell_value(site) == "http://127.0.0.1:8101"
    # A SITE_URL set in the environment (a proxy's public name) still wins.
    assert shell_value(site, SITE_URL="https://registry.example.org") == "https://registry.example.org"
    [load] = [line for line in lines if "manage.py demo" in line]
    assert "SITE_URL=" in load
