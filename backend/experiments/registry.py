"""The experiments behind one registry: each module declares its experiments with ``register(Experiment(...))``.

An experiment is its name, title, paper section, runner ``run(ctx, **options) -> result document`` and the
command-line flags that set its options; ``pss experiments`` and the API read them from here. Its figure is
the dashboard's (``app/experiment_figures.py``), drawn from the result document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

RESULTS_DIR = "experiments"


@dataclass(frozen=True)
class Flag:
    """A ``pss experiments`` flag that sets one option of the runner (left out: the runner's default)."""

    flag: str  # e.g. "--step-size"
    option: str  # the runner's keyword argument, e.g. "step_size"
    type: type
    help: str
    metavar: str | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper: str  # paper section / figure
    run: Callable[..., dict]
    flags: tuple[Flag, ...] = ()
    # the runner's options under `--quick` (a flag given on the command line still wins)
    quick: dict = field(default_factory=dict)


# name -> experiment, in registration order: the order they run and are shown in
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    EXPERIMENTS[experiment.name] = experiment
    return experiment
