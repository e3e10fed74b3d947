Feature: WeChat top-ups as the platform sees them
  A user tops up the balance with WeChat Pay: the platform creates the order, the user
  pays, WeChat notifies the platform's endpoint. The platform credits the top-up once, "in
  transit", and it becomes cash when the bank confirms the T+1 disbursement into the user's
  Class III account. Notifications can be lost, duplicated or late (WeChat's magic order
  suffixes -DROP, -DUP, -LATE), and anyone can post to the endpoint.

  Background:
    Given the platform's 98 account holds 10.00 CNY
    And 张三 is a platform user with an active Class III account

  Scenario: a paid top-up is in transit at once and cash after the T+1 disbursement
    When 张三 tops up 100.00 by WeChat Pay
    Then the platform holds 100.00 in transit for 张三
    And the platform answered 1 notification for 张三's order of 100.00 and credited it once
    And 张三's Class III balance is 0.00
    When the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    And an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the platform polls for return files every 20 minutes until every batch is answered
    Then 张三 has 100.00 of cash at the platform
    And the platform holds 0.00 in transit for 张三
    And 张三's Class III balance is 100.00
    And the platform's 98 account balance is 9.40
    And the ledger invariants hold

  @faults
  Scenario: a dropped notification: nothing is credited on the day, the bill finds it on T+1
    When 张三 tops up 100.00 by WeChat Pay and the notification is dropped
    Then the platform has received no notification for 张三's order of 100.00
    And the platform holds 0.00 in transit for 张三
    And WeChat says 张三's order of 100.00 is SUCCESS
    When the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    Then the reconciliation of T shows 张三's top-up of 100.00 as dropped, resolved
    And the platform holds 100.00 in transit for 张三

  @faults
  Scenario: a notification sent twice is answered twice and credited once
    When 张三 tops up 100.00 by WeChat Pay and the notification is sent twice
    Then the platform answered 2 notifications for 张三's order of 100.00 and credited it once
    And the platform holds 100.00 in transit for 张三

  @faults
  Scenario: a notification 2 hours late is credited when it comes
    When 张三 tops up 100.00 by WeChat Pay and the notification is 2 hours late
    And the bank clock advances by 1 hour
    Then the platform holds 0.00 in transit for 张三
    When the bank clock advances by 2 hours
    Then the platform holds 100.00 in transit for 张三
    And the platform answered 1 notification for 张三's order of 100.00 and credited it once

  Scenario: a notification with a forged signature is refused, recorded, and credits nothing
    When 张三 orders a top-up of 100.00 but never pays
    And a notification with a forged signature says 张三's order of 100.00 was paid
    Then the platform refused the forged notification and recorded it
    And the platform holds 0.00 in transit for 张三
    And WeChat says 张三's order of 100.00 is NOTPAY
    When the bank clock advances to T+1 09:30
    Then WeChat's bill of T lists no payment
