"""The `failsmall` command: one module per command group, registered here."""

import sys

import typer

from failsmall.cli import output

app = typer.Typer(
    name="failsmall",
    help="failsmall: an edge platform that fails small.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _each_run() -> None:
    """failsmall: an edge platform that fails small."""
    output.start_command()


# Command registrations: one line per command module.
from failsmall.cli import build_cmd  # noqa: E402

build_cmd.register(app)
from failsmall.cli import node_cmd  # noqa: E402

node_cmd.register(app)
from failsmall.cli import sim_cmd  # noqa: E402

sim_cmd.register(app)
from failsmall.cli import control_cmd  # noqa: E402

control_cmd.register(app)
from failsmall.cli import push_cmd  # noqa: E402

push_cmd.register(app)
from failsmall.cli import status_cmd  # noqa: E402

status_cmd.register(app)
from failsmall.cli import rollout_cmd  # noqa: E402

rollout_cmd.register(app)
from failsmall.cli import killswitch_cmd  # noqa: E402

killswitch_cmd.register(app)
from failsmall.cli import audit_cmd  # noqa: E402

audit_cmd.register(app)
from failsmall.cli import up_cmd  # noqa: E402

up_cmd.register(app)
from failsmall.cli import expr_cmd  # noqa: E402

expr_cmd.register(app)
from failsmall.cli import features_cmd  # noqa: E402

features_cmd.register(app)
from failsmall.cli import tune_cmd  # noqa: E402

tune_cmd.register(app)
from failsmall.cli import drill_cmd  # noqa: E402

drill_cmd.register(app)


def main(args: list[str] | None = None) -> None:
    """Run `failsmall`. With `--json`, a usage error (an unknown option, a missing or malformed
    argument) is answered in the JSON error shape of `output.fail` too, so a program driving
    the CLI never has to parse usage text."""
    argv = sys.argv[1:] if args is None else args
    if "--json" not in argv:
        app(args=argv, prog_name="failsmall")
        return
    try:
        code = app(args=argv, prog_name="failsmall", standalone_mode=False)
    except typer.TyperException as exc:
        context = getattr(exc, "ctx", None)
        where = getattr(context, "command_path", "failsmall")
        exit_code = output.Exit.BAD_INPUT if exc.exit_code == 2 else output.Exit.FAILED
        output.print_json(
            {
                "ok": False,
                "error": exc.format_message(),
                "kind": exit_code.name.lower(),
                "exit_code": int(exit_code),
                "hint": f"see `{where} --help`",
                "problems": [],
            }
        )
        sys.exit(int(exit_code))
    except typer.Abort:
        output.err_console.print("aborted")
        sys.exit(int(output.Exit.FAILED))
    sys.exit(code if isinstance(code, int) else 0)
