"""This PC's file of suspects (what its spot checks found), and where it shows: `potluck status` and the node's
member list (the dashboard's "suspect" flag)."""

import json
import os
import stat

import pytest

from potluck.core import protocol
from potluck.core.client.suspects import KEEP_SECONDS, SuspectList, Suspicion, read_suspects, write_suspects
from potluck.core.node.stats import Me, members
from potluck.core.swarm.records import ServerRecord, ServerState
from potluck.core.swarm.status import status_json, status_text

NOW = 1_700_000_000.0


def found(peer, at=NOW, **kwargs):
    return Suspicion(peer_id=peer, name=peer.upper(), model="m@1", start_block=2, end_block=4, compute="float32",
                     error=0.3, tolerance=1e-3, found_at=at, detail="disagreed", **kwargs)


def test_a_finding_is_written_privately_and_read_back_by_another_client(tmp_path):
    path = tmp_path / "data" / "suspects.json"
    SuspectList(path, clock=lambda: NOW).add(found("peer-a"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other = SuspectList(path, clock=lambda: NOW + 60)  # another program on this PC, a minute later
    assert other.peers() == {"peer-a"} and other.active()["peer-a"] == found("peer-a")
    other.add(found("peer-b", at=NOW + 60))
    assert set(read_suspects(path, now=NOW + 60)) == {"peer-a", "peer-b"}


def test_two_clients_merge_instead_of_overwriting(tmp_path):
    path = tmp_path / "suspects.json"
    first, second = SuspectList(path, clock=lambda: NOW), SuspectList(path, clock=lambda: NOW)
    first.add(found("peer-a"))
    second.add(found("peer-b"))  # second was made before first wrote: it still keeps first's finding
    assert set(read_suspects(path, now=NOW)) == {"peer-a", "peer-b"}


def test_a_suspicion_expires_after_a_day(tmp_path):
    path = tmp_path / "suspects.json"
    clock = [NOW]
    suspects = SuspectList(path, clock=lambda: clock[0])
    suspects.add(found("peer-a"))
    clock[0] = NOW + KEEP_SECONDS + 1
    assert suspects.peers() == frozenset()
    assert read_suspects(path, now=clock[0]) == {}


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"suspects": 3}', '{"suspects": [{"peer_id": 5}]}',
                                     '{"suspects": [{"peer_id": "x", "error": "big"}]}',
                                     '{"suspects": [{"peer_id": "x", "found_at": 1e400}]}'])
def test_a_damaged_file_reads_as_no_suspects(tmp_path, content):
    path = tmp_path / "suspects.json"
    path.write_text(content)
    assert read_suspects(path, now=NOW) == {}


def test_unknown_fields_are_ignored_and_the_newest_entry_wins(tmp_path):
    path = tmp_path / "suspects.json"
    older, newer = found("peer-a", at=NOW - 10).to_json(), found("peer-a", at=NOW).to_json()
    path.write_text(json.dumps({"format": 2, "suspects": [{**newer, "colour": "red"}, older]}))
    assert read_suspects(path, now=NOW)["peer-a"].found_at == NOW


def test_in_memory_list_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("POTLUCK_HOME", str(tmp_path))
    suspects = SuspectList(None, clock=lambda: NOW)
    suspects.add(found("peer-a"))
    assert suspects.peers() == {"peer-a"} and not any(tmp_path.rglob("*.json"))


def test_the_file_keeps_its_newest_entries(tmp_path):
    path = tmp_path / "suspects.json"
    write_suspects(path, {f"p{i}": found(f"p{i}", at=NOW - i) for i in range(300)})
    kept = read_suspects(path, now=NOW)
    assert len(kept) == 256 and "p0" in kept and "p299" not in kept


def rec(peer, start, end):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=ServerState.ONLINE, name=peer.upper())


def test_status_flags_and_warns_about_suspects():
    records = [rec("peer-a", 0, 2), rec("peer-bad", 2, 4), rec("peer-c", 2, 4)]
    table = {b: [r for r in records if r.hosts(b)] for b in range(4)}
    suspects = {"peer-bad": "disagreed with 2 other servers on blocks 2-3"}
    text = status_text("m@1", 4, table, suspects)
    line = next(line for line in text.splitlines() if "(peer-bad)" in line)
    assert line.endswith("SUSPECT") and sum("SUSPECT" in line for line in text.splitlines()) == 1
    assert "warning: PEER-BAD (peer-bad) is a suspect: disagreed with 2 other servers on blocks 2-3" in text
    data = status_json("m@1", 4, table, suspects)
    flags = {s["peer_id"]: s["suspect"] for g in data["blocks"] for s in g["servers"]}
    assert flags == {"peer-a": False, "peer-bad": True, "peer-c": False}
    assert not any("suspect" in w for w in status_json("m@1", 4, table)["warnings"])
    assert "SUSPECT" not in status_text("m@1", 4, table)


def test_the_member_list_flags_suspects_but_never_this_pc():
    me = Me(peer_id="me", name="Mine", state=protocol.NodeState.SERVING, start_block=0, end_block=2)
    listed = members([rec("peer-a", 0, 2), rec("peer-bad", 2, 4)], me, suspects={"peer-bad", "me", "gone"})
    assert {m.peer_id: m.suspect for m in listed} == {"me": False, "peer-a": False, "peer-bad": True}
    again = protocol.decode_event(protocol.encode(protocol.Stats(members=listed)))  # the app reads what it was sent
    assert [m.suspect for m in again.members] == [False, False, True]
    older = protocol.encode(protocol.Stats(members=listed)).replace(',"suspect":false', "")  # an older node's line
    assert older.count('"suspect"') == 1 and not any(m.suspect for m in protocol.decode_event(older).members[:2])
