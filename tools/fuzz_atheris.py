"""Coverage-guided fuzzing of one reader with atheris (libFuzzer), reusing the hypothesis strategies.

    pip install --no-deps atheris
    PYTHONPATH=src python tools/fuzz_atheris.py hdf5 --runs 2000 [--crashes DIR] [-- LIBFUZZER_ARGS]

Readers: the targets of ``tools/fuzz_targets.py`` (hdf5, wav, idx, npz, yaml, binning). libFuzzer mutates byte
strings guided by the coverage of the instrumented spikescale code and case generators; hypothesis'
``fuzz_one_input`` turns each byte string into a case of the target's strategy (a byte string too short for a
case is skipped; the corpus starts from ``--seeds`` random 4 KiB strings unless corpus folders are given). Contract
violations are recorded rather than raised, so one run counts every distinct defect; the input of the first
case of each defect is written to ``--crashes`` (replay: ``--replay FILE``). The last line printed is a JSON
summary: inputs tried, cases run, ok / rejected / violations and the distinct defects.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["spikescale", "fuzz_targets"]):
    from fuzz_targets import TARGETS, ContractViolation, run_case

from hypothesis import HealthCheck, given, settings


def main() -> None:
    argv = sys.argv[1:]
    libfuzzer_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=1000, help="inputs to try before printing the summary")
    parser.add_argument("--crashes", type=Path, help="folder for the input of each distinct defect")
    parser.add_argument("--replay", type=Path, help="run one saved input and raise its violation")
    parser.add_argument("--seeds", type=int, default=32, help="random inputs in the starting corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of those inputs")
    args = parser.parse_args(argv)
    target = TARGETS[args.target]
    outcomes: Counter = Counter()
    defects: dict[str, dict] = {}
    inputs = 0
    current: list[bytes] = [b""]

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def body(case):
        try:
            outcomes[run_case(target, case).kind] += 1
        except ContractViolation as violation:
            if args.replay:
                raise
            outcomes["violations"] += 1
            entry = defects.setdefault(violation.signature, {"count": 0, "detail": violation.detail[:300]})
            entry["count"] += 1
            if args.crashes and entry["count"] == 1:
                args.crashes.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha1(violation.signature.encode()).hexdigest()[:12]
                (args.crashes / f"{args.target}-{name}.bin").write_bytes(current[0])

    if args.replay:
        body.hypothesis.fuzz_one_input(args.replay.read_bytes())
        print(json.dumps({"target": args.target, "replayed": str(args.replay), **outcomes}))
        return

    def summary() -> dict:
        cases = sum(outcomes[k] for k in ("ok", "rejected", "violations"))
        return {"target": args.target, "inputs": inputs, "cases": cases, "ok": outcomes["ok"], "rejected": outcomes["rejected"],
                "violations": outcomes["violations"], "distinct": len(defects), "defects": defects}

    def one_input(data: bytes) -> None:
        nonlocal inputs
        current[0] = data
        body.hypothesis.fuzz_one_input(data)
        inputs += 1
        if inputs >= args.runs:
            print(json.dumps(summary()), flush=True)
            os._exit(0)  # libFuzzer would otherwise keep going; nothing else is left to flush

    corpus = []
    if not any(not a.startswith("-") for a in libfuzzer_args):  # no corpus folder given: start from random strings
        corpus = [tempfile.mkdtemp(prefix=f"fuzz-corpus-{args.target}-")]
        rng = random.Random(args.seed)
        for i in range(args.seeds):
            Path(corpus[0], f"seed-{i}").write_bytes(rng.randbytes(4096))
    # -timeout=0: the per-case time limit of fuzz_targets uses SIGALRM, which libFuzzer's own timeout also uses.
    atheris.Setup([sys.argv[0], "-timeout=0", "-max_len=8192", f"-seed={args.seed + 1}", *libfuzzer_args, *corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
