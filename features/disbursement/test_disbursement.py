"""Batch disbursement: outcomes per record, whole-file rejections, return-file faults."""

from pytest_bdd import scenarios

scenarios(".")
