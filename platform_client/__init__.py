"""The platform side of the T+1 flow: drives the bank and the WeChat channel like a real platform.

It never imports ``simulator``: it speaks HTTP (the signed bank API, WeChat Pay v3) and SFTP
(batch, return and rejection files through ``contracts.codec``) and keeps its own SQLite
store. Each step is a function over a :class:`~platform_client.context.Context`; the command
line is ``platform-client`` (:mod:`platform_client.cli`). See ``docs/platform-client.md``.

Example::

    from platform_client.config import load_config
    from platform_client.context import Context
    from platform_client import onboarding, reconciliation, payouts

    ctx = Context.create(load_config("platform.yaml"))
    onboarding.register_user(ctx, "u1", identity)
    onboarding.open_account(ctx, "u1")
    reconciliation.reconcile(ctx, "2026-01-05")
    reconciliation.approve(ctx, "2026-01-05", by="ops.li")
    payouts.disburse(ctx, "2026-01-05")
"""
