"""The platform's balance checks against the bank, with and without a discrepancy."""

from pytest_bdd import scenarios

scenarios(".")
