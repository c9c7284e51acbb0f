"""Ctrl-C during training: finish the step under way, write a checkpoint, then stop cleanly.

A KeyboardInterrupt raised in the middle of a step (between two optimizers' updates, say) would leave
a state no checkpoint should hold.  While :func:`deferred_sigint` is active, the first SIGINT only sets
a flag that the loop reads between steps; a second one interrupts at once (the last checkpoint on disk
is still intact, because checkpoints are replaced atomically).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after a complete step, with a checkpoint of that step written."""

    def __init__(self, step: int, run_dir: str):
        super().__init__(f"stopped at step {step}; continue with `untwine train --resume {run_dir}`")
        self.step, self.run_dir = step, run_dir

    def __str__(self) -> str:
        return str(self.args[0])


class InterruptFlag:
    """Set by the first SIGINT while :func:`deferred_sigint` is active."""

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def deferred_sigint() -> Iterator[InterruptFlag]:
    """Defer SIGINT to the loop's next check, when this is the main thread and SIGINT has Python's
    default handler; otherwise (a thread, or a caller with its own handler) change nothing."""
    flag = InterruptFlag()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield flag
        return

    def handle(signum, frame):
        if flag.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        flag.requested = True

    signal.signal(signal.SIGINT, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
