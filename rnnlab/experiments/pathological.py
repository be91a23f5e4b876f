"""``rnnlab pathological``: the eight pathological problems x lengths x seeds x optimizers, as a
preset of the sweep layer, with the PSGD paper's tables beside the results.

A cell is one run with ``train.stop_when_solved``: it ends at the first evaluation whose
zero-one error on the validation split is below 1 % (the tasks' ``threshold``, the
[rnnlab default] of ``../shared/notes/tasks.md`` 1.0), so "solved" means that, within the
iteration budget; a run that diverges, fails or never gets there is a **failure**, as in
``psgd-rnn.md`` Section III-B ("fails to converge within the maximum allowed number of
iterations", 10^5 for PSGD).

Tables, shaped like the paper's:

* **Table I**: per optimizer, failed/total runs per problem (rows) and length (columns);
* **Table II**: per problem, the largest length at which no run failed ("maximum sequence
  length without observing failure"; "< T_min" when even the shortest failed).

:data:`PUBLISHED` holds the paper's numbers (Table I: PSGD; Table II: HF with Tikhonov damping,
HF with structural damping (both from Martens & Sutskever 2011, four runs each) and PSGD).
(This module imports nothing heavy at the top: the command line builds its flags from it.)
"""
from __future__ import annotations

PROBLEMS = ("addition", "multiplication", "xor", "order2", "order3", "permutation", "memory5",
            "memory20")
TITLES = {"addition": "Addition", "multiplication": "Multiplication", "xor": "XOR",
          "order2": "2-bit temporal order", "order3": "3-bit temporal order",
          "permutation": "Random permutation", "memory5": "5-bit memorization",
          "memory20": "20-bit memorization"}
LENGTHS = (30, 50, 100, 200)

# psgd-rnn.md Table I (PSGD, failed/total) and Table II (maximum length without failure)
PUBLISHED = {
    "table1_psgd": {
        "addition": ("0/5", "0/5", "0/5", "2/5"), "multiplication": ("0/5",) * 4,
        "xor": ("0/5", "0/5", "3/5", "1/1"), "order2": ("0/5", "0/5", "0/5", "3/4"),
        "order3": ("0/5", "0/5", "0/5", "2/3"), "permutation": ("0/5",) * 4,
        "memory5": ("0/5",) * 4, "memory20": ("0/5",) * 4},
    "table2": {  # HF Tikhonov, HF structural, PSGD
        "addition": ("100", "100", "100"), "multiplication": ("100", "100", "200"),
        "xor": ("30", "50", "50"), "order2": ("50", "50", "100"),
        "order3": ("100", "100", "100"), "permutation": ("200", "100", "200"),
        "memory5": ("< 30", "200", "200"), "memory20": ("30", "100", "200")},
}

# The optimizers of the suite, by label. Budgets are rnnlab's (the sources' are 10^5 PSGD
# iterations and MS11's HF runs of hours on a GPU): see suite_spec().
OPTIMIZERS = {
    "hf-structural": {"name": "hf", "structural_damping": 0.03, "cg_max": 100,
                      "curvature_batch": 100},
    "hf-tikhonov": {"name": "hf", "structural_damping": 0.0, "cg_max": 100,
                    "curvature_batch": 100},
    "psgd": {"name": "psgd"},
    "sgd": {"name": "sgd", "lr": 0.01},
}
# per optimizer: the batch (HF: B_g, its curvature batch B_c is 100 of them), clipping and the
# default step budget of one cell
TRAINING = {"hf-structural": {"batch": 1000, "clip": 0.0, "steps": 200},
            "hf-tikhonov": {"batch": 1000, "clip": 0.0, "steps": 200},
            "psgd": {"batch": 100, "clip": 0.0, "steps": 5000},
            "sgd": {"batch": 100, "clip": 1.0, "steps": 5000}}


