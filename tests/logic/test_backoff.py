import pytest

from potluck.core.client.backoff import BanList


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fresh(**kwargs):
    clock = FakeClock()
    return clock, BanList(clock, **kwargs)


@pytest.mark.parametrize(
    "kwargs, expected_seconds",
    [
        ({}, [1, 2, 4, 8, 16, 32, 60, 60, 60]),
        ({"base_seconds": 0.5, "max_seconds": 3}, [0.5, 1, 2, 3, 3]),
        ({"base_seconds": 5, "max_seconds": 5}, [5, 5, 5]),
    ],
)
def test_back_off_doubles_up_to_the_cap(kwargs, expected_seconds):
    clock, bans = fresh(**kwargs)
    for failures, expected in enumerate(expected_seconds, start=1):
        assert bans.ban("a") == expected
        assert bans.failures("a") == failures
        clock.now += expected  # wait out the ban before the next failure


def test_very_many_failures_stay_capped():
    clock, bans = fresh()
    for _ in range(2000):
        seconds = bans.ban("a")
        clock.now += seconds
    assert seconds == 60


@pytest.mark.parametrize(
    "elapsed, banned",
    [(0.0, True), (0.5, True), (0.999, True), (1.0, False), (1.001, False), (3600.0, False)],
)
def test_first_ban_lasts_exactly_one_second(elapsed, banned):
    clock, bans = fresh()
    bans.ban("a")
    clock.now += elapsed
    assert bans.banned_peers() == (frozenset({"a"}) if banned else frozenset())


@pytest.mark.parametrize(
    "steps, expected_banned",
    [
        # steps: ("ban", peer) | ("ok", peer) | ("wait", seconds)
        ([], set()),
        ([("ban", "a")], {"a"}),
        ([("ban", "a"), ("ban", "b")], {"a", "b"}),
        ([("ban", "a"), ("wait", 1.0), ("ban", "b")], {"b"}),
        ([("ban", "a"), ("ok", "a")], set()),  # success lifts the ban
        ([("ban", "a"), ("ok", "b")], {"a"}),  # someone else's success changes nothing
        ([("ban", "a"), ("wait", 1), ("ban", "a"), ("wait", 1.5)], {"a"}),  # second ban lasts 2 s
        ([("ban", "a"), ("wait", 1), ("ban", "a"), ("wait", 2)], set()),
        ([("ok", "a")], set()),  # success of an unknown peer
    ],
)
def test_banned_peers(steps, expected_banned):
    clock, bans = fresh()
    for action, arg in steps:
        if action == "ban":
            bans.ban(arg)
        elif action == "ok":
            bans.record_success(arg)
        else:
            clock.now += arg
    assert bans.banned_peers() == frozenset(expected_banned)


def test_success_resets_the_back_off():
    clock, bans = fresh()
    for seconds in (1, 2, 4):
        assert bans.ban("a") == seconds
        clock.now += seconds
    bans.record_success("a")
    assert bans.failures("a") == 0
    assert bans.ban("a") == 1


def test_repeated_failure_during_a_ban_does_not_escalate():
    clock, bans = fresh()
    assert bans.ban("a") == 1
    clock.now += 0.25
    assert bans.ban("a") == 0.75  # several sessions saw the same crash: remaining time, same ban
    assert bans.failures("a") == 1
    clock.now += 0.75
    assert bans.ban("a") == 2  # a new failure after the ban ran out escalates


def test_peers_back_off_independently():
    clock, bans = fresh()
    bans.ban("a")
    clock.now += 1
    bans.ban("a")
    assert bans.ban("b") == 1
    assert (bans.failures("a"), bans.failures("b")) == (2, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_seconds": 0}, "base_seconds must be a finite number > 0"),
        ({"base_seconds": -1}, "base_seconds must be a finite number > 0"),
        ({"base_seconds": float("nan")}, "base_seconds must be a finite number > 0"),
        ({"max_seconds": float("inf")}, "max_seconds must be a finite number > 0"),
        ({"max_seconds": True}, "max_seconds must be a finite number > 0"),
        ({"base_seconds": 10, "max_seconds": 5}, r"max_seconds \(5\) must be >= base_seconds \(10\)"),
        ({"clock": 12.0}, "clock must be a callable"),
    ],
)
def test_bad_settings(kwargs, message):
    clock = kwargs.pop("clock", FakeClock())
    with pytest.raises(ValueError, match=message):
        BanList(clock, **kwargs)


@pytest.mark.parametrize("method", ["ban", "record_success", "failures"])
@pytest.mark.parametrize("peer", ["", None, 42])
def test_bad_peer_id(method, peer):
    _, bans = fresh()
    with pytest.raises(ValueError, match="peer_id must be a non-empty string"):
        getattr(bans, method)(peer)


def test_default_clock_is_real_time():
    bans = BanList()
    bans.ban("a")
    assert "a" in bans.banned_peers()
