"""Several business days of the whole flow, and the order of top-ups and withholding."""

from pytest_bdd import scenarios

scenarios(".")