def suite_spec(problems=PROBLEMS, lengths=(30, 50), seeds=(0, 1, 2, 3, 4),
               optimizers=("hf-structural", "psgd"), hidden: int = 100,
               steps: dict | None = None) -> SweepSpec:
    """The suite as a sweep: one [[grid]] per optimizer (its own batch, clipping and budget),
    each over problems x lengths, with ``seeds``.

    Model: a tanh RNN of ``hidden`` units (MS11 and the PSGD paper: 100), orthogonal recurrent
    weights (the PSGD paper) and Glorot-uniform others; float64 (PSGD's finite differences and
    HF's CG are run in float64 by their sources' advice). ``steps``: optimizer label -> budget,
    overriding :data:`TRAINING`.
    """
    from .sweep import SweepSpec
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown:
        from ..errors import ConfigError
        raise ConfigError(f"unknown suite optimizer {unknown[0]!r}; allowed: "
                          f"{', '.join(OPTIMIZERS)}")
    grids = []
    for label in optimizers:
        train = dict(TRAINING[label])
        if steps and label in steps:
            train["steps"] = steps[label]
        grids.append({"axes": {"task": list(problems), "task.T": list(lengths),
                               "optimizer": [OPTIMIZERS[label]],
                               **{f"train.{k}": [v] for k, v in train.items()}}})
    return SweepSpec.from_dict({
        "base": {"model": {"name": "elman", "hidden": hidden, "activation": "tanh",
                           "init": "orthogonal"},
                 "train": {"eval_every": 50, "eval_size": 1000, "test_size": 1000,
                           "dtype": "float64", "stop_when_solved": True}},
        "seeds": list(seeds), "grid": grids, "report": {"select": []}},
        source="rnnlab pathological")


def _label_of(optimizer: dict) -> str:
    from .sweep import axes_label
    for label, entry in OPTIMIZERS.items():
        if all(optimizer.get(k) == v for k, v in entry.items()):
            return label
    return axes_label({"optimizer": optimizer})


def failure_tables(cells: list) -> tuple:
    """(table I, table II) as nested dicts from store rows: table I maps optimizer label ->
    problem -> T -> (failed, total); table II maps problem -> optimizer label -> the largest T
    with no failure (0: even the shortest failed; None: no finished run yet)."""
    runs = {}
    for row in cells:
        if row["status"] == "pending":
            continue
        config = row["config"]
        label = _label_of(config["optimizer"])
        problem, T = config["task"]["name"], config["task"]["T"]
        solved = row["status"] == "done" and row["steps_to_threshold"] is not None
        failed, total = runs.setdefault(label, {}).setdefault(problem, {}).get(T, (0, 0))
        runs[label][problem][T] = (failed + (not solved), total + 1)
    longest = {}
    for label, problems in runs.items():
        for problem, by_T in problems.items():
            best = 0
            for T in sorted(by_T):
                if by_T[T][0] > 0:
                    break
                best = T
            longest.setdefault(problem, {})[label] = best
    return runs, longest


def format_tables(cells: list) -> str:
    """Table I per optimizer and Table II, markdown, beside the published numbers."""
    table1, table2 = failure_tables(cells)
    lengths = sorted({T for problems in table1.values() for by_T in problems.values()
                      for T in by_T})
    lines = []
    for label, problems in table1.items():
        lines += [f"### Table I: failure rate (failed/total), {label}", "",
                  "| problem | " + " | ".join(f"T={T}" for T in lengths)
                  + " | published PSGD " + " / ".join(str(T) for T in LENGTHS) + " |",
                  "|---|" + "---|" * (len(lengths) + 1)]
        for problem in PROBLEMS:
            if problem not in problems:
                continue
            cells_ = [("{}/{}".format(*problems[problem][T]) if T in problems[problem] else "-")
                      for T in lengths]
            lines.append(f"| {TITLES[problem]} | " + " | ".join(cells_) + " | "
                         + " ".join(PUBLISHED["table1_psgd"][problem]) + " |")
        lines.append("")
    labels = list(table1)
    lines += ["### Table II: maximum length without a failure", "",
              "| problem | " + " | ".join(labels) + " | published HF Tikhonov / HF structural "
              "/ PSGD |", "|---|" + "---|" * (len(labels) + 1)]
    for problem in PROBLEMS:
        if problem not in table2:
            continue
        values = []
        for label in labels:
            best = table2[problem].get(label)
            values.append("-" if best is None else f"< {min(lengths)}" if best == 0
                          else str(best))
        lines.append(f"| {TITLES[problem]} | " + " | ".join(values) + " | "
                     + " / ".join(PUBLISHED["table2"][problem]) + " |")
    lines += ["", "A run fails when it has not reached a validation zero-one error below 1 % "
              "within its budget (or diverged); lengths not run are '-'."]
    return "\n".join(lines)


__all__ = ["LENGTHS", "OPTIMIZERS", "PROBLEMS", "PUBLISHED", "failure_tables", "format_tables",
           "suite_spec"]
