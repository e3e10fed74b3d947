"""Gherkin scenarios: the step library, the scenario context and order shuffling.

The steps are defined in ``features/steps/`` and imported here so every feature module
below this directory sees them; the ``platform_*`` steps play the platform with the
platform client (the plugin's ``platform_client`` fixture, wrapped by ``platform_world``).
The simulator comes from the banksim pytest plugin (``simulator.testing.plugin``:
``--banksim=embedded|url|container``).

``--shuffle-seed N`` runs the scenarios in a seeded random order and ``--shuffle-subset K``
keeps only K of them (chosen with the same seed): scenarios must pass in any order and
alone, since each starts from a reset bank.
"""

from __future__ import annotations

import random

import pytest

from features.steps.account_steps import *  # noqa: F403 (step definitions are fixtures)
from features.steps.batch_steps import *  # noqa: F403
from features.steps.clock_steps import *  # noqa: F403
from features.steps.context import ScenarioContext
from features.steps.money_steps import *  # noqa: F403
from features.steps.platform_check_steps import *  # noqa: F403
from features.steps.platform_settlement_steps import *  # noqa: F403
from features.steps.platform_topup_steps import *  # noqa: F403
from features.steps.platform_world import platform_world  # noqa: F401 (a fixture)
from simulator.testing.bank_api import BankApiClient
from simulator.testing.control import ControlClient
from simulator.testing.handle import SimulatorHandle


@pytest.fixture
def scenario_context(banksim: SimulatorHandle, banksim_reset: ControlClient, bank_api: BankApiClient,
                     request: pytest.FixtureRequest) -> ScenarioContext:
    """A fresh bank and what this scenario makes in it (people, batches)."""
    return ScenarioContext(banksim, banksim_reset, bank_api, request)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("features", "Gherkin scenarios")
    group.addoption("--shuffle-seed", type=int, default=None, metavar="N",
                    help="run the scenarios under features/ in a random order seeded by N")
    group.addoption("--shuffle-subset", type=int, default=None, metavar="K",
                    help="with --shuffle-seed: keep only K scenarios, chosen at random")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seed = config.getoption("shuffle_seed")
    if seed is None:
        return
    rng = random.Random(seed)
    scenarios = [item for item in items if "features" in item.path.parts]
    others = [item for item in items if "features" not in item.path.parts]
    rng.shuffle(scenarios)
    subset = config.getoption("shuffle_subset")
    if subset is not None and subset < len(scenarios):
        dropped, scenarios = scenarios[subset:], scenarios[:subset]
        config.hook.pytest_deselected(items=dropped)
    items[:] = others + scenarios
