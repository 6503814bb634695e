"""Signals marketplace sends so that other apps can react (governance computes quality reports on publication)."""

from django.dispatch import Signal

version_published = Signal()  # sent by publish_version inside its transaction, with version=
