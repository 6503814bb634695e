"""The README's offline check, run as written: curl against a live server, then verify_offline.py.

The auditor's directory holds only a copy of governance/verify_offline.py (as the README says, the
one file is all they need); `python` on PATH is this interpreter, `curl` is the system's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from rest_framework.authtoken.models import Token

from governance import verify_offline
from governance.ledger import signing
from governance.models import LabelEvent
from tests.governance.ledger_support import ledgered_version

from .readme import block_containing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def auditor_shell(tmp_path, live_server, auditor, dataset):
    """Run one README line in bash, in an auditor's directory, with SITE, TOKEN and ID set."""
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    ledgered_version(dataset)
    event = LabelEvent.objects.filter(dataset=dataset).order_by("seq").first()
    (tmp_path / "governance").mkdir()
    shutil.copy(verify_offline.__file__, tmp_path / "governance" / "verify_offline.py")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "SITE": live_server.url,
        "TOKEN": Token.objects.create(user=auditor).key,
        "ID": str(event.pk),
    }

    def run(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    run.dir = tmp_path  # type: ignore[attr-defined]
    return run


def test_the_readme_offline_check_runs_as_written(auditor_shell):
    lines = block_containing("verify_offline.py")
    fetch_key, fetch_bundle, pinned, unpinned = lines
    assert "ledger/public-key" in fetch_key and "bundle" in fetch_bundle
    assert "--key" in pinned and "--key" not in unpinned and "--fingerprint" not in unpinned

    for line in (fetch_key, fetch_bundle):
        assert auditor_shell(line).returncode == 0, line

    run = auditor_shell(pinned)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == ["VALID"]

    run = auditor_shell(unpinned)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        f"UNPINNED: checked against the key inside the bundle, fingerprint {signing.key_id()}" in run.stdout
    )
    assert run.stdout.splitlines()[-1] == "VALID (UNPINNED)"
