"""Property-based fuzzing of every reader: each hostile case ends in a correct result or one clear error.

The strategies and the contract live in ``tools/fuzz_targets.py``; ``tools/fuzz_report.py`` runs the same
targets for thousands of cases. Here each target runs a fixed, derandomised set of cases so the suite stays
fast and deterministic; a contract violation fails the test with its kind, location and message.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, run_case

EXAMPLES = 150


def _fuzz_test(name: str):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def run(case):
        run_case(target, case)

    return run


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reader_meets_the_contract_on_hostile_input(name):
    _fuzz_test(name)()


def test_the_contract_catches_a_reader_that_crashes_deep_in_a_dependency(tmp_path):
    """The harness itself can fail: an error raised inside numpy, not by spikescale, is a violation."""
    import numpy as np
    from fuzz_targets import ContractViolation, check

    from spikescale.data.idx import read_idx

    with pytest.raises(ContractViolation, match="crash"):
        check(lambda: np.zeros(3).reshape(7), lambda result: None, ["file.bin"])
    with pytest.raises(ContractViolation, match="wrong result"):
        check(lambda: float("nan"), lambda result: _finite(result), ["file.bin"])
    missing = tmp_path / "missing.idx"
    assert check(lambda: read_idx(missing), lambda result: None, ["missing.idx"]).kind == "rejected"


def _finite(value):
    assert value == value, "result: NaN returned"
