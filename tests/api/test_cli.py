"""`potluck chat` and `potluck api` as real processes: a piped conversation equals the model's replies, Ctrl-C in a
terminal (a pseudo-terminal here) and SIGINT stop a reply but not the program, and `potluck api` prints its URL,
serves the openai package, refuses to listen beyond this PC without a key, and stops on SIGTERM."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time

import httpx2
import openai
import pytest

from potluck.core.cli import chat as chat_cli
from potluck.core.cli.chat import Action, Conversation, parse_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POTLUCK = [sys.executable, "-m", "potluck.core"]


@pytest.mark.parametrize("line, expected", [
    ("Hello there\n", (Action.SAY, "Hello there")),
    ("  /reset ", (Action.RESET, "/reset")),
    ("/EXIT", (Action.EXIT, "/EXIT")),
    ("/quit", (Action.EXIT, "/quit")),
    ("/help", (Action.HELP, "/help")),
    ("/frobnicate", (Action.UNKNOWN, "/frobnicate")),
    ("/reset the cat, please", (Action.SAY, "/reset the cat, please")),  # a sentence, not a command
    ("   \n", (Action.NOTHING, "")),
])
def test_what_a_line_means(line, expected):
    assert parse_line(line) == expected


def test_the_conversation_goes_with_every_message():
    talk = Conversation(system="Be brief.")
    assert talk.messages_with("Hi") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    talk.add("Hi", "Hello!")
    assert talk.messages_with("And?")[1:] == [{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello!"},
                                              {"role": "user", "content": "And?"}]
    talk.reset()
    assert talk.messages_with("Hi") == Conversation(system="Be brief.").messages_with("Hi")
    assert chat_cli.COMMANDS["/new"] is Action.RESET


@pytest.mark.slow
def test_a_piped_conversation(tiny_model, local_model):
    lines = "Hello\nHow are you?\n\n/reset\nHello\n/nonsense\n/exit\nnever sent\n"
    done = subprocess.run([*POTLUCK, "chat", "--local", "--model", tiny_model, "--max-new-tokens", "8"],
                          input=lines, capture_output=True, text=True, timeout=180, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    first = local_model.generate(messages=[{"role": "user", "content": "Hello"}], max_new_tokens=8).text
    second = local_model.generate(messages=[{"role": "user", "content": "Hello"}, {"role": "assistant",
                                            "content": first}, {"role": "user", "content": "How are you?"}],
                                  max_new_tokens=8).text
    assert first != second
    assert done.stdout == f"{first}\n{second}\n{first}\n"  # after /reset the conversation starts over
    assert "(a new conversation)" in done.stderr and "unknown command /nonsense" in done.stderr


class Output:
    """Everything a child writes to `fd`, collected on a thread."""

    def __init__(self, fd: int):
        self.fd, self.data, self._lock = fd, b"", threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                chunk = os.read(self.fd, 4096) if ready else b""
            except OSError:
                return
            if ready and not chunk:
                return
            with self._lock:
                self.data += chunk

    def text(self) -> str:
        with self._lock:
            return self.data.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = 120.0, after: int = 0) -> int:
        """The end of the first match of `pattern` at or after character `after`."""
        deadline = time.monotonic() + timeout
        while (match := re.compile(pattern).search(self.text(), after)) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text()[-2000:]}"
            time.sleep(0.05)
        return match.end()


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_reply_not_the_program(tiny_model):
    pid, master = pty.fork()
    if pid == 0:  # the child: `potluck chat` on a terminal of its own
        os.chdir(REPO)
        os.execv(sys.executable, [*POTLUCK, "chat", "--local", "--model", tiny_model, "--max-new-tokens", "1900"])
    screen = Output(master)
    try:
        screen.wait_for(r"you> ")
        os.write(master, b"Tell me a story\n")
        began = screen.wait_for(r"story\r\n")
        screen.wait_for(r"[\s\S]{40}", after=began)  # the reply is streaming
        os.write(master, b"\x03")  # Ctrl-C, as a keyboard sends it: the terminal signals the foreground group
        stopped = screen.wait_for(r"\[stopped\]", timeout=30)
        screen.wait_for(r"you> ", after=stopped)  # still there, asking for the next line
        os.write(master, b"/exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert len(screen.text()[began:stopped]) < 1900  # well short of the whole reply
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)


@pytest.mark.slow
def test_sigint_with_piped_input_stops_the_reply(tiny_model):
    child = subprocess.Popen([*POTLUCK, "chat", "--local", "--model", tiny_model, "--max-new-tokens", "1900"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    out, err = Output(child.stdout.fileno()), Output(child.stderr.fileno())
    try:
        err.wait_for("Chat with")
        child.stdin.write(b"Tell me a story\n")
        child.stdin.flush()
        out.wait_for(r"[\s\S]{40}")
        child.send_signal(signal.SIGINT)
        err.wait_for(r"\[stopped\]", timeout=30)
        first_reply = out.wait_for("\n")
        child.stdin.write(b"Hello\n/exit\n")
        child.stdin.flush()
        assert child.wait(60) == 0
        time.sleep(0.3)  # the reader threads take the last bytes
        assert out.text().count("\n") == 2 and len(out.text()[first_reply:]) > 1  # and a second reply came
    finally:
        child.kill()


def start_api(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    child = subprocess.Popen([*POTLUCK, "api", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, **(env or {})})
    lines = []
    for line in child.stdout:
        lines.append(line.rstrip("\n"))
        if line.strip() == "ready":
            break
    else:
        raise AssertionError(f"`potluck api` ended: {lines} {child.stderr.read()}")
    url = next(line.split()[1] for line in lines if line.startswith("api "))
    return child, url, lines


@pytest.mark.slow
def test_potluck_api_serves_until_sigterm(tiny_model, local_model):
    child, url, lines = start_api(["--local", "--model", tiny_model, "--port", "0"])
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url) and "model tiny-llama" in lines
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hello"}],
                                               temperature=0, max_tokens=6)
        assert reply.choices[0].message.content == \
            local_model.generate(messages=[{"role": "user", "content": "Hello"}], max_new_tokens=6).text
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0 and child.stdout.read().strip() == "stopped"
    finally:
        child.kill()


@pytest.mark.slow
def test_beyond_this_pc_only_with_a_key(tiny_model):
    refused = subprocess.run([*POTLUCK, "api", "--local", "--model", tiny_model, "--host", "0.0.0.0"],
                             capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
                             env={k: v for k, v in os.environ.items() if k != "POTLUCK_API_KEY"})
    assert refused.returncode == 2
    assert "set an API key with --api-key or the POTLUCK_API_KEY environment variable" in refused.stderr
    key = "k-" + os.urandom(8).hex()
    child, url, lines = start_api(["--local", "--model", tiny_model, "--host", "0.0.0.0", "--port", "0"],
                                  env={"POTLUCK_API_KEY": key})
    try:
        port = url.split(":")[2].split("/")[0]
        local_url = f"http://127.0.0.1:{port}/v1"
        assert httpx2.get(local_url + "/models").status_code == 401
        assert httpx2.get(local_url + "/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
        assert key not in "\n".join(lines) + child.stdout.read() + child.stderr.read()
    finally:
        child.kill()


def test_a_taken_port_is_refused_in_words(tiny_model):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*POTLUCK, "api", "--local", "--model", tiny_model, "--port", str(port)],
                              capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
