"""The app's generate command carries speculative decoding (on by default) and private chats to the chat client."""

import threading
from types import SimpleNamespace

import pytest

from potluck.core import protocol
from potluck.core.node.chat import ChatService, ClientRecipe


class RecordingClient:
    """Stands in for the chat client (no event loop of its own): records what each reply was asked with."""

    def __init__(self):
        self.calls = []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        kwargs["on_token"](7, "hi")
        return SimpleNamespace(text="hi", token_ids=[7], tokens_per_second=1.0, route=(),
                               stop_reason=protocol.StopReason.EOS)


def run_reply(cmd: protocol.Generate) -> tuple[RecordingClient, list]:
    client, events, done = RecordingClient(), [], threading.Event()

    def send(event):
        events.append(event)
        if isinstance(event, (protocol.Done, protocol.Error)):
            done.set()

    recipe = ClientRecipe(model="m", swarm_key="k", self_peer_id="me", dht=None, local=lambda: None)
    service = ChatService(send, lambda: recipe, make_client=lambda r: client, drop_client=lambda c: None)
    service.submit(cmd)
    assert done.wait(10)
    service.close(1.0)
    return client, events


@pytest.mark.parametrize("fields, speculative, private", [
    ({}, "lookup", False),  # the default: guess ahead, not private
    ({"speculative": "off"}, "off", False),
    ({"private": True}, "lookup", True),
    ({"speculative": "off", "private": True}, "off", True),
])
def test_generate_options_reach_the_client(fields, speculative, private):
    client, events = run_reply(protocol.Generate(request_id="r1", prompt="Hello", temperature=0.0, **fields))
    assert isinstance(events[-1], protocol.Done) and events[-1].text == "hi"
    (call,) = client.calls
    assert (call["speculative"], call["private"]) == (speculative, private)
    assert call["prompt"] == "Hello" and call["do_sample"] is False


def test_a_command_survives_the_wire_with_its_options():
    cmd = protocol.Generate(request_id="r1", prompt="Hi", speculative="off", private=True)
    assert protocol.decode_command(protocol.encode(cmd)) == cmd
    older = protocol.encode(protocol.Generate(request_id="r2", prompt="Hi"))
    older = older.replace(',"speculative":"lookup"', "").replace(',"private":false', "")
    assert "speculative" not in older and "private" not in older
    assert protocol.decode_command(older).speculative == "lookup"  # an older app's command: the defaults


@pytest.mark.parametrize("value", ["draft", "fast", ""])
def test_unknown_speculative_modes_are_refused(value):
    with pytest.raises(protocol.ProtocolError, match="speculative must be one of"):
        protocol.Generate(request_id="r1", prompt="Hi", speculative=value)
