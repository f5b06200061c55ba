"""Per-video failures with a stable reason code (reported in job status, summary and metrics)."""

from __future__ import annotations


class VideoError(Exception):
    """A video could not be turned into samples. ``skip`` marks readable-but-unusable videos."""

    SKIP_CODES = frozenset({"too_short", "not_enough_distractors"})

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def skip(self) -> bool:
        return self.code in self.SKIP_CODES
