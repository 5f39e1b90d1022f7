"""The kernels a run starts: their environment, their process groups, and Ctrl-C.

Each node's kernel gets its staging folder through its own environment
(:func:`_kernel_manager`), never through the runner's, so nodes can run side by side.
A kernel runs in a session of its own: a terminal's Ctrl-C reaches the runner, which
records it (:func:`_recording_sigint`) and passes it on (:func:`_interrupt_kernels`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterable

#: The process group of each running node's kernel (a kernel runs in a session of its own, so a
#: terminal's Ctrl-C does not reach it: the runner passes it on, see :func:`_run_side_by_side`).
_KERNELS: dict[str, int] = {}


def _kernel_manager(name: str, env: dict[str, str]):
    """A kernel manager class whose kernels start with ``env`` on top of this process's environment.

    Per node, not per process: nodes running side by side each see their own staging folder.
    The kernel's process group is noted in :data:`_KERNELS` under ``name`` while it runs.
    """
    from jupyter_client import AsyncKernelManager

    class NodeKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kw: Any):
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            return await super()._async_pre_start_kernel(**kw)

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            group = getattr(self.provisioner, "pgid", None)
            if group:
                _KERNELS[name] = group

    return NodeKernelManager


def _interrupt_kernels(names: Iterable[str]) -> None:
    """Send SIGINT to the kernels of ``names`` (what Jupyter's interrupt does), as a terminal's Ctrl-C would."""
    import signal

    for name in names:
        group = _KERNELS.get(name)
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGINT)


_EXECUTOR_LOGGERS = ("papermill", "traitlets", "asyncio")


@contextlib.contextmanager
def _recording_sigint():
    """Yield a list that gains an entry when SIGINT arrives; the previous handler still runs.

    Ctrl-C in a terminal reaches the kernel as well as the runner, and the kernel may die of
    it before the runner's ``KeyboardInterrupt`` surfaces; whatever error then comes out of
    the executor is the interruption, not a failure of the node. An ignored SIGINT (a job
    started in the background by a script) stays ignored.
    """
    import logging
    import signal

    seen: list[float] = []
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None or previous == signal.SIG_IGN:
        yield seen
        return
    # once interrupted, the executor's teardown ("Kernel died while waiting ...") is noise, not news
    quiet = logging.Filter()
    quiet.filter = lambda record: not seen  # type: ignore[method-assign]
    chatty = [logging.getLogger(n) for n in _EXECUTOR_LOGGERS]

    def record(signum, frame):  # noqa: ANN001 -- signal handler signature
        seen.append(time.time())
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL would end the process; end the run instead, cleanly
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, record)
    for logger in chatty:
        logger.addFilter(quiet)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
        for logger in chatty:
            logger.removeFilter(quiet)


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of a block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
