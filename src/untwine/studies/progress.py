"""How far a study is: the live progress bar of ``run_study`` and the text of ``untwine study status``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m"``, ``125`` -> ``"2m05s"``, ``7`` -> ``"7s"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class StudyProgress:
    """A tqdm bar over the study's models (finished = done + failed), shown on terminals only; its
    postfix says done / failed / running / pending, and tqdm's ETA comes from this session's throughput.
    Messages (a failed model, a retried one) are printed above the bar whenever ``enabled``."""

    def __init__(
        self, total: int, done: int, failed: int, stream: TextIO | None = None, enabled: bool = True
    ):
        self.total, self.done, self.failed, self.running = total, done, failed, 0
        self.enabled = enabled
        self.stream = stream
        self.bar = tqdm(
            total=total,
            initial=done + failed,
            desc="study",
            unit="model",
            file=stream,
            disable=None if enabled else True,  # None: only when the stream is a terminal
            dynamic_ncols=True,
        )
        self._refresh()

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running

    def _refresh(self) -> None:
        self.bar.set_postfix_str(
            f"{self.done} done, {self.failed} failed, {self.running} running, {self.pending} pending"
        )

    def started(self) -> None:
        self.running += 1
        self._refresh()

    def requeued(self, message: str) -> None:
        self.running -= 1
        self.message(message)
        self._refresh()

    def finished(self, ok: bool, message: str = "") -> None:
        self.running -= 1
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if message:
            self.message(message)
        self.bar.update(1)
        self._refresh()

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text, file=self.stream or sys.stderr)

    def close(self) -> None:
        self.bar.close()


def format_status(status: Mapping[str, Any], study_dir: str | Path) -> str:
    """``untwine study status`` as text, from :func:`untwine.studies.runner.study_status`'s record."""
    counts = status["counts"]
    lines = [
        f"{status['study']} in {study_dir} ({status['store']})",
        f"  {counts['done']}/{status['total']} done, {counts['running']} running, {counts['failed']} failed, "
        f"{counts['pending']} pending; {status['results']} stored numbers",
    ]
    if status["mean_model_seconds"] is not None:
        left = counts["pending"] + counts["running"]
        lines.append(
            f"  {status['mean_model_seconds']:.1f} s per model (train + evaluate, one worker); "
            f"{format_duration(left * status['mean_model_seconds'])} of work left"
        )
    lines += [f"  failed model {f['model_num']}: {f['error']}" for f in status["failed"]]
    if status["failed"]:
        lines.append(
            "  (untwine study run --dir DIR --retry-failed runs them again; tracebacks are in the store's "
            "runs table)"
        )
    return "\n".join(lines)
