"""Gunicorn settings that `contactpoint serve` loads (`-c python:idp.gunicorn_conf`).

Only what the command line cannot say: when a worker dies, its live gauges
(connections in use) must stop counting in the metrics all workers share.
"""

from __future__ import annotations

import os
from typing import Any


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
