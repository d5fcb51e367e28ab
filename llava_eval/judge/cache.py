"""SQLite cache of judge completions, keyed by everything that decides the answer: provider, endpoint,
model, the full messages, temperature, max tokens, the task's protocol version and the judging run and
attempt (so three runs are three verdicts, and a retry after an unparsable reply is a fresh call)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from llava_types import digest


class VerdictCache:
    def __init__(self, path: Path, enabled: bool = True):
        self.enabled = enabled
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, text TEXT, prompt_tokens INTEGER,"
                        " completion_tokens INTEGER, created TEXT DEFAULT CURRENT_TIMESTAMP)")
        self.db.commit()

    @staticmethod
    def key(**parts) -> str:
        return digest(parts)

    def get(self, key: str):
        if not self.enabled:
            return None
        with self.lock:
            row = self.db.execute("SELECT text, prompt_tokens, completion_tokens FROM verdicts WHERE key = ?",
                                  (key,)).fetchone()
        return row

    def put(self, key: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO verdicts (key, text, prompt_tokens, completion_tokens) "
                            "VALUES (?, ?, ?, ?)", (key, text, prompt_tokens, completion_tokens))
            self.db.commit()

    def close(self) -> None:
        with self.lock:
            self.db.close()


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)
