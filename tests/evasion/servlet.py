"""Apache Tomcat as an origin: the Servlet container whose path rules (path parameters,
`..;`) differ most from the others. Debian's `tomcat10` package is used in place, with a
private CATALINA_BASE in a temporary directory, serving the files `admin` and `login`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failsmall.transport.natsd import free_port
from tests.evasion.origins import PROTECTED

TOMCAT_HOME = Path(os.environ.get("FAILSMALL_TOMCAT_HOME", "/usr/share/tomcat10"))
MISSING = (
    f"Tomcat is not installed at {TOMCAT_HOME}: `apt-get install tomcat10` (Debian), or set "
    "FAILSMALL_TOMCAT_HOME to a Tomcat 10 directory, to run the Servlet path cases"
)

_SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"""


def page(name: str) -> bytes:
    """What Tomcat answers for the protected file `name`."""
    return f"{name} page, served by tomcat".encode()


def _base(root: Path, port: int) -> None:
    conf = root / "conf"
    conf.mkdir(parents=True)
    (conf / "server.xml").write_text(_SERVER_XML.format(port=port))
    for name in ("web.xml", "catalina.properties", "context.xml"):
        shutil.copy(TOMCAT_HOME / "etc" / name, conf / name)
    site = root / "webapps" / "ROOT"
    site.mkdir(parents=True)
    for name in PROTECTED:
        (site / name).write_bytes(page(name))
    for name in ("logs", "temp", "work"):
        (root / name).mkdir()


@contextlib.contextmanager
def running_tomcat(root: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """Tomcat on a free loopback port, its URL; skips the test when Tomcat is not installed."""
    if not (TOMCAT_HOME / "bin" / "catalina.sh").exists() or shutil.which("java") is None:
        pytest.skip(MISSING)
    port = free_port()
    _base(root, port)
    env = {
        **os.environ,
        "CATALINA_HOME": str(TOMCAT_HOME),
        "CATALINA_BASE": str(root),
        "CATALINA_TMPDIR": str(root / "temp"),
        "JAVA_OPTS": "-Xmx128m -XX:TieredStopAtLevel=1 -Xshare:auto",
    }
    with (root / "logs" / "console.log").open("wb") as console:
        proc = subprocess.Popen(
            [str(TOMCAT_HOME / "bin" / "catalina.sh"), "run"],
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (root / "logs" / "console.log").read_text(errors="replace")
                        raise RuntimeError(f"Tomcat did not start: {log[-2000:]}") from None
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
