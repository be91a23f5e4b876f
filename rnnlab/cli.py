"""Command line: ``python -m rnnlab COMMAND ...``, COMMAND one of train, sweep, report, compare,
pathological, demo, verify, kappa-table.

``train`` builds a :class:`rnnlab.config.RunConfig` from, in increasing precedence: the defaults
the registered components declare, a config file (``--config run.toml``; with ``--resume`` and no
``--config``, the run folder's own ``config.json``), the component names (``--task``,
``--model``, ``--optimizer``), one flag per option (``--lr``, ``--hidden``, ``--T``, ...), and
``--set SECTION.OPTION=VALUE`` for any option (the only way to reach an option whose name is
used by two sections). The flags are generated from the registries, so a newly registered
component's options appear without editing this file.

Bad arguments and rnnlab's own errors print one line to stderr and exit with code 2 (no
traceback); a diverged run prints why and where its last good checkpoint is, and exits 1; a run
stopped with Ctrl-C (exit 130) or SIGTERM (exit 143) says so in one line and keeps its last
checkpoint and every metrics record written so far.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from .argtypes import int_at_least
from .errors import ConfigError, RnnlabError

_RESERVED = {"config", "set", "out", "resume", "progress", "help"}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The options epilog printed as written (each flag's help states its default)."""


def _declared_options():
    """flag name -> [(section, Option, owner)] over every registered component and setting."""
    from .config import COMPONENTS, SETTINGS
    declared: dict = {}
    for section, (registry, _) in COMPONENTS.items():
        for owner in registry:
            for option in registry.options(owner):
                declared.setdefault(option.name, []).append((section, option, owner))
    for option in SETTINGS:
        declared.setdefault(option.name, []).append(("train", option, None))
    return declared


