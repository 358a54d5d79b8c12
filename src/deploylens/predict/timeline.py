"""When each kernel finishes. Serial (a CPU): launch, then run. Overlapped (a GPU): the
CPU launches op after op; the GPU starts a kernel once it is launched and the one
before it is done, so launch overhead costs time only where the GPU runs out of work."""

from __future__ import annotations


class Timeline:
    def __init__(self, start_ms: float, overlapped: bool):
        self.launched = self.finished = start_ms
        self.overlapped = overlapped

    def add(self, body_ms: float, overhead_ms: float) -> float:
        """Adds a kernel; returns how much later the last kernel finishes because of it."""
        before = self.finished
        self.launched += overhead_ms
        self.finished = (max(self.finished, self.launched) if self.overlapped
                         else self.finished + overhead_ms) + body_ms
        return self.finished - before
