"""Production settings fail closed (issue #14, point 7): no public secret, deploy checks pass.

Settings are read once per process, so each case starts a fresh interpreter with exactly the
environment an operator would give it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "GENERATE", "SECRET", "LEDGER"))
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL", "HTTPS", "ALLOWED_HOSTS"):
        clean.pop(name, None)  # exactly what the case gives, whatever the caller's shell exports
    clean.update({"VAR_DIR": str(tmp_path / "var"), "DEBUG": "false", **env})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def _settings(tmp_path, expr: str, **env: str) -> subprocess.CompletedProcess:
    code = f"import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; from config import settings as s; print({expr})"
    return _run(tmp_path, "-c", code, **env)


def _ledger_pem(tmp_path) -> Path:
    path = tmp_path / "ledger.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    result = _settings(tmp_path, "s.SECRET_KEY", LEDGER_SIGNING_KEY_FILE=str(_ledger_pem(tmp_path)))

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_it_refuses_to_sign_the_ledger_with_a_development_key_in_production(tmp_path):
    result = _settings(tmp_path, "s.SECRET_KEY", SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode != 0
    assert "ImproperlyConfigured: LEDGER_SIGNING_KEY is not set" in result.stderr


def test_a_single_machine_install_generates_its_secret_once_and_keeps_it(tmp_path):
    first = _settings(tmp_path, "s.SECRET_KEY", GENERATE_SECRETS="true")
    second = _settings(tmp_path, "s.SECRET_KEY", GENERATE_SECRETS="true")

    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert key == second.stdout.strip() and len(key) >= 50
    assert (tmp_path / "var" / "secret-key").read_text().strip() == key
    assert oct((tmp_path / "var" / "secret-key").stat().st_mode & 0o777) == "0o600"
    other = _settings(tmp_path / "elsewhere", "s.SECRET_KEY", GENERATE_SECRETS="true")
    assert other.stdout.strip() != key, "never a constant: another install has another key"


def test_no_constant_secret_is_left_in_the_settings_source():
    source = (ROOT / "config" / "settings.py").read_text()
    assert "insecure" not in source.lower()


def test_check_deploy_passes_with_the_production_settings_the_readme_documents(tmp_path):
    result = _run(
        tmp_path,
        "manage.py",
        "check",
        "--deploy",
        SECRET_KEY=secrets.token_urlsafe(50),
        LEDGER_SIGNING_KEY_FILE=str(_ledger_pem(tmp_path)),
        HTTPS="true",
        ALLOWED_HOSTS="registry.example.org",
    )

    assert result.returncode == 0, result.stderr
    assert "security." not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("s.SECURE_HSTS_SECONDS >= 31536000", "True"),
        ("s.SESSION_COOKIE_SECURE and s.CSRF_COOKIE_SECURE", "True"),
        ("s.SECURE_PROXY_SSL_HEADER", "('HTTP_X_FORWARDED_PROTO', 'https')"),
    ],
)
def test_https_true_turns_on_hsts_and_secure_cookies(tmp_path, expr, expected):
    result = _settings(tmp_path, expr, GENERATE_SECRETS="true", HTTPS="true")
    assert result.stdout.strip() == expected, result.stderr


def test_a_redis_cache_is_configured_when_cache_url_is_set(tmp_path):
    result = _settings(
        tmp_path,
        "s.CACHES['default']['BACKEND']",
        GENERATE_SECRETS="true",
        CACHE_URL="redis://127.0.0.1:6379/5",
    )
    assert result.stdout.strip() == "django.core.cache.backends.redis.RedisCache", result.stderr
    local = _settings(tmp_path, "s.CACHES['default']['BACKEND']", GENERATE_SECRETS="true")
    assert local.stdout.strip() == "django.core.cache.backends.locmem.LocMemCache"


def test_pages_carry_a_content_security_policy(client, db):
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy
