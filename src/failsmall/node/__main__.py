"""A node worker process: `python -m failsmall.node --config-json '<NodeConfig JSON>'`."""

from __future__ import annotations

import argparse
import logging
import sys

from failsmall.node.access_log import AccessLogError
from failsmall.node.config import NodeConfig, NodeConfigError
from failsmall.node.server import ListenError, run
from failsmall.node.statefiles import StateDirError
from failsmall.node.supervisor import WorkerExit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failsmall.node")
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    try:
        run(NodeConfig.from_json(args.config_json))
    except (NodeConfigError, StateDirError, AccessLogError) as exc:
        print(f"failsmall node: {exc}", file=sys.stderr)
        return WorkerExit.BAD_CONFIG
    except ListenError as exc:
        print(f"failsmall node: {exc}", file=sys.stderr)
        return WorkerExit.CANNOT_LISTEN
    return WorkerExit.OK


if __name__ == "__main__":
    sys.exit(main())
