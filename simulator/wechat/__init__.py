"""The fake WeChat Pay channel in front of the bank (API v3 style, served under ``/wechat/v3``).

* :mod:`simulator.wechat.channel` - orders, payments, refunds, bills and T+1 settlement;
  the state lives in the bank's store, the jobs on its scheduler;
* :mod:`simulator.wechat.notifications` - the deliveries of payment notifications and
  their attempts (which are due, what happened);
* :mod:`simulator.wechat.dispatcher` - the async sender of due notifications (httpx);
* :mod:`simulator.wechat.errors` - the v3 error codes.

The pure rules (days, fees, identifiers, fault decisions) are in
:mod:`simulator.domain.wechat_rules`; the bill layout and the signatures are shared with
platform clients in :mod:`contracts.wechat_bill` and :mod:`contracts.wechat_signing`.
"""
