"""The opt-out rules (pure) and the lookup cache the endpoint reads its secrets through."""

from __future__ import annotations

import threading
import time

import pytest

from zoho_whatsapp.rules.consent import consent_action, keyword_list, normalise_reply
from zoho_whatsapp.webhooks.common import CachedLookup


@pytest.mark.parametrize("text", [
    "STOP", "stop", " Stop ", "S T O P", "stop.", "STOP!", "Unsubscribe", "stop reminders", "STOP  REMINDERS",
    "StopReminders", "बंद करें", "बंद  करें।", "बंद\u200cकरें", "रोकें", "\u200bSTOP\u200b", "ＳＴＯＰ".lower(),
])
def test_opt_out_keywords_match_whatever_the_case_spacing_or_punctuation(text: str) -> None:
    assert consent_action(text) == "opt_out"


@pytest.mark.parametrize("text", [
    "paid yesterday", "please don't stop the service", "stopped", "STOP sending me the wrong amount",
    "start", "", None, "स्टॉप?", "STOP " * 30,
])
def test_other_replies_are_conversation(text: str | None) -> None:
    assert consent_action(text) in (None, "opt_in")
    if text and text.strip().lower() == "start":
        assert consent_action(text) == "opt_in"


def test_start_opts_back_in_and_a_word_in_both_lists_opts_out() -> None:
    assert consent_action("Start") == "opt_in"
    assert consent_action("START", opt_out=["START"], opt_in=["START"]) == "opt_out"


def test_configured_lists_replace_the_defaults() -> None:
    words = keyword_list("STOP, CANCEL ,  , रद्द करें", ("X",))
    assert words == ("STOP", "CANCEL", "रद्द करें")
    assert consent_action("cancel", opt_out=words) == "opt_out"
    assert consent_action("unsubscribe", opt_out=words) is None
    assert keyword_list(None, ("STOP",)) == ("STOP",)
    assert keyword_list([], ("STOP",)) == ("STOP",)
    assert keyword_list(["Halt", "  "], ("STOP",)) == ("Halt",)
    assert normalise_reply(" Stop\u200d Reminders! ") == "stopreminders"


def test_cached_lookup_reads_once_per_interval_and_one_at_a_time() -> None:
    reads: list[float] = []
    clock = [0.0]

    def load() -> str:
        reads.append(clock[0])
        time.sleep(0.05)  # a slow metadata database: the other callers must wait, not read too
        return f"value-{len(reads)}"

    cache = CachedLookup(load, max_age=30.0, min_refresh=5.0, clock=lambda: clock[0])
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(fresh=True))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["value-1"] * 20 and len(reads) == 1
    clock[0] = 4.0
    assert cache.get(fresh=True) == "value-1"  # a re-read is asked for too soon
    clock[0] = 6.0
    assert cache.get(fresh=True) == "value-2"
    clock[0] = 20.0
    assert cache.get() == "value-2"  # not expired
    clock[0] = 40.0
    assert cache.get() == "value-3"


def test_cached_lookup_remembers_a_failure_briefly() -> None:
    calls = [0]
    clock = [0.0]

    def load() -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise LookupError("connection not defined")
        return "defined"

    cache = CachedLookup(load, max_age=30.0, min_refresh=5.0, clock=lambda: clock[0])
    for _ in range(10):
        with pytest.raises(LookupError):
            cache.get()
    assert calls[0] == 1
    clock[0] = 6.0  # the connection was created meanwhile: picked up after min_refresh, not max_age
    assert cache.get() == "defined"
