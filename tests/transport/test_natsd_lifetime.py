"""A nats-server started for tests or benches does not outlive the process that started it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import alive, outliving

STARTER = """
import sys, time
from pathlib import Path
from failsmall.transport.natsd import NatsServer
server = NatsServer(name="orphan", workdir=Path(sys.argv[1]))
server.start()
print(server.process.pid, flush=True)
time.sleep(120)
"""


def test_a_nats_server_dies_with_a_starter_killed_by_sigkill(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        server = int(starter.stdout.readline())  # printed once the server accepts clients
        assert alive(server)
    finally:
        starter.kill()  # as a test timeout or the OOM killer would: no cleanup runs
        starter.wait()
    left = outliving({server}, 20)
    assert not left, f"nats-server (pid {server}) still runs after its starter was killed"
