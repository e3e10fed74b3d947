"""Batch withholding: per-record failures and the order of top-ups and consumption."""

from pytest_bdd import scenarios

scenarios(".")
