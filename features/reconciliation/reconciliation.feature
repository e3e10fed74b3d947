Feature: T+1 reconciliation of WeChat's bill (对账)
  From 09:00 on T+1 the platform downloads WeChat's bill for T and matches it with its own
  orders. A paid order the platform never credited (掉单) is queried and credited; anything
  else that differs is held for review and kept out of the disbursement. An operator
  approves the day before the platform disburses it. Bill dates follow WeChat's own day
  boundary, which the platform must share.

  Background:
    Given the platform's 98 account holds 10.00 CNY
    And 张三 is a platform user with an active Class III account
    And 李四 is a platform user with an active Class III account

  Scenario: a clean day: the paid orders match, the unpaid one is nowhere, one batch pays them
    When 张三 tops up 100.00 by WeChat Pay
    And 李四 tops up 50.00 by WeChat Pay
    And 李四 orders a top-up of 30.00 but never pays
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then WeChat's bill of T lists 张三 100.00 and 李四 50.00
    And the reconciliation of T finds no difference
    When an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the platform polls for return files every 20 minutes until every batch is answered
    Then the approval of T is recorded with who and when
    And the platform's batch B1 pays 张三 100.00 and 李四 50.00
    And every record of batch B1 has succeeded
    And the platform's 98 account balance is 9.10
    And the ledger invariants hold

  @faults
  Scenario: a dropped order is found in the bill, credited once and disbursed (掉单)
    When 张三 tops up 100.00 by WeChat Pay and the notification is dropped
    And 李四 tops up 50.00 by WeChat Pay
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then the reconciliation of T shows 张三's top-up of 100.00 as dropped, resolved
    And the reconciliation of T shows 李四's top-up of 50.00 as matched, ok
    When the platform reconciles WeChat's bill of T
    Then the platform holds 100.00 in transit for 张三
    When an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the platform polls for return files every 20 minutes until every batch is answered
    Then the platform's batch B1 pays 张三 100.00 and 李四 50.00
    And 张三's Class III balance is 100.00

  @faults
  Scenario: the platform recorded one amount but WeChat charged another: held, nothing credited or disbursed
    Given the platform recorded 张三's top-up as 100.00 but WeChat charged 90.00 for it
    When 李四 tops up 50.00 by WeChat Pay
    Then the platform refused WeChat's notifications for 张三's top-up of 100.00 as an amount mismatch
    And nothing was credited for 张三's top-up of 100.00
    When the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then WeChat's bill of T lists 张三 90.00 and 李四 50.00
    And the reconciliation of T lists 张三's top-up of 100.00 as an amount mismatch with WeChat's 90.00, held for review
    And the reconciliation of T shows 李四's top-up of 50.00 as matched, ok
    And nothing was credited for 张三's top-up of 100.00
    When an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the platform polls for return files every 20 minutes until every batch is answered
    Then the platform's batch B1 pays 李四 50.00
    And every record of batch B1 has succeeded
    And 张三's Class III balance is 0.00
    And the platform holds 0.00 in transit for 张三
    And the platform's 98 account balance is 99.16
    And the ledger invariants hold

  Scenario: a refund made on WeChat's side is held for review
    When 张三 tops up 100.00 by WeChat Pay
    And WeChat refunds 30.00 of 张三's order of 100.00
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then the reconciliation of T shows 张三's top-up of 100.00 as refunded on the channel, held for review

  Scenario: payments at 23:59 and 00:01 go to the bills of their own days (日切)
    When 张三 tops up 100.00 by WeChat Pay at T 23:59
    And 张三 tops up 50.00 by WeChat Pay at T+1 00:01
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then WeChat's bill of T lists 张三 100.00
    And the reconciliation of T finds no difference
    When the bank clock advances to T+2 09:30
    And the platform reconciles WeChat's bill of T+1
    Then WeChat's bill of T+1 lists 张三 50.00
    And the reconciliation of T+1 finds no difference

  @faults
  Scenario: WeChat's day ends at 23:00 but the platform's at midnight: a 23:30 payment is held, then found
    Given WeChat closes its day at 23:00 while the platform counts days from 00:00
    When 李四 tops up 50.00 by WeChat Pay
    And 张三 tops up 100.00 by WeChat Pay at T 23:30
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then WeChat's bill of T lists 李四 50.00
    And the reconciliation of T shows 张三's top-up of 100.00 as platform-only, held for review
    When an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the bank clock advances to T+2 09:30
    And the platform reconciles WeChat's bill of T+1
    Then WeChat's bill of T+1 lists 张三 100.00
    And the reconciliation of T+1 shows 张三's top-up of 100.00 as matched, ok
    And the reconciliation of T shows 张三's top-up of 100.00 as platform-only, resolved
    When an operator approves the reconciliation of T+1
    And the bank clock advances to T+2 10:05
    And the platform disburses the top-ups of T+1 as batch B2
    And the platform polls for return files every 20 minutes until every batch is answered
    Then the platform's batch B1 pays 李四 50.00
    And the platform's batch B2 pays 张三 100.00
    And 张三's Class III balance is 100.00
    And 张三 has 100.00 of cash at the platform
