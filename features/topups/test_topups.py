"""WeChat top-ups played by the platform client: notifications, faults, wallet buckets."""

from pytest_bdd import scenarios

scenarios(".")
