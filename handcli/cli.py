"""Root Typer app. Stage commands live in ``handcli.commands.*``.

Command modules import only typer at import time, so ``handcli --help`` and every
``handcli <stage> --help`` answer without importing torch or numpy.
"""

from __future__ import annotations

import os
import sys

# OpenMP threads sleep instead of spinning while waiting: on a busy machine spinning threads starve
# each other (measured 3x slower small matmuls under load); set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from handcli import __version__  # noqa: E402
from handcli.commands import (  # noqa: E402
    adapt_cmd,
    cache_cmd,
    eval_cmd,
    export_cmd,
    grasp_cmd,
    hand_cmd,
    inspect_cmd,
    mesh_cmd,
    preprocess_cmd,
    render_cmd,
    report_cmd,
    synth_cmd,
    targets_cmd,
    train_cmd,
    view_cmd,
)

app = typer.Typer(
    name="handcli",
    help="Neural rendering and reconstruction of human hands and hand-object scenes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"handcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for input errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug


app.add_typer(synth_cmd.app, name="synth")
app.add_typer(preprocess_cmd.app, name="preprocess")
app.add_typer(cache_cmd.app, name="cache")
app.add_typer(hand_cmd.mano_app, name="mano")
app.add_typer(hand_cmd.hand_app, name="hand")
app.add_typer(targets_cmd.app, name="targets")
app.add_typer(export_cmd.app, name="export")
app.command("train")(train_cmd.train_command)
app.command("adapt")(adapt_cmd.adapt_command)
app.command("render")(render_cmd.render_command)
app.command("eval")(eval_cmd.eval_command)
app.command("inspect")(inspect_cmd.inspect)
app.command("mesh")(mesh_cmd.mesh_command)
app.command("grasp-eval")(grasp_cmd.grasp_eval_command)
app.command("view")(view_cmd.view_command)
app.command("report")(report_cmd.report_command)


def _run_app():
    """Run the Typer app; a usage error (unknown option, out-of-range value, missing argument) is one line
    naming the command and the option, exit 2, like every other input error. Returns the exit code."""
    from typer._click.exceptions import (  # typer pinned in pyproject
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

    try:
        return app(standalone_mode=False)
    except NoArgsIsHelpError as e:
        e.show()
        return e.exit_code
    except UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "handcli"
        print(f"error: {where}: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return e.exit_code


def main() -> None:
    """Console-script entry: map input errors to exit 2, SIGINT/SIGTERM (however they surface) to 130, bugs to 1."""
    from handcli.errors import InputError
    from handcli.interrupts import pending, stage_signals

    try:
        # SIGTERM unwinds like Ctrl-C (temporary outputs removed, exit 130); both are remembered in case
        # the KeyboardInterrupt lands in a destructor and is swallowed
        with stage_signals():
            try:
                sys.exit(_run_app() or 0)
            except SystemExit as e:
                if pending() and e.code != 130:
                    print(f"interrupted ({pending()})", file=sys.stderr)
                    sys.exit(130)
                raise
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if _state["debug"]:
            raise
        if pending():
            # the KeyboardInterrupt surfaced as another exception: h5py, for one, turns a signal that lands in
            # its Cython type conversion into "TypeError: Operation not defined for data type class"
            print(f"interrupted ({pending()}; it surfaced as {type(e).__name__}: {e})", file=sys.stderr)
            sys.exit(130)
        if isinstance(e, InputError):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        # a bug, not bad input
        import traceback

        traceback.print_exc()
        print(f"internal error (a bug, please report): {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
