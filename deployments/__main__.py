"""The repository's deploy tooling, one command line (run from the repository root):

    python -m deployments plan [--prune] [--json]      # what apply would change; changes nothing
    python -m deployments apply [--prune] [--adopt]    # make the server match prefect.yaml
    python -m deployments check                        # prefect.yaml and its entrypoints only
    python -m deployments import                       # declare what the server has, unowned
    python -m deployments snapshot --output FILE       # the server as plan reads it, no secret
    python -m deployments plan --snapshot FILE         # plan against that file, no server

All take `--prefect-file PATH` (default: prefect.yaml) and reach the server through
PREFECT_API_URL and PREFECT_API_AUTH_STRING, like every Prefect client. `--target NAME` (or
DEPLOYMENTS_TARGET) deploys one of the file's named targets to its own server, from the variables
the target names (deployments/targets.py); unset, the file's first target. check checks every
target. plan, apply and snapshot take `--wait-for-server SECONDS`: a server that is still starting
gets that long to answer (the compose deploy jobs wait for the server, or the load balancer, this
way).

Exit codes, as Terraform's `plan -detailed-exitcode`: plan exits 0 when the server matches,
2 when there are changes, 1 on an error (a broken prefect.yaml, an unreachable server, a
conflict with an object the repository does not own). apply, check and import exit 0 or 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from subprocess import TimeoutExpired

import httpx
from prefect.exceptions import PrefectException
from pydantic import ValidationError

from deployments import settings
from deployments.apply import ApplyError, apply, plan
from deployments.check import check_targets
from deployments.image_tag import image_tag
from deployments.importing import import_objects
from deployments.plan import render
from deployments.snapshot import plan_from_snapshot, snapshot
from deployments.spec import SpecError, chosen_target
from deployments.targets import TargetError, target_server

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 1, not argparse's 2: plan's 2 means "changes"
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"error: {message}\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"a number of seconds, 0 or more, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m deployments", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefect-file", type=Path, default=settings.PREFECT_YAML)
    common.add_argument(
        "--target",
        metavar="NAME",
        help="the prefect file's named target (default: DEPLOYMENTS_TARGET, else its first)",
    )
    wait = argparse.ArgumentParser(add_help=False)
    wait.add_argument(
        "--wait-for-server",
        type=_seconds,
        default=0,
        metavar="SECONDS",
        help="wait this long for the server to answer first (default: not at all)",
    )
    prune = argparse.ArgumentParser(add_help=False, parents=[wait])
    prune.add_argument(
        "--prune", action="store_true", help="delete owned objects no longer declared"
    )
    show = commands.add_parser("plan", parents=[common, prune], help="show what apply would do")
    show.add_argument("--json", action="store_true", help="the plan as JSON, for CI")
    show.add_argument(
        "--snapshot",
        type=Path,
        metavar="FILE",
        help="compare with this snapshot instead of the server (reads no server)",
    )
    change = commands.add_parser("apply", parents=[common, prune], help="apply prefect.yaml")
    change.add_argument(
        "--adopt",
        action="store_true",
        help="take over declared names that exist without the ownership tag",
    )
    commands.add_parser("check", parents=[common], help="check prefect.yaml and its entrypoints")
    take = commands.add_parser(
        "snapshot",
        parents=[common, wait],
        help="write the server as plan reads it, without secret values, for plan --snapshot",
    )
    take.add_argument("--output", type=Path, required=True, metavar="FILE")
    commands.add_parser(
        "import",
        parents=[common],
        help="write declarations of the server objects not owned into the prefect file",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "check":
        checked = check_targets(args.prefect_file)
        for target, names in checked.items():
            where = f" (target {target})" if target else ""
            print(f"{args.prefect_file.name}{where} OK: {', '.join(names)}")
        return EXIT_OK
    if args.command == "import":
        imported = asyncio.run(import_objects(args.prefect_file))
        if not imported.objects:
            print("Nothing to import: every object on the server is owned or declared.")
            return EXIT_OK
        print(f"Declared in {args.prefect_file}:")
        print("\n".join(f"  {what}" for what in imported.objects))
        if imported.environment:
            names = ", ".join(sorted(imported.environment))
            print(f"Set {names} (the secrets' values) before apply; they are not in the file.")
        print("Review the file, then `python -m deployments apply --adopt` takes them over.")
        return EXIT_OK
    if args.command == "snapshot":
        taken = asyncio.run(snapshot(args.prefect_file, args.wait_for_server))
        args.output.write_text(taken.to_json())
        print(f"Wrote the {taken.label} to {args.output}")
        return EXIT_OK
    if args.command == "plan":
        if args.snapshot:
            result = asyncio.run(plan_from_snapshot(args.prefect_file, args.snapshot, args.prune))
        else:
            result = asyncio.run(plan(args.prefect_file, args.prune, args.wait_for_server))
        print(result.to_json() if args.json else render(result))
        if result.conflicts:
            print("error: conflicts: apply would stop (see above)", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_CHANGES if result.has_changes else EXIT_OK
    before, done = asyncio.run(
        apply(args.prefect_file, args.prune, args.adopt, args.wait_for_server)
    )
    print(render(before))
    print("Apply complete:" if done else "Apply complete: nothing to do.")
    for step in done:
        print(f"  {step}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        # The image tag the target docker builds, pushes and names in its job variables:
        # derived from the code here, so that plan and the deploy it runs (a child process,
        # which reads it from the environment) agree on it.
        if settings.current().image_tag is None:
            os.environ[settings.IMAGE_TAG_ENV] = image_tag()
        if args.target:
            os.environ[settings.TARGET_ENV] = args.target
        # No server: check (every target), and a plan from a snapshot (a pull request's, which
        # holds no credential).
        if args.command == "check" or getattr(args, "snapshot", None):
            return _run(args)
        with target_server(chosen_target(args.prefect_file)):
            return _run(args)
    except (SpecError, ApplyError, TargetError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except httpx.HTTPStatusError as exc:  # e.g. 401: missing or wrong PREFECT_API_AUTH_STRING
        print(f"error: {_refusal(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (httpx.RequestError, PrefectException, ValidationError, TimeoutExpired) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, httpx.HTTPStatusError) else None
        reason = _refusal(cause) if cause else f"{type(exc).__name__}: {exc}"
        print(f"error: {reason}", file=sys.stderr)
        return EXIT_ERROR


def _refusal(exc: httpx.HTTPStatusError) -> str:
    """What the server refused and why; never the body of a 422, which echoes the request (a
    block's secret values among them)."""
    response = exc.response
    detail = ""
    if response.status_code != 422:
        try:
            detail = f": {response.json().get('detail')}"
        except (ValueError, AttributeError):
            detail = f": {response.text[:300]}"
    return (
        f"the Prefect server refused {exc.request.method} {exc.request.url} "
        f"({response.status_code} {response.reason_phrase}){detail}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
