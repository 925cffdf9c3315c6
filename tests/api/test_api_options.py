"""Potluck's request extensions in the OpenAI-compatible API: `speculative` (lookup by default, or off) and `private`,
checked, forwarded through this PC's node, and reaching the model."""

from __future__ import annotations

import pytest

from potluck.core.api.engine import Outcome
from potluck.core.api.gateway import NodeEndpointError, completion_request, outcome_from
from potluck.core.api.schema import DEFAULT_SPECULATIVE, ApiError, parse_chat, parse_completion, to_body
from potluck.core.protocol import StopReason

from .conftest import RunningApi

HELLO = [{"role": "user", "content": "Hello"}]
REPEATING = [5, 17, 33, 2, 40, 99, 5, 17, 33, 2, 40, 99, 5, 17, 33, 2]  # lookup can copy from it


def chat(**fields):
    return {"model": "m", "messages": HELLO, **fields}


@pytest.mark.parametrize("fields, speculative, private", [
    ({}, DEFAULT_SPECULATIVE, False),
    ({"speculative": "off"}, "off", False),
    ({"speculative": "lookup", "private": True}, "lookup", True),
    ({"speculative": None, "private": None}, DEFAULT_SPECULATIVE, False),
])
def test_the_extensions_are_read(fields, speculative, private):
    request = parse_chat(chat(**fields))
    assert (request.speculative, request.private) == (speculative, private)
    assert parse_chat(to_body(request)) == request  # what a client forwards parses back the same
    assert parse_completion(to_body(parse_completion({"model": "m", "prompt": "x", **fields}))).private == private


@pytest.mark.parametrize("fields, param, words", [
    ({"speculative": "draft"}, "speculative", "speculative must be one of lookup, off"),
    ({"speculative": True}, "speculative", "speculative must be one of"),
    ({"private": "yes"}, "private", "private must be true or false"),
])
def test_bad_extensions_are_refused(fields, param, words):
    with pytest.raises(ApiError) as caught:
        parse_chat(chat(**fields))
    assert caught.value.status == 400 and caught.value.param == param and words in caught.value.message


def test_the_default_is_lookup_and_only_a_change_is_forwarded():
    assert DEFAULT_SPECULATIVE == "lookup"
    assert "speculative" not in to_body(parse_chat(chat())) and "private" not in to_body(parse_chat(chat()))
    assert to_body(parse_chat(chat(speculative="off", private=True)))["speculative"] == "off"


def test_through_the_node_generate_arguments_carry_the_extensions():
    assert completion_request("m", prompt="x", speculative="lookup", private=True).private is True
    assert completion_request("m", prompt="x", speculative="off").speculative == "off"
    with pytest.raises(NodeEndpointError, match="not offered through this PC's node"):
        completion_request("m", prompt="x", speculative="draft")


def test_guesses_and_checks_travel_back_in_the_details():
    outcome = Outcome("Hi", StopReason.LENGTH, 3, [5, 6], draft_proposed=4, draft_accepted=3, spot_checks=2,
                      suspects=("peer-x",))
    details = outcome.details()
    assert (details["draft_proposed"], details["draft_accepted"], details["spot_checks"]) == (4, 3, 2)
    assert outcome_from(details, "Hi") == outcome
    plain = Outcome("Hi", StopReason.LENGTH, 3, [5, 6]).details()
    assert not {"draft_proposed", "spot_checks", "suspects"} & set(plain)  # nothing happened: nothing added


def test_the_model_receives_the_extensions(local_model, tiny_model):
    running = RunningApi(local_model, ["tiny-llama"], details=True)
    try:
        client = running.client()
        ask = dict(model="tiny-llama", prompt=REPEATING, max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
        guessed = client.completions.create(**ask)
        plain = client.completions.create(**{**ask, "extra_body": {"ignore_eos": True, "speculative": "off"}})
        private = client.completions.create(**{**ask, "extra_body": {"ignore_eos": True, "private": True}})
    finally:
        running.stop()
    assert guessed.choices[0].text == plain.choices[0].text == private.choices[0].text  # greedy: the same reply
    assert guessed.model_extra["potluck"]["draft_proposed"] > 0  # lookup by default: guesses rode along
    assert "draft_proposed" not in plain.model_extra["potluck"]


def test_a_request_the_model_cannot_run_privately_is_a_bad_request():
    from potluck.core.api.engine import error_for
    from potluck.core.client.private import PrivateModeError

    error = error_for(PrivateModeError("a private chat keeps 1 first and 1 last blocks on this PC, and this model "
                                       "has only 2"))
    assert error.status == 400 and "has only 2" in error.message
