"""Speculative decoding: greedy output is exactly plain decoding (lookup and draft, locally and through swarms, with
push and relay, through a fail-over); with sampling, the acceptance rule keeps the model's distribution."""

import math

import pytest
import torch

from potluck.core.client.local import LocalModelForCausalLM, load_draft_model
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.client.sampling import SamplingParams, TokenChooser
from potluck.core.client.speculative import AdaptiveDraftLength, PromptLookup, verify
from potluck.core.localswarm import split_blocks

from .conftest import LAYERS
from .swarm_helpers import InProcessSwarm

REPEATING = [5, 17, 33, 2, 40, 99, 5, 17, 33, 2, 40, 99, 5, 17, 33, 2]  # a prompt that lookup can copy from


@pytest.mark.parametrize("tokens, k, expected", [
    ([1, 2, 3, 1, 2], 3, [3, 1, 2]),  # "1 2" occurred before: what followed it
    ([1, 2, 3, 4, 1, 2, 9, 1, 2], 2, [9, 1]),  # the latest earlier occurrence wins
    ([7, 8, 9], 4, []),  # nothing to copy
    ([1, 2, 3, 2], 5, []),  # one matching token is not enough by default …
    ([1, 2, 3, 1, 2], 0, []),
    ([4], 3, []),
])
def test_prompt_lookup(tokens, k, expected):
    assert PromptLookup().propose(tokens, k) == (expected, None)


def test_prompt_lookup_can_match_single_tokens():
    assert PromptLookup(min_ngram=1).propose([1, 2, 3, 2], 5) == ([3, 2], None)  # … unless asked


