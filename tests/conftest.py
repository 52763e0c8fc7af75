"""Shared test configuration: one BLAS/torch thread per worker, hypothesis profiles, fixtures."""

import os

# `pytest -n 2` runs two workers on CI's two cores: each gets one thread, or
# OpenBLAS's spinning threads oversubscribe the machine (tens of times slower).
# Subprocesses started by tests inherit these.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(1)

settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def pytest_configure(config: pytest.Config) -> None:
    try:  # only when torch is installed; importing it here is cheap next to the tests that need it
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
