"""Account opening against a real bank: lost, slow and busy answers never open two accounts."""

from __future__ import annotations

import pytest

from platform_client.errors import BankApiError
from platform_client.onboarding import open_account, refresh_account, register_user, upload_images
from tests.platform_client.bank import Bank, identity
from tests.platform_client.conftest import ContextFactory

pytestmark = pytest.mark.network


@pytest.mark.parametrize("serial", ["OPEN-LOST-0001", "OPEN-SLOW-0001", "OPEN-BUSY-0001"])
def test_a_lost_slow_or_busy_answer_still_gives_exactly_one_account(
        bank: Bank, make_ctx: ContextFactory, serial: str) -> None:
    ctx = make_ctx(http_timeout_s=1.0)
    person = identity(1)
    register_user(ctx, "u1", person)
    account_no = open_account(ctx, "u1", serial)
    assert open_account(ctx, "u1") == account_no  # already open: no second call
    # The bank was reset for this test: every Class III account it holds is this person's.
    assert [a["account_no"] for a in bank.accounts()] == [account_no]
    assert ctx.store.scalar("SELECT open_serial FROM users WHERE user_id = 'u1'") == serial


def test_images_are_reviewed_on_the_bank_clock(bank: Bank, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    register_user(ctx, "u2", identity(2))
    open_account(ctx, "u2")
    assert refresh_account(ctx, "u2")["status"] == "PENDING_IMAGES"
    upload_images(ctx, "u2")
    assert refresh_account(ctx, "u2")["image_status"] == "IN_REVIEW"
    bank.advance("30m")
    account = refresh_account(ctx, "u2")
    assert (account["status"], account["image_status"]) == ("ACTIVE", "APPROVED")


def test_a_rejected_opening_is_recorded_with_its_code(bank: Bank, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    register_user(ctx, "u3", {**identity(3), "mobile": "19900001234"})  # blacklisted (magic value)
    with pytest.raises(BankApiError) as caught:
        open_account(ctx, "u3")
    assert caught.value.bank_code == "2012"
    row = ctx.store.one("SELECT account_no, open_code FROM users WHERE user_id = 'u3'")
    assert row is not None and (row["account_no"], row["open_code"]) == (None, "2012")
