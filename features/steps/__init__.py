"""The step library shared by the English and Chinese feature files.

* :mod:`features.steps.types`: typed parameters (money in fen, moments like ``T+1 10:00``);
* :mod:`features.steps.people`: seeded faker identities with valid five elements;
* :mod:`features.steps.context`: the scenario context fixture's class;
* :mod:`features.steps.account_steps`, :mod:`~features.steps.batch_steps`,
  :mod:`~features.steps.clock_steps`, :mod:`~features.steps.money_steps`: the steps.
* :mod:`features.steps.platform_world` (the platform client of a scenario, its types),
  :mod:`~features.steps.platform_topup_steps`, :mod:`~features.steps.platform_settlement_steps`,
  :mod:`~features.steps.platform_check_steps` (with :mod:`~features.steps.platform_days`):
  the platform's side, played with the platform client.

``features/STEPS.md`` lists every phrase (``python -m features.catalogue`` writes it).
"""

STEP_MODULES = (
    "features.steps.account_steps",
    "features.steps.batch_steps",
    "features.steps.clock_steps",
    "features.steps.money_steps",
    "features.steps.platform_topup_steps",
    "features.steps.platform_settlement_steps",
    "features.steps.platform_check_steps",
)
