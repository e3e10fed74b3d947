"""Account opening: the real-time API, recovery by serial, ID-card images."""

from pytest_bdd import scenarios

scenarios(".")
