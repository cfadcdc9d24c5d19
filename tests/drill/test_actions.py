"""chaosfailsmall actions against a real control plane."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))

from control_harness import running_fleet

from failsmall.drill.chaosfailsmall import FailsmallActivityError
from failsmall.drill.chaosfailsmall.actions import clear_killswitch


async def test_clearing_a_killswitch_that_is_not_set_converges(tmp_path: Path) -> None:
    """As an experiment's rollback, `clear_killswitch` succeeds when there is nothing to clear
    (the switch was never set, or a rollback took it away), and says so."""
    async with running_fleet(tmp_path, Ed25519PrivateKey.generate()) as fleet:
        token = await fleet.token("operator", "chaos")
        configuration = {"failsmall_control": fleet.plane.url}
        result = await asyncio.to_thread(
            clear_killswitch, "run-failsmall-managed", "rollback", configuration, {"token": token}
        )
        assert result == {
            "rule": "run-failsmall-managed",
            "cleared": False,
            "note": "no killswitch set on this rule",
        }
        with pytest.raises(FailsmallActivityError, match="401"):
            await asyncio.to_thread(
                clear_killswitch, "x", "rollback", configuration, {"token": "wrong"}
            )
