"""T+1 reconciliation of WeChat's bill by the platform client: differences and the day cutover."""

from pytest_bdd import scenarios

scenarios(".")
