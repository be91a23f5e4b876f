"""The command line of ``rnnlab verify``: its options and its entry point.

:func:`add_verify_arguments` adds the options to an argparse parser; :func:`main_verify` runs the
checks (:func:`rnnlab.paths.checks.run_checks`) and prints the table. Building the parser imports
nothing heavy (not the claims, the path modules nor matplotlib): ``python -m rnnlab -h`` and the
``train`` command stay fast; the checks are imported when ``verify`` runs.

Bad options stop before anything runs, with one line naming the flag: the list and count flags
through their argparse ``type=`` converters (non-empty, integers >= 1; seeds >= 0), ``--only``
against the registered claims once they are loaded (a ConfigError).
"""
from __future__ import annotations

import argparse

from ..argtypes import int_at_least
from ..errors import ConfigError
from .plants import PLANTS


def _int_list(minimum: int):
    """An argparse ``type=``: a non-empty comma-separated list of integers >= ``minimum``."""
    def convert(text: str) -> tuple:
        allowed = f"a non-empty comma-separated list of integers >= {minimum}"
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}")
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}")
        return values
    convert.__name__ = f"list of integers >= {minimum}"
    return convert


def add_verify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``verify`` options to an argparse parser (for the CLI)."""
    parser.add_argument("--layers", type=_int_list(1), default=(1, 2),
                        help="comma-separated layer counts (default 1,2)")
    parser.add_argument("--widths", type=_int_list(1), default=(2, 3),
                        help="comma-separated hidden widths (default 2,3)")
    parser.add_argument("--T", "-T", type=int_at_least(1), default=3,
                        help="unroll length (default 3)")
    parser.add_argument("--seeds", type=_int_list(0), default=(0,),
                        help="comma-separated seeds >= 0 (default 0)")
    parser.add_argument("--instances", type=int_at_least(1), default=2,
                        help="parameter draws per architecture and seed (default 2)")
    parser.add_argument("--plant", choices=sorted(PLANTS), default=None,
                        help="inject a known bug; the table must then report FAIL")
    parser.add_argument("--only", default=None, help="run only claims containing this text")
    parser.add_argument("--max-paths", type=int_at_least(1), default=1_000_000,
                        help="enumeration limit; enumeration claims lower T to fit it")
    parser.add_argument("--no-reduction", action="store_true",
                        help="skip the reduction-graph checks")
    return parser


def _check_only(only, checks, include_reduction) -> None:
    """ConfigError unless ``--only`` selects at least one claim that will run."""
    if only is None:
        return
    matching = [c for c in checks if only.lower() in c.claim.lower()]
    if not matching:
        raise ConfigError(f"--only {only!r} matches none of the {len(checks)} claims (it selects "
                          "claims whose text contains it, ignoring case, e.g. 'gamma^2' or "
                          "'kappa'); run without --only to see them all")
    if not include_reduction and all(c.group == "reduction_checks" for c in matching):
        raise ConfigError(f"--only {only!r} matches only reduction-graph claims, which "
                          "--no-reduction skips; drop one of the two")


def main_verify(args=None) -> int:
    """Run the checks and print the table; 0 if every claim passed, 1 otherwise.

    ``args`` is an argparse Namespace built with :func:`add_verify_arguments`, or a list of
    command-line strings (None: ``sys.argv[1:]``).
    """
    if args is None or isinstance(args, (list, tuple)):
        from ..cli import _Parser  # argparse errors as one line, exit 2
        parser = add_verify_arguments(_Parser(
            prog="rnnlab verify", description="check the path-geometry claims numerically"))
        args = parser.parse_args(args)
    from tqdm.auto import tqdm

    from .checks import CHECKS, format_table, load_checks, run_checks
    load_checks()
    _check_only(getattr(args, "only", None), CHECKS, not getattr(args, "no_reduction", False))
    # a bar on a terminal only (larger settings take minutes); one tick per finished claim
    with tqdm(total=len(CHECKS), desc="claims", unit="claim", disable=None, leave=False) as bar:
        results = run_checks(layers=args.layers, widths=args.widths, T=args.T,
                             seeds=args.seeds, instances=args.instances,
                             include_reduction=not getattr(args, "no_reduction", False),
                             plant=getattr(args, "plant", None),
                             only=getattr(args, "only", None),
                             max_paths=getattr(args, "max_paths", 1_000_000),
                             progress=lambda result: bar.update(1))
    print(format_table(results))
    return 0 if results and all(r.passed for r in results) else 1


__all__ = ["add_verify_arguments", "main_verify"]
