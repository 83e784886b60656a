"""Fault injection: interrupt training runs at random moments, resume them, compare with an uninterrupted run.

Each trial starts ``spikescale train`` in a subprocess on a small delayed-XOR recipe and interrupts it up to
``--faults`` times — SIGKILL at a random moment, SIGKILL while a checkpoint is being written (when the
temporary checkpoint file appears), Ctrl-C (SIGINT) or SIGTERM — then resumes with ``--resume`` until the run
finishes. The final ``metrics.jsonl`` (without timings) and ``summary.json`` accuracies must equal those of an
uninterrupted run with the same seed.

    python tools/fault_injection.py --trials 10 --faults 3 --out /tmp/faults
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

SETTINGS = ["data.options={steps: 30}", "data.batch_size=32", "data.batches_per_epoch=20", "data.eval_samples=64",
            "train.epochs=6", "train.progress=false", "report.plots=false", "report.gradient_flow=false",
            "report.raster_samples=0"]
KINDS = ("sigkill", "sigkill-during-checkpoint", "sigint", "sigterm")


def command(out: Path, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "spikescale", "train", "xor-delayed-dh", "--out", str(out)]
    for item in SETTINGS:
        args += ["--set", item]
    return args + (["--resume"] if resume else [])


def metrics(run: Path) -> list[dict]:
    drop = {"epoch_seconds", "wall_seconds", "samples_per_second"}
    path = run / "metrics.jsonl"
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()] if path.exists() else []


def inject(process: subprocess.Popen, kind: str, run: Path, rng: random.Random, budget: float) -> bool:
    """Interrupt ``process`` with one fault; False if it finished first."""
    deadline = time.time() + budget
    if kind == "sigkill-during-checkpoint":
        folder = run / "checkpoints"
        while time.time() < deadline and process.poll() is None:
            if folder.exists() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
                process.send_signal(signal.SIGKILL)
                return True
            time.sleep(0.001)
        return False
    time.sleep(rng.uniform(0.5, budget))
    if process.poll() is not None:
        return False
    process.send_signal({"sigkill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[kind])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--faults", type=int, default=3, help="interruptions per trial (at most)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/spikescale-faults"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    start = time.time()
    subprocess.run(command(args.out / "reference", False), check=True, capture_output=True)
    duration = time.time() - start
    reference = metrics(args.out / "reference" / "xor-delayed-dh")
    reference_summary = json.loads((args.out / "reference" / "xor-delayed-dh" / "summary.json").read_text())
    injected, landed, resumes, outcomes = Counter(), Counter(), 0, Counter()
    for trial in range(args.trials):
        out = args.out / f"trial-{trial:03d}"
        run = out / "xor-delayed-dh"
        resume = False
        for _ in range(args.faults):
            kind = rng.choice(KINDS)
            process = subprocess.Popen(command(out, resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            injected[kind] += 1
            if inject(process, kind, run, rng, duration):
                landed[kind] += 1
            process.wait()
            resume = True
            resumes += 1
        final = subprocess.run(command(out, True), capture_output=True, text=True)
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        same = final.returncode == 0 and metrics(run) == reference and summary.get("test_accuracy") == reference_summary["test_accuracy"]
        outcomes["identical to the uninterrupted run" if same else f"DIFFERENT (rc {final.returncode})"] += 1
        print(f"trial {trial}: {'ok' if same else 'MISMATCH'}", flush=True)
    print("\n| fault | injected | landed before the run ended |\n|---|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {injected[kind]} | {landed[kind]} |")
    print(f"\ntrials: {args.trials}, resumes: {resumes}")
    for outcome, count in outcomes.items():
        print(f"{outcome}: {count}")


if __name__ == "__main__":
    main()
