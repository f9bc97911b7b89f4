"""Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (read by tests/conftest.py).

* ``dev`` (the default, also under ``CI=true`` unless asked otherwise): Hypothesis's own defaults
  (100 examples, random, the example database in ``.hypothesis/``), for a quick local run.
* ``ci`` (``.ci/run`` exports ``HYPOTHESIS_PROFILE=ci``): ``CI_FACTOR`` times the examples, and
  *not* derandomized, so that every CI run explores new inputs instead of replaying the same
  ones. A failure prints the ``@reproduce_failure`` blob that replays it locally. No health check
  is suppressed by the profile; the few tests that suppress one say why, next to the suppression.
  ``deadline=None``: a shared 2-core runner's timing says nothing about correctness, and a
  deadline would turn its noise into flaky failures. ``database=None``: a CI checkout is thrown
  away after the run.
* ``mutate`` (``make mutate``): derandomized and without deadline, see below.

Hypothesis would otherwise load its built-in ``ci`` profile by itself under ``CI=true``, which is
derandomized: always the same examples. Hence the explicit choice here.

A test that sets its own ``max_examples`` (the budget fits its cost) passes it through
:func:`examples`, so that the ``ci`` profile scales it too.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
CI_FACTOR = 3

settings.register_profile("dev", max_examples=100, derandomize=False)
settings.register_profile(
    "ci",
    max_examples=100 * CI_FACTOR,
    derandomize=False,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=(),
)
# `make mutate`: the same examples for every mutant (a kill is reproducible, not luck), and no
# deadline: mutmut's trampolines slow every call, and a missed deadline is not a kill.
settings.register_profile("mutate", derandomize=True, deadline=None, database=None)


def profile_name() -> str:
    return os.environ.get(PROFILE_ENV) or "dev"


def load() -> str:
    """Load the profile the environment asks for; return its name."""
    name = profile_name()
    settings.load_profile(name)  # an unknown name is an error, not a silent default
    return name


def examples(budget: int) -> int:
    """A test's own ``max_examples``, scaled by the ``ci`` profile."""
    return budget * CI_FACTOR if profile_name() == "ci" else budget
