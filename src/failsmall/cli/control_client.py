"""How CLI commands reach the control plane: URL and token from `--control`/`--token`, the
environment (`FAILSMALL_CONTROL`, `FAILSMALL_TOKEN`) or the file `failsmall up` writes, and
errors turned into the CLI's exit codes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from failsmall.cli.output import Exit, fail
from failsmall.cli.output import JsonOption as JsonOption  # the option commands import here

DEFAULT_CONTROL = "http://127.0.0.1:7070"

ControlOption = Annotated[
    str | None,
    typer.Option(
        "--control", help="Control plane URL (env FAILSMALL_CONTROL).", show_default=False
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (env FAILSMALL_TOKEN)."),
]


def connection_file() -> Path:
    """Where `failsmall up` leaves the URL and an admin token for the other commands."""
    home = os.environ.get("FAILSMALL_HOME") or str(Path.home() / ".failsmall")
    return Path(home) / "control.json"


def write_connection_file(url: str, token: str) -> Path:
    path = connection_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"control": url, "token": token}, out)
    return path


def _from_file() -> dict[str, str]:
    try:
        data = json.loads(connection_file().read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass
class ControlClient:
    """A synchronous client of the control plane's API."""

    url: str
    token: str
    timeout_s: float = 30.0

    @classmethod
    def resolve(cls, control: str | None, token: str | None) -> ControlClient:
        saved = _from_file()
        url = control or os.environ.get("FAILSMALL_CONTROL") or saved.get("control")
        secret = token or os.environ.get("FAILSMALL_TOKEN") or saved.get("token") or ""
        return cls((url or DEFAULT_CONTROL).rstrip("/"), secret)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(
                method, self.url + path, headers=headers, timeout=self.timeout_s, **kwargs
            )
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach the control plane at {self.url}: {exc}",
                "is it running? pass --control URL or set FAILSMALL_CONTROL",
                Exit.UNREACHABLE,
            )
        if response.status_code >= 400:
            self._fail(response)
        try:
            return response.json()
        except json.JSONDecodeError:
            fail(
                f"{self.url}{path} answered {response.status_code} with a body that is not JSON",
                "is --control the control plane's API address?",
                Exit.FAILED,
            )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        if isinstance(body, bytes):
            return self.request("POST", path, content=body, params=params)
        return self.request("POST", path, json=body if body is not None else {}, params=params)

    @staticmethod
    def _fail(response: httpx.Response) -> NoReturn:
        try:
            message = str(response.json().get("error", response.text))
            problems = response.json().get("problems", [])
        except (json.JSONDecodeError, AttributeError):
            message, problems = response.text, []
        hint = "; ".join(str(p) for p in problems[:5])
        status = response.status_code
        if status in (401, 403):
            fail(message, hint or "pass --token or set FAILSMALL_TOKEN", Exit.UNAUTHORISED)
        if status == 409 or status >= 500:
            fail(message, hint, Exit.FAILED)
        fail(message, hint, Exit.BAD_INPUT)


def short(digest: str) -> str:
    """A digest as people read it: the first 12 hex characters."""
    return digest.removeprefix("sha256:")[:12] if digest else "-"
