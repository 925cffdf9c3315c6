"""bench/linkdelay.py: bytes arrive intact and in order, never earlier than the delay, and the relay stops."""

import socket
import threading
import time

import pytest

from bench.linkdelay import LinkDelay, check_local_target


@pytest.fixture
def echo_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(conn=conn):
                with conn:
                    while data := conn.recv(65536):
                        conn.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def round_trip(sock, payload: bytes) -> bytes:
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(1 << 20)
        assert chunk, "the relay closed the connection early"
        got += chunk
    sender.join()
    return bytes(got)


def test_bytes_arrive_in_order_and_not_before_the_delay(echo_port):
    with LinkDelay(("127.0.0.1", echo_port), delay_ms=15) as link:
        with socket.create_connection(("127.0.0.1", link.port)) as sock:
            began = time.perf_counter()
            assert round_trip(sock, b"ping") == b"ping"
            assert time.perf_counter() - began >= 0.030  # held 15 ms each way: a lower bound, not a speed
            link.delay_ms = 0
            payload = bytes(range(256)) * 8192  # 2 MiB, many chunks
            assert round_trip(sock, payload) == payload
        stats = link.stats()
    assert stats["bytes_forward"] == stats["bytes_backward"] == 4 + len(payload)
    assert stats["connections"] == 1


def test_the_relay_stops_and_refuses_outside_targets(echo_port):
    link = LinkDelay(("127.0.0.1", echo_port), delay_ms=1, max_seconds=0.5).start()
    port = link.port
    time.sleep(1.0)  # past max_seconds: it stopped by itself
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    link.close()  # already stopped: nothing to do
    with pytest.raises(ValueError):
        check_local_target("8.8.8.8")
    check_local_target("100.101.1.2")  # the network-namespace tests' tailnet-like addresses are allowed
