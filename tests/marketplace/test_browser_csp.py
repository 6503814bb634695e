"""The Content-Security-Policy leaves the pages working (issue #14, point 7)."""

import pytest

from tests.browser import chromium_page

from .test_browser import listed  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_catalogue_sort_menu_still_submits_under_the_policy_and_nothing_is_blocked(live_server, listed):  # noqa: F811
    with chromium_page() as page:
        violations = []
        page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
        page.goto(live_server.url + "/")
        values = page.eval_on_selector_all("#id_sort option", "os => os.map(o => o.value)")

        page.select_option("#id_sort", values[-1])  # its inline onchange is allowed by hash only

        page.wait_for_url(f"**sort={values[-1]}**")
        assert violations == []
