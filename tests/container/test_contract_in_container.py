"""The contract suite's server-facing tests, run unchanged against the image.

tests/contract/test_schemathesis.py checks a running bank against
``contracts/bank-api.openapi.yaml``: generated requests, malformed bodies, the signature
over the path as sent, the valid account lifecycle, then the ledger invariants. Imported
here, its tests use this directory's ``bank_server`` / ``signed_session`` / ``admin_session``
(conftest.py): a container of the default profile instead of a local process, with the
control API behind the container's token. The order below is the original's: the
invariants check runs last.
"""

from __future__ import annotations

from tests.contract import test_schemathesis as contract

# Assigned one by one: pytest collects in this order.
test_generated_requests_conform = contract.test_generated_requests_conform
test_malformed_bodies_get_the_documented_error = contract.test_malformed_bodies_get_the_documented_error
test_signature_covers_the_path_as_sent = contract.test_signature_covers_the_path_as_sent
test_valid_account_lifecycle_conforms = contract.test_valid_account_lifecycle_conforms
test_ledger_invariants_hold_after_the_run = contract.test_ledger_invariants_hold_after_the_run
