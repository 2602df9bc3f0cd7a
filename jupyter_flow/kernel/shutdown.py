"""What a kernel does when it is asked to shut down or restart, before it exits.

atexit alone is too late: Jupyter gives a kernel a few seconds to exit after its shutdown
request, then sends SIGTERM (no atexit handlers run) and SIGKILL. The kernel's
``do_shutdown`` runs first, on the shutdown request itself, so the callbacks registered
here run from it: the ``%flow params`` forms become static tables (params.py), then the
session's notebook runs end (session.py).
"""

from __future__ import annotations

import sys
from typing import Callable

_callbacks: list[Callable[[], object]] = []
_last: list[Callable[[], object]] = []  # after every other callback
_watched: set[int] = set()  # kernels whose do_shutdown runs the callbacks


def kernel_shell():
    """The IPython shell of a Jupyter kernel running this code, or None (plain Python, IPython
    in a terminal, a Dask worker)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def on_shutdown(callback: Callable[[], object], *, last: bool = False) -> None:
    """Call ``callback()`` when this kernel is asked to shut down or restart (once each).

    ``last`` callbacks run after the others (ending the notebook runs comes after the
    forms are frozen). Outside a kernel nothing is watched.
    """
    callbacks = _last if last else _callbacks
    if callback not in callbacks:
        callbacks.append(callback)
    shell = kernel_shell()
    _watch(shell.kernel if shell is not None else None)


def _watch(kernel) -> None:
    if kernel is None or id(kernel) in _watched or not hasattr(kernel, "do_shutdown"):
        return
    _watched.add(id(kernel))
    original = kernel.do_shutdown

    def do_shutdown(restart):
        for callback in [*_callbacks, *_last]:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing callback must not keep the kernel alive
                pass
        return original(restart)

    kernel.do_shutdown = do_shutdown