@pytest.mark.parametrize("events, current", [
    ([], 4),
    ([(4, 4)], 5),  # all kept: one more next time
    ([(4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (8, 8)], 8),  # up to the maximum
    ([(4, 0)], 2),  # a miss halves it
    ([(4, 0), (2, 0), (1, 0)], 1),  # never below one
    ([(4, 2)], 4),  # partial: unchanged
    ([(0, 0)], 4),  # nothing proposed: no information
])
def test_adaptive_draft_length(events, current):
    lengths = AdaptiveDraftLength(max_tokens=8, current=4)
    for proposed, accepted in events:
        lengths.update(proposed, accepted)
    assert lengths.current == current
    assert (lengths.proposed, lengths.accepted) == (sum(e[0] for e in events), sum(e[1] for e in events))


def test_misses_at_one_guess_rest_longer_each_time_and_a_kept_guess_ends_the_rest():
    lengths = AdaptiveDraftLength(max_tokens=8, current=1)
    schedule = []
    for _ in range(40):  # a draft source that always misses
        k = lengths.next_length()
        schedule.append(k)
        lengths.update(k, 0)
    # guess, rest 1, guess, rest 2, guess, rest 4, guess, rest 8, guess, rest 16 (the longest), guess, rest 16 …
    assert schedule[:23] == [1, 0, 1, 0, 0, 1, *[0] * 4, 1, *[0] * 8, 1, 0, 0, 0]
    assert max(len(run) for run in "".join(map(str, schedule)).split("1")) == 16
    assert sum(schedule) == 6  # 6 wasted guesses in 40 steps, not 40
    lengths.resting = 0
    lengths.update(lengths.next_length(), 1)  # a guess is kept: no more resting, and one more guess next time
    assert (lengths.last_rest, lengths.next_length()) == (0, 2)


def test_greedy_verify_keeps_the_agreeing_prefix_then_the_models_token():
    logits = torch.full((4, 10), -5.0)
    for row, best in enumerate([3, 4, 7, 1]):
        logits[row, best] = 5.0
    chooser = TokenChooser(SamplingParams())
    assert verify(chooser, logits, [3, 4, 2], [0]).tokens == [3, 4, 7]  # the third guess is wrong: 7 instead
    assert verify(chooser, logits, [3, 4, 7], [0]).tokens == [3, 4, 7, 1]  # all kept: a bonus token


@pytest.mark.parametrize("draft", ["certain", "distribution"])
def test_sampled_verification_keeps_the_models_distribution(draft):
    """Empirical frequencies of the emitted token against p, by a chi-squared test (fixed seed)."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(12, generator=gen) * 1.5
    p = torch.softmax(logits, dim=0)
    q = torch.softmax(torch.randn(12, generator=gen) * 2, dim=0) if draft == "distribution" else None
    chooser = TokenChooser(SamplingParams(do_sample=True, seed=11))
    counts = torch.zeros(12)
    samples = 20_000
    draft_gen = torch.Generator().manual_seed(5)
    for _ in range(samples):
        guess = int(torch.multinomial(q, 1, generator=draft_gen)) if q is not None else 4
        token, _kept = chooser.judge(logits, torch.tensor([0]), guess, q)
        counts[token] += 1
    expected = p * samples
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40.0, chi2  # 11 degrees of freedom: the 99.99th percentile is about 37.4 … generous
    assert math.isclose(float(counts.sum()), samples)


def test_sampling_with_lookup_matches_plain_sampling_statistically(tiny_models):
    """The first two sampled tokens' joint frequencies with and without guesses agree (total variation)."""
    model = LocalModelForCausalLM.from_pretrained(str(tiny_models["llama"]))
    prompt = [5, 17, 5, 17, 5]

    def frequencies(speculative: str) -> dict:
        counts = {}
        for seed in range(300):
            ids = tuple(model.generate(prompt, max_new_tokens=2, eos_token_id=None, do_sample=True, temperature=1.5,
                                       seed=seed, speculative=speculative).token_ids)
            counts[ids[:1]] = counts.get(ids[:1], 0) + 1
        return counts

    plain, guessed = frequencies("off"), frequencies("lookup")
    tv = 0.5 * sum(abs(plain.get(k, 0) - guessed.get(k, 0)) for k in set(plain) | set(guessed)) / 300
    assert tv < 0.15, (tv, plain, guessed)


def test_seeded_sampling_gives_the_same_reply_with_and_without_lookup(tiny_models):
    """Lookup guesses are checked by drawing the model's own token with the same generator: a seed fixes the reply."""
    model = LocalModelForCausalLM.from_pretrained(str(tiny_models["llama"]))
    guessed_any = 0
    for seed in range(6):
        ask = dict(max_new_tokens=24, eos_token_id=None, do_sample=True, temperature=0.2, top_p=0.95, seed=seed)
        plain = model.generate(REPEATING, speculative="off", **ask)
        guessed = model.generate(REPEATING, speculative="lookup", **ask)
        assert guessed.token_ids == plain.token_ids, seed
        guessed_any += guessed.draft_accepted
    assert guessed_any > 0  # the guesses were really checked and kept, not skipped


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3"])
def test_local_greedy_output_is_unchanged(tiny_models, arch):
    model = LocalModelForCausalLM.from_pretrained(str(tiny_models[arch]))
    plain = model.generate(REPEATING, max_new_tokens=24, eos_token_id=None)
    model.draft_model = load_draft_model(str(tiny_models[arch]))
    for speculative in ("lookup", "draft"):
        guessed = model.generate(REPEATING, max_new_tokens=24, eos_token_id=None, speculative=speculative)
        assert guessed.token_ids == plain.token_ids, speculative
        assert guessed.draft_proposed > 0
    assert guessed.draft_accepted == guessed.draft_proposed  # the draft is the model itself: it is always right


@pytest.mark.slow
@pytest.mark.parametrize("num_servers", [2, 3])
def test_swarm_greedy_output_is_unchanged_with_push_and_relay(tiny_models, num_servers):
    model_dir = str(tiny_models["qwen3"])  # sliding-window layers: rollbacks inside the window margin
    plain = LocalModelForCausalLM.from_pretrained(model_dir).generate(REPEATING, max_new_tokens=24, eos_token_id=None)
    with InProcessSwarm(model_dir, split_blocks(LAYERS, num_servers)) as swarm:
        for push in (True, False):
            client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers,
                                                                 push=push, timeout=10)
            client.draft_model = load_draft_model(model_dir)
            try:
                for speculative in ("lookup", "draft"):
                    result = client.generate(REPEATING, max_new_tokens=24, eos_token_id=None, speculative=speculative)
                    assert result.token_ids == plain.token_ids, (push, speculative)
                    assert result.draft_proposed > 0  # guesses were checked (lookup's are mostly rolled back here)
                    if speculative == "draft":  # the draft is the model itself: kept, so fewer steps
                        assert result.draft_accepted > 0 and len(result.step_seconds) < 23
            finally:
                client.shutdown()
