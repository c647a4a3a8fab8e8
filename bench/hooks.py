"""CPU cost per request of the operations hooks (request id, timing, metrics,
the JSON request log line), measured A/B in one process.

The app is built as in production (SQLite in a temporary folder, logs to
/dev/null as a collector would drain them); rounds alternate with the hooks
on and off, and the median of the paired differences is printed, so load from
other processes on the machine hits both sides alike. A sign-in is four
requests (GET and POST of each step), so four times the figure is the hooks'
share of a sign-in; compare with bench/signin.py's server CPU per sign-in.

    .venv/bin/python bench/hooks.py [--rounds 12] [--requests 400]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # bench/tokens.py would shadow the tokens package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    from core.settings import InstanceSecrets, load_settings
    from idp import logs
    from idp.app import create_app
    from idp.container import Container
    from idp.database import upgrade

    folder = tempfile.mkdtemp(prefix="cp-hooks-")
    settings = load_settings(overrides={"service": {"instance_dir": folder}}, environ={})
    keys = InstanceSecrets(secrets.token_bytes(32), secrets.token_bytes(32))
    container = Container(settings, secrets=keys)
    upgrade(container.engine)
    app = create_app(container=container)
    sink = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    logs.configure_logging("INFO", "json", sink)
    client = app.test_client()
    before = app.before_request_funcs[None]
    after = app.after_request_funcs[None]
    start = next(f for f in before if f.__name__ == "start")
    measure = next(f for f in after if f.__name__ == "measure")

    def hooks(on: bool) -> None:
        if on:
            before.insert(0, start)
            after.insert(after.index(next(f for f in after if f.__name__ == "finish")), measure)
        else:
            before.remove(start)
            after.remove(measure)

    print(f"{'path':<14} {'hooks on':>10} {'hooks off':>10} {'difference':>11}  (CPU per request)")
    for path in ("/signed-out", "/sign-in"):
        for _ in range(200):
            client.get(path)
        on_times, off_times, diffs = [], [], []
        for _ in range(args.rounds):
            timed = {}
            for state in (True, False):
                if not state:
                    hooks(False)
                began = time.process_time()
                for _ in range(args.requests):
                    client.get(path)
                timed[state] = (time.process_time() - began) / args.requests * 1e6
                if not state:
                    hooks(True)
            on_times.append(timed[True])
            off_times.append(timed[False])
            diffs.append(timed[True] - timed[False])
        on, off = statistics.median(on_times), statistics.median(off_times)
        print(f"{path:<14} {on:>8.0f}us {off:>8.0f}us {statistics.median(diffs):>9.0f}us")
    container.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
