"""gamebots' redirect rules, labels and hints (pure); the real-socket runs are in
tests/integration/test_bots_redirect.py."""

from __future__ import annotations

import pytest

from clients.bots.errors import error_lines, hints, kind_label
from clients.bots.lean import BotFailed, follow_redirect
from shared.messages import Redirect


def test_follow_redirect_keeps_the_sdk_rules() -> None:
    entry = "wss://a.test:8443/"
    assert follow_redirect(Redirect("wss://b.test:8443/", "r"), entry, entry, 0) == (
        "wss://b.test:8443/"
    )
    assert follow_redirect(Redirect("wss://c.test/", "r"), "wss://b.test/", entry, 2)
    with pytest.raises(BotFailed) as loop:
        follow_redirect(Redirect("wss://a.test/", "r"), "wss://c.test/", entry, 3)
    assert loop.value.kind == "redirect_loop" and loop.value.close_code == 4015
    assert "more than 3 redirects" in loop.value.detail
    for bad in ("ws://b.test/", "http://b.test/", ""):
        with pytest.raises(BotFailed) as refused:
            follow_redirect(Redirect(bad, "r"), entry, entry, 0)
        assert refused.value.kind == "redirect_url"


def test_labels_and_hints_for_cluster_failures() -> None:
    assert kind_label("redirect_loop") == "more than 3 redirects for one join"
    assert kind_label("redirect_unreachable") == "cannot reach the node a redirect named"
    assert kind_label("ServerError:4016") == "server error 4016 DIRECTORY_UNAVAILABLE"
    report = {"errors": {"redirect_unreachable": 2, "ServerError:4016": 1, "redirect_loop": 1}}
    text = " ".join(hints(report))
    assert "--public-url" in text and "same --directory" in text and "room directory" in text
    assert error_lines({"redirect_loop": 3})[0] == "more than 3 redirects for one join x3"
    assert not hints({"errors": {}})
