"""Refunds to the bound card, within and beyond the Class III limits."""

from pytest_bdd import scenarios

scenarios(".")
