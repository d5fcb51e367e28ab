"""Stand-in models the harness tests run with: no weights, answers known in advance."""

from __future__ import annotations


class Yes:
    """Answers "Yes" to every request and remembers which doc ids it was asked."""

    def __init__(self):
        self.seen = []

    def generate(self, requests):
        self.seen += [r.doc_id for r in requests]
        return ["Yes"] * len(requests)
