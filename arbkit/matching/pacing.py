"""Request pacing for IBKR discovery, as pure arithmetic (the caller sleeps).

IBKR penalises bursts of ``reqContractDetails`` with a pause of about ten minutes; a
discovery run must never trigger it. Two bounds together: a minimum spacing between
requests and a ceiling per rolling window, both far inside what IBKR tolerates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Pacer:
    min_interval_ms: int = 250
    max_per_window: int = 40
    window_ms: int = 600_000  # ten minutes
    _sent: deque[int] = field(default_factory=deque)

    def wait_ms(self, now_ms: int) -> int:
        """How long to wait before the next request may go (0: now)."""
        while self._sent and now_ms - self._sent[0] >= self.window_ms:
            self._sent.popleft()
        wait = 0
        if self._sent:
            wait = max(wait, self._sent[-1] + self.min_interval_ms - now_ms)
        if len(self._sent) >= self.max_per_window:
            wait = max(wait, self._sent[0] + self.window_ms - now_ms)
        return max(0, wait)

    def sent(self, now_ms: int) -> None:
        self._sent.append(now_ms)

    @property
    def in_window(self) -> int:
        return len(self._sent)
