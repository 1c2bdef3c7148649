#!/usr/bin/env python3
"""Is any attack ever kept? Each attack kernel through the real trial, many times, quiet or with a loaded machine.

    scripts/attack_trials.py [--trials 20] [--load] [--attack predict_queries.py ...] [--workdir DIR]

In a scratch clone it records the seed as the baseline of a branch, then commits each attack of
``tests/kernels/attacks/`` (the hard-coded-answers one with its table filled in for the fixture's
first 150 queries) as a candidate, runs the real trial, and resets. The attacks on the worker's process
(``WITHOUT_POLICY``: they need introspection) run with the static policy switched off, to show that what lies behind it
holds on its own; ``infer_role.py`` is first kept honestly (it is faster than the seed), then its nil change is judged
with it as the incumbent. Prints one line per trial and,
per attack, how many trials kept it (the target: none) and how they ended. The fixture is the
runner's default unless the usual variables say otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from scratch import SEED, TESTS, branch, clone, commit, git, start_load, trial

ATTACKS = ["predict_queries.py", "hardcoded_answers.py", "exact_on_seen.py", "rarely_wrong.py", "untimed_work.py",
           "costly_setup.py", "costly_setup.py:first-search", "patch_clocks.py", "infer_role.py", "phase_wrong.py",
           "evict_after_return.py", "between_calls.py"]
WITHOUT_POLICY = {"patch_clocks.py", "infer_role.py", "phase_wrong.py", "between_calls.py"}


def source(name: str, rarely_wrong_rate: int) -> str:
    text = (TESTS / "attacks" / name.partition(":")[0]).read_text()
    if name == "costly_setup.py:first-search":
        return text.replace('WHERE = "prepare"', 'WHERE = "first search"')
    if name in ("rarely_wrong.py", "phase_wrong.py"):
        return text.replace("RATE = 100", f"RATE = {rarely_wrong_rate}")
    if name == "hardcoded_answers.py":
        import numpy as np

        from pqkern.bench.fixture import load_fixture
        from pqkern.bench.oracle import flat_topk

        fx = load_fixture()
        ids, _ = flat_topk(fx.codes, fx.codebook, np.asarray(fx.queries[:150]), 10)
        table = ",\n".join(f"    {tuple(int(v) for v in fx.queries[i][:8])}: {ids[i].tolist()}" for i in range(150))
        return text.replace("ANSWERS = {}  # (q0, ..., q7) -> ten ids; filled in by the test that commits this kernel",
                            "ANSWERS = {\n" + table + "\n}")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--attack", action="append", choices=ATTACKS)
    ap.add_argument("--rarely-wrong-rate", type=int, default=300,
                    help="rarely_wrong.py and phase_wrong.py drop a row on 1 query in this many")
    ap.add_argument("--load", action="store_true", help="hold a CPU-bound process on the other CPU")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    repo = clone(args.workdir, "attack-trials-")
    incumbent = branch(repo, "attacks", SEED.read_text())
    load = start_load() if args.load else None
    cpu = 0 if load else None
    try:
        base = trial(repo, "baseline", cpu=cpu)
        print(f"baseline: exit {base.code} {base.seconds:.0f}s {base.verdict}", flush=True)
        for name in args.attack or ATTACKS:
            text, kept, ends = source(name, args.rarely_wrong_rate), 0, {}
            for i in range(args.trials):
                if name == "infer_role.py":  # kept honestly first, so that the nil change below meets it as incumbent
                    commit(repo, text, f"{name} {i}: honest")
                    first = trial(repo, f"{name} {i}: honest", cpu=cpu, without_policy=True)
                    print(f"{name} {i} (kept first?): exit {first.code} {first.verdict[:160]}", flush=True)
                commit(repo, text + f"\nTRY = {i}\n", f"{name} {i}")
                t = trial(repo, f"{name} {i}", cpu=cpu, without_policy=name in WITHOUT_POLICY)
                kept += t.code == 0
                ends[f"exit {t.code} {t.stop}"] = ends.get(f"exit {t.code} {t.stop}", 0) + 1
                print(f"{name} {i}: exit {t.code} {t.seconds:.0f}s {t.verdict[:220]}", flush=True)
                git(repo, "reset", "-q", "--hard", incumbent)
            print(f"SUMMARY {name}: kept {kept}/{args.trials}; {ends}", flush=True)
    finally:
        if load:
            load.kill()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
