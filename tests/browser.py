"""Headless Chromium through Playwright, using Debian's /usr/bin/chromium (never a downloaded browser)."""

import os
import shutil
from contextlib import contextmanager

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The machine's network is closed: without these flags Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page():
    """A fresh browser page; the test is skipped, loudly, only when Chromium is not installed."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: `make browser` installs Debian's chromium")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between page actions are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            # Generous: the first preview of an image is rendered on demand, and CI machines are shared.
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def wait_for_js(page, expression: str, arg=None, timeout: float = 30.0) -> None:
    """Poll ``expression`` (a JS function of ``arg``, or an expression) until it is truthy.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page,
    which the pages' Content-Security-Policy (no 'unsafe-eval') rightly refuses; ``evaluate``
    goes through the DevTools protocol, which the policy does not govern.
    """
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression[:120]}")
        page.wait_for_timeout(100)
