"""Issue 8's proof over a whole run: no secret any test used is in any log
line the run wrote (tests/runlog.py keeps both). The check runs last; on a
run of a few tests it has too little to prove anything, and skips unless
CONTACTPOINT_CHECK_RUN_LOG=1 asks for it."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from idp import logs
from tests.conftest import WHOLE_RUN
from tests.runlog import SECRETS, RunLog, find_leaks

FORCE = "CONTACTPOINT_CHECK_RUN_LOG"
# A whole run writes tens of thousands of lines and uses thousands of secrets;
# far fewer means the tee or the helpers' recording stopped working.
WHOLE_RUN_LINES = 5_000
WHOLE_RUN_SECRETS = 1_000
# Kinds a whole run must have recorded, each from its own helper.
WHOLE_RUN_KINDS = ("password", "PIN", "TOTP secret", "TOTP code", "cookie ", "letter code",
                   "activation code", "client secret", "access token", "refresh token",
                   "'code' value", "child's surname", "child's postcode")


def _line_count(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with path.open("rb") as handle:
            total += sum(1 for _ in handle)
    return total


@pytest.mark.runs_last
def test_no_secret_the_run_used_is_in_any_log_line_it_wrote(
    run_log: RunLog, request: pytest.FixtureRequest
) -> None:
    whole = request.config.stash.get(WHOLE_RUN, False)
    if not whole and os.environ.get(FORCE) != "1":
        pytest.skip(f"needs the logs of the whole run (a few tests prove little); "
                    f"{FORCE}=1 checks this run's anyway")
    sources = run_log.sources()
    lines = _line_count(sources)
    secrets = SECRETS.kinds
    summary = (f"{lines} log lines in {len(sources)} files under {run_log.directory}; "
               f"{len(secrets)} secrets looked for ({SECRETS.set_aside} short or common "
               f"values set aside)")
    print(summary)
    leaks = [str(leak) for leak in find_leaks(secrets, sources)]
    assert leaks == [], f"{len(leaks)} secrets in the logs ({summary}):\n" + "\n".join(
        leaks[:30])
    if whole:
        assert lines >= WHOLE_RUN_LINES and len(secrets) >= WHOLE_RUN_SECRETS, summary
        kinds = set(secrets.values())
        missing = [k for k in WHOLE_RUN_KINDS if not any(seen.startswith(k) for seen in kinds)]
        assert not missing, f"no secret of these kinds was recorded: {missing}"


def test_the_check_finds_a_secret_planted_in_a_line(tmp_path: Path) -> None:
    log = tmp_path / "planted.log"
    log.write_text("\n".join([
        json.dumps({"event": "request", "logger": "contactpoint.request", "status": 200,
                    "timestamp": "2026-04-01 10:48:27.602915", "request_id": "req-480271"}),
        json.dumps({"event": "request", "logger": "contactpoint.request", "duration": 14802713}),
        json.dumps({"event": "probe Hartley-Brooks", "logger": "contactpoint.test"}),
        "[INFO] a line from a server, with 480271 in it",
    ]) + "\n")
    secrets = {"480271": "PIN", "602915": "TOTP code", "Hartley-Brooks": "child's surname"}

    leaks = find_leaks(secrets, [log])

    # Not the timestamp, the request id or a longer number: the two real ones.
    assert [(leak.kind, leak.line_number) for leak in leaks] == [
        ("child's surname", 3), ("PIN", 4)]
    assert "logger 'contactpoint.test', event 'probe [the secret]'" in str(leaks[0])
    assert "a line that is not JSON" in str(leaks[1])
    assert "Hartley-Brooks" not in str(leaks[0]) and "480271" not in str(leaks[1])


def test_the_copy_outlives_reconfiguration(tmp_path: Path, run_log: RunLog) -> None:
    """What `captured` in test_logs.py does (configure, then unconfigure) does
    not stop the copy, which takes our DEBUG lines while the output is at INFO."""
    copy = tmp_path / "copy.log"
    with copy.open("w", encoding="utf-8") as stream:
        logs.tee(stream)
        try:
            logs.configure_logging("DEBUG", "json", io.StringIO())
            logs.unconfigure()
            output = io.StringIO()
            logs.configure_logging("INFO", "json", output)
            logs.get_logger("contactpoint.test").debug("probe", note="planted-structlog")
            logging.getLogger("idp.test").debug("planted-%s", "stdlib")
            logs.unconfigure()
        finally:
            logs.tee(run_log.stream)
    assert "planted" not in output.getvalue()
    leaks = find_leaks({"planted-structlog": "one", "planted-stdlib": "two"}, [copy])
    assert sorted(leak.kind for leak in leaks) == ["one", "two"]
