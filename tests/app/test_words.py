"""Words for people: toasts built from parts read as separate sentences; a pasted code cut short is "incomplete",
a changed character "a typo"."""

from __future__ import annotations

import pytest

from potluck.app.words import INCOMPLETE, capitalised, code_problem, looks_cut_short, sentence, sentences
from tests.app.test_wizard import valid_invite_code


@pytest.mark.parametrize(("parts", "text"), [
    (("Could not join: the code was used", "Open the dashboard to see the log"),
     "Could not join: the code was used. Open the dashboard to see the log."),
    (("The node stopped.", "Try again"), "The node stopped. Try again."),
    (("Is Tailscale running?", ""), "Is Tailscale running?"),
    (("It works (mostly)", "ok"), "It works (mostly) ok."),
    (("two  spaces\nand a break", ), "two spaces and a break."),
    ((), ""),
])
def test_sentences(parts, text):
    assert sentences(*parts) == text


def test_sentence_keeps_closing_punctuation():
    assert sentence("Joined “Friday night”") == "Joined “Friday night”"
    assert sentence("Done!") == "Done!"


@pytest.mark.parametrize("text, expected", [
    ("at int4 it needs about 40 GiB; this PC has 14 GiB free", "At int4 it needs about 40 GiB; this PC has 14 GiB free"),
    ("model type 'bert' is not supported", "Model type 'bert' is not supported"),
    ("", ""),
])
def test_capitalised_touches_only_the_first_letter(text, expected):
    assert capitalised(text) == expected


CODE = valid_invite_code()


@pytest.mark.parametrize("cut", [1, 4, 9, 20, 41, 80, 120, len(CODE) - 12])
def test_a_code_cut_short_is_incomplete_not_a_typo(cut):
    assert code_problem(CODE[:-cut]) == INCOMPLETE
    assert looks_cut_short(CODE[:-cut])


def test_a_changed_character_is_a_typo_and_the_whole_code_is_fine():
    assert code_problem(CODE) == "" and not looks_cut_short(CODE)
    typos = [CODE[:k] + ("x" if CODE[k] != "x" else "y") + CODE[k + 1:] for k in range(len("potluck-"), len(CODE))]
    called_typo = sum("typo" in code_problem(t) for t in typos)
    assert all(code_problem(t) for t in typos)  # every one is refused
    assert called_typo >= 0.9 * len(typos)  # a typo in a length byte may read as a cut; the advice fits both


@pytest.mark.parametrize(("code", "words"), [
    ("potluck-abc", "incomplete"),
    ("hello", "This is not a Potluck invite code"),
    ("", "empty"),
    (CODE + "abc", "typo"),
])
def test_other_bad_codes_keep_their_words(code, words):
    assert words in code_problem(code)
