"""Optuna ask/tell throughput, for comparison with `scripts/bench-coordinator`.

A user might run a sweep as an Optuna study instead of diffprobe's coordinator: each trial a
unit of work, `ask` a lease and `tell` a completion. This measures ask + tell per second in one
process, in memory and with the SQLite storage (what several worker processes would share), for
the same number of seconds as the coordinator's scenarios. Optuna is not a project dependency:
run it with a throwaway environment (`python -m venv /tmp/o && /tmp/o/bin/pip install optuna`,
then `OPTUNA_PYTHON=/tmp/o/bin/python scripts/bench-coordinator`).
"""

import sys
import tempfile
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
SPACE = {"shard": optuna.distributions.IntDistribution(0, 100_000)}


def measure(storage, label):
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        trial = study.ask(SPACE)
        study.tell(trial, 0.0)
        n += 1
    wall = time.perf_counter() - t0
    print(f"optuna {optuna.__version__} {label}: {n / wall:.0f} ask+tell/s ({n} in {wall:.1f} s)")


measure(None, "in-memory, 1 process")
with tempfile.TemporaryDirectory() as d:
    measure(f"sqlite:///{d}/study.db", "SQLite storage, 1 process")
