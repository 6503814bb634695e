"""Settings come from the environment and refuse nonsense early."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import settings as s


def test_envbool_reads_the_usual_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert s.envbool("FLAG", "false") is True
    monkeypatch.setenv("FLAG", "0")
    assert s.envbool("FLAG", "true") is False


def test_it_rejects_a_boolean_it_cannot_read(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        s.envbool("FLAG", "false")


def test_it_rejects_a_non_integer(monkeypatch):
    monkeypatch.setenv("NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="NUMBER must be an integer"):
        s.envint("NUMBER", "1")


def test_a_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SECRET_FILE", str(secret))
    assert s.envstr("SECRET", "default") == "from-a-file"


def test_tasks_run_in_process_when_no_broker_is_configured(settings):
    assert settings.CELERY_TASK_ALWAYS_EAGER is (not settings.CELERY_BROKER_URL)
