"""Worker processes that end with the process that started them.

A worker (a ``dpd bench`` run, a ``--parallel`` peer) that outlives its parent trains on for
nobody, holding a core, and writes to a terminal that is gone; ``die_with_parent`` ties its life
to its parent's, however the parent ends (SIGKILL included).
"""

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` (the pid that started it) ends: on Linux the kernel sends
    it SIGTERM (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread watches for the parent's end."""
    try:
        libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
        watched = libc is not None and libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        watched = False
    if os.getppid() != parent:  # it ended before we asked
        os._exit(1)
    if not watched:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="dpd parent watch", daemon=True).start()