def _converter(entries):
    """Parse with the option's parser and accept a value any declaring owner accepts (the
    selected owner checks it again when the config is built)."""
    def convert(text):
        try:
            value = entries[0][1].parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc))
        errors = []
        for _, option, _ in entries:
            try:
                return option.check(option.name, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise argparse.ArgumentTypeError(errors[0])
    convert.__name__ = entries[0][1].kind
    return convert


def _add_option_flags(p):
    """One flag per option name used by a single section (``--init-scale`` for init_scale)."""
    for name, entries in _declared_options().items():
        sections = {section for section, _, _ in entries}
        if len(sections) > 1 or name in _RESERVED or name in sections:
            continue  # reachable through --set SECTION.NAME=VALUE
        section = entries[0][0]
        owners = [owner for _, _, owner in entries if owner is not None]
        defaults = ", ".join(f"{owner}: {option.describe().split('=', 1)[1]}"
                             for _, option, owner in entries if owner is not None)
        help_text = entries[0][1].help + (f" ({section} option; {defaults})" if owners else "")
        option = entries[0][1]
        if not owners:  # a training setting: one default (None: the help says how it is found)
            help_text = option.help + ("" if option.default is None else
                                       f" (default: {option.describe().split('=', 1)[1]})")
        kwargs = dict(dest=f"{section}.{name}", default=argparse.SUPPRESS, help=help_text)
        flag = "--" + name.replace("_", "-")
        if all(o.kind == "flag" for _, o, _ in entries):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif all(o.kind == "choice" and o.choices == option.choices for _, o, _ in entries):
            p.add_argument(flag, choices=option.choices, **kwargs)
        else:
            p.add_argument(flag, type=_converter(entries), metavar=name.upper(), **kwargs)


def _add_train_arguments(p):
    from .config import COMPONENTS
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a TOML or JSON run config (flags override it)")
    for section, (registry, default) in COMPONENTS.items():
        p.add_argument(f"--{section}", choices=registry.names(), default=argparse.SUPPRESS,
                       dest=f"{section}.name", help=f"{section} by name (default: {default})")
    _add_option_flags(p)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                   help="set any option, e.g. --set optimizer.beta2=0.99 (repeatable)")
    p.add_argument("--out", default=None,
                   help="run folder (default: runs/<task>-<model>-<optimizer>-<run id>)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that already holds a run (replaces it)")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint.npz (the folder's config.json is the "
                        "base config unless --config is given)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    from .config import options_help
    parser = _Parser(prog="rnnlab", description="Study how recurrent networks train.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,sweep,report,compare,pathological,demo,"
                                        "verify,kappa-table,download}")

    p = sub.add_parser("train", help="train a model on a task", formatter_class=_HelpFormatter,
                       epilog=options_help())
    _add_train_arguments(p)

    from .experiments.sweep_cli import (add_compare_arguments, add_pathological_arguments,
                                        add_report_arguments, add_sweep_arguments)
    add_sweep_arguments(sub.add_parser(
        "sweep", help="a grid of runs from a sweep file, on local processes or a Dask "
                      "cluster; resumable; results in SQLite, report at the end"))
    add_report_arguments(sub.add_parser(
        "report", help="tables (markdown, CSV) and learning curves of a sweep folder (also "
                       "while it runs)"))
    add_compare_arguments(sub.add_parser(
        "compare", help="the preset sweep: IRNN on the adding problem under SGD, Path-SGD, "
                        "G-SGD and Adam, lr {1e-2, 1e-3, 1e-4}, 3 seeds"))

    add_pathological_arguments(sub.add_parser(
        "pathological", help="the eight pathological problems x lengths x seeds x optimizers "
                             "(HF, PSGD, SGD) as a sweep; the PSGD paper's Tables I and II"))

    p = sub.add_parser("demo", help="a one-minute comparison: IRNN (ReLU) vs tanh RNN, or "
                                    "(demo optimizers) SGD vs Path-SGD vs G-SGD")
    p.add_argument("which", nargs="?", default="activations",
                   choices=("activations", "optimizers"),
                   help="activations: IRNN vs tanh RNN under Adam (default); optimizers: the "
                        "IRNN under SGD, Path-SGD and G-SGD")
    p.add_argument("--out", default="runs", help="folder for the demo's runs and figure")
    p.add_argument("--steps", type=int_at_least(1), default=None,
                   help="training steps per model (default: the demo's own)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    from .paths.verify_cli import add_verify_arguments
    add_verify_arguments(sub.add_parser(
        "verify", help="check the papers' path-geometry claims on random small networks"))
    from .experiments.kappa_table import add_kappa_table_arguments
    add_kappa_table_arguments(sub.add_parser(
        "kappa-table", help="||kappa2|| / ||kappa1|| over lengths and widths (the Path-SGD "
                            "paper's Figure 2)"))
    p = sub.add_parser("download", help="fetch the public MNIST and Penn Treebank files into "
                                        "a data folder, checked against their checksums")
    p.add_argument("--data", default=None,
                   help="the data folder (default: $RNNLAB_DATA)")
    p.add_argument("--datasets", nargs="+", default=["mnist", "ptb"], choices=("mnist", "ptb"),
                   help="which datasets (default: both)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per file request")
    return parser


def _parse_set(data, entries) -> dict:
    """``--set`` entries as dotted overrides, each value parsed by its option's own parser
    (``data``: the nested config the names are read from)."""
    from .config import COMPONENTS, SETTINGS
    overrides = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        section, _, name = key.strip().partition(".")
        if not sep or not section:
            raise ConfigError(f"--set needs SECTION.OPTION=VALUE; got {entry!r}")
        if section in COMPONENTS and name in ("", "name"):
            overrides[section] = text.strip()
            continue
        if section == "train":
            options = SETTINGS
        elif section in COMPONENTS:
            table = data.get(section, {})
            owner = overrides.get(section, table if isinstance(table, str) else table.get(
                "name", COMPONENTS[section][1]))
            options = COMPONENTS[section][0].options(owner)
        else:
            raise ConfigError(f"--set {entry!r}: unknown section {section!r}; allowed: "
                              "task, model, optimizer, train")
        option = next((o for o in options if o.name == name), None)
        if option is None:
            allowed = ", ".join(o.name for o in options)
            raise ConfigError(f"--set {entry!r}: {section} has no option {name!r}; its "
                              f"options: {allowed}")
        overrides[f"{section}.{name}"] = option.parse(text.strip())
    return overrides


def config_from_args(args):
    """The RunConfig the ``train`` arguments describe (see the module docstring). The pieces
    are merged as plain data first and checked once, so an override can mend what a default
    alone would refuse (``--backend numpy`` under a bad RNNLAB_BACKEND)."""
    from .config import RunConfig, apply_overrides, read_file
    from .train.sinks import CONFIG_FILE
    if args.config is not None:
        data = read_file(args.config)
    elif args.resume and args.out and os.path.isfile(os.path.join(args.out, CONFIG_FILE)):
        data = read_file(os.path.join(args.out, CONFIG_FILE))
    else:
        data = {}
    flags = {k: v for k, v in vars(args).items() if "." in k}
    names = {k.split(".")[0]: v for k, v in flags.items() if k.endswith(".name")}
    with_names = apply_overrides(data, names)
    overrides = {**names, **{k: v for k, v in flags.items() if not k.endswith(".name")}}
    overrides.update(_parse_set(with_names, args.set))
    return RunConfig.from_dict(apply_overrides(data, overrides))


def _train(args) -> int:
    from .train import FileSink, run
    from .train.run import default_folder
    config = config_from_args(args)
    out = args.out or default_folder(config)
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run in "
                          f"{out} or start it over")
    result = run(config, FileSink(out, overwrite=args.overwrite), resume=args.resume,
                 progress=args.progress)
    if result.status == "diverged":
        print(f"rnnlab: {result.message}", file=sys.stderr)
        return 1
    if result.status == "stopped":
        print(f"rnnlab: {result.message}", file=sys.stderr)
        return 143 if result.reason == "SIGTERM" else 130
    opt = config.optimizer
    detail = ", ".join(f"{k}={v}" for k, v in config.options("task").items())
    score = (f"held-out {result.metric} {result.final[result.metric]:.4g}"
             + ("" if result.baseline is None else f" (trivial baseline {result.baseline:.4g})"))
    print(f"{config.task['name']} {detail} {config.model['name']} {opt['name']}"
          f"{'' if 'lr' not in opt else ' lr=' + format(opt['lr'], 'g')}: {score} after "
          f"{result.step} steps; metrics, checkpoint and learning_curve.png in {out}")
    return 0


def _demo(args) -> int:
    from .experiments.demo import run_demo
    run_demo(out=args.out, steps=args.steps, seed=args.seed, progress=args.progress,
             which=args.which)
    return 0


def _sweep(args) -> int:
    from .experiments.sweep_cli import main_sweep
    return main_sweep(args)


def _report(args) -> int:
    from .experiments.sweep_cli import main_report
    return main_report(args)


def _compare(args) -> int:
    from .experiments.sweep_cli import main_compare
    return main_compare(args)


def _pathological(args) -> int:
    from .experiments.sweep_cli import main_pathological
    return main_pathological(args)


def _verify(args) -> int:
    from .paths.verify_cli import main_verify
    return main_verify(args)


def _kappa_table(args) -> int:
    from .experiments.kappa_table import main_kappa_table
    return main_kappa_table(args)


def _download(args) -> int:
    from .datasets.files import download
    paths = download(args.data, tuple(args.datasets), args.timeout)
    print(f"{len(paths)} files in place, checksums verified:")
    for path in paths:
        print(f"  {path}")
    return 0


def _terminate(signum, frame):
    """SIGTERM ends a command the way Ctrl-C does (the run stops between steps, its last
    checkpoint and every record so far kept), with exit code 143."""
    raise KeyboardInterrupt("SIGTERM")


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        handlers = {"train": _train, "sweep": _sweep, "report": _report, "compare": _compare,
                    "pathological": _pathological, "demo": _demo, "verify": _verify,
                    "kappa-table": _kappa_table, "download": _download}
        return handlers[args.command](args)
    except RnnlabError as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"rnnlab: {str(exc) or 'interrupted'}; the last checkpoint is kept",
              file=sys.stderr)
        return 143 if str(exc) == "SIGTERM" else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
