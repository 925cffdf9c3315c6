"""Chat conversations kept across restarts, in the same SQLite file as the node's history (core/node/history.py:
`potluck.sqlite3` in the data folder), in tables of their own. Standard library only; the chat window owns one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from potluck.core.node.history import connect, history_path

TITLE_CHARS = 48
NEW_TITLE = "New chat"


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    title: str
    updated: float  # unix seconds of the last message


@dataclass(frozen=True)
class StoredMessage:
    role: str  # user | assistant
    content: str
    caption: str = ""  # speed, length and route of a reply


def title_from(text: str) -> str:
    """A conversation's title from its first message: the first line, cut at a word near TITLE_CHARS."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_CHARS:
        return line or NEW_TITLE
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0]
    return (cut if len(cut) > TITLE_CHARS // 2 else line[:TITLE_CHARS]) + "…"


class ConversationStore:
    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time):
        self._db = connect(path or history_path())
        self._clock = clock
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, "
                             "created REAL NOT NULL, updated REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS messages (conversation TEXT NOT NULL, position INTEGER NOT "
                             "NULL, role TEXT NOT NULL, content TEXT NOT NULL, caption TEXT NOT NULL, PRIMARY KEY "
                             "(conversation, position))")

    def close(self) -> None:
        self._db.close()

    def create(self, title: str = NEW_TITLE) -> str:
        conversation_id = uuid.uuid4().hex
        now = self._clock()
        with self._db:
            self._db.execute("INSERT INTO conversations (id, title, created, updated) VALUES (?, ?, ?, ?)",
                             [conversation_id, title, now, now])
        return conversation_id

    def conversations(self) -> list[Conversation]:
        """Newest first."""
        rows = self._db.execute("SELECT id, title, updated FROM conversations ORDER BY updated DESC, created DESC")
        return [Conversation(*row) for row in rows.fetchall()]

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        rows = self._db.execute("SELECT role, content, caption FROM messages WHERE conversation = ? ORDER BY position",
                                [conversation_id])
        return [StoredMessage(*row) for row in rows.fetchall()]

    def append(self, conversation_id: str, message: StoredMessage) -> None:
        """Add a message at the end; the first user message names the conversation."""
        with self._db:
            (count,) = self._db.execute("SELECT COUNT(*) FROM messages WHERE conversation = ?",
                                        [conversation_id]).fetchone()
            self._db.execute("INSERT INTO messages (conversation, position, role, content, caption) VALUES (?, ?, ?, ?, ?)",
                             [conversation_id, count, message.role, message.content, message.caption])
            self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", [self._clock(), conversation_id])
            if count == 0 and message.role == "user":
                self._db.execute("UPDATE conversations SET title = ? WHERE id = ?",
                                 [title_from(message.content), conversation_id])

    def truncate(self, conversation_id: str, keep: int) -> None:
        """Keep the first `keep` messages (regenerating a reply drops the old one)."""
        with self._db:
            self._db.execute("DELETE FROM messages WHERE conversation = ? AND position >= ?", [conversation_id, keep])

    def rename(self, conversation_id: str, text: str) -> str:
        """Name a conversation (the first line, cut like a title from a message); its place in the list stays.
        Returns the title stored. ValueError, and nothing changes, for a blank name or an unknown conversation."""
        if not text.strip():
            raise ValueError("A conversation's name needs at least one letter")
        title = title_from(text)
        with self._db:
            changed = self._db.execute("UPDATE conversations SET title = ? WHERE id = ?", [title, conversation_id])
        if changed.rowcount == 0:
            raise ValueError("That conversation is gone (deleted in another window?)")
        return title

    def delete(self, conversation_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM messages WHERE conversation = ?", [conversation_id])
            self._db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])
