"""Styled error pages; expected refusals logged on one line without a traceback, server errors with theirs."""
from __future__ import annotations

import logging

import pytest
from django.test import Client

from core.log_filters import OneLineRefusals
from tests.factories import make_user


def _refused(caplog, url: str):
    """GET ``url`` as a signed-in annotator; returns (response, the one django.request record)."""
    web = Client()
    web.force_login(make_user("ann", "annotator"))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        resp = web.get(url)
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    line = logging.Formatter().format(record)
    assert record.exc_info is None and "\n" not in line and "Traceback" not in line
    return resp, line


@pytest.mark.django_db
def test_a_403_page_is_styled_and_logged_on_one_line(caplog):
    resp, line = _refused(caplog, "/dashboard/")
    assert resp.status_code == 403
    page = resp.content.decode()
    assert "This page is not open to you" in page and 'href="/"' in page and "base.css" in page
    assert "/dashboard/" in line and "PermissionDenied" in line


@pytest.mark.django_db
def test_a_404_page_is_styled_and_logged_on_one_line(caplog):
    resp, line = _refused(caplog, "/annotate/999999/")
    assert resp.status_code == 404 and "There is nothing at this address" in resp.content.decode()
    assert "/annotate/999999/" in line


def _record(status: int) -> logging.LogRecord:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("django.request", logging.ERROR if status >= 500 else logging.WARNING, __file__, 1,
                               "%s: %s", ("Status", "/x/"), exc_info)
    record.status_code = status
    return record


def test_server_errors_keep_their_traceback():
    record = _record(500)
    assert OneLineRefusals().filter(record) is True
    assert record.exc_info is not None and "Traceback" in logging.Formatter().format(record)


def test_the_filter_folds_a_refusal_with_a_multiline_message_into_one_line():
    record = _record(403)
    OneLineRefusals().filter(record)
    assert logging.Formatter().format(record) == "Status: /x/ (RuntimeError: boom second line)"


def test_the_500_page_renders_without_a_request_and_leads_home():
    from django.template.loader import render_to_string

    page = render_to_string("500.html")  # Django's server_error renders it with no context at all
    assert "Something went wrong on our side" in page and 'href="/"' in page and "Log out" not in page
