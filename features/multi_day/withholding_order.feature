Feature: On T+1 the top-ups go first, then the consumption is withheld
  Rides are paid from the user's cash; the platform withholds them from the Class III
  account in a DK batch the next day, but only once that day's top-ups have been
  disbursed and their batch answered, so the money the rides spend is already there.

  Scenario: the withholding is refused until the day's top-up batch is answered, accepted after
    Given the platform's 98 account holds 10.00 CNY
    And 张三 is a platform user with an active Class III account
    And 张三 tops up 200.00 by WeChat Pay
    And the platform settles the top-ups of T the next morning in batch B1
    When 张三 spends 30.00 on a ride
    And 张三 tops up 50.00 by WeChat Pay
    And the bank clock advances to T+2 09:30
    And the platform reconciles WeChat's bill of T+1
    And an operator approves the reconciliation of T+1
    And the platform withholds the consumption of T+1
    Then the withholding is refused: the top-ups of T+1 come first
    When the bank clock advances to T+2 10:05
    And the platform disburses the top-ups of T+1 as batch B2
    And the platform withholds the consumption of T+1
    Then the withholding is refused: the top-ups of T+1 come first
    When the platform polls for return files every 20 minutes until every batch is answered
    And the platform withholds the consumption of T+1
    Then the withholding goes out as batch B3
    When the platform polls for return files every 20 minutes until every batch is answered
    Then every record of batch B3 has succeeded
    And 张三's Class III balance is 220.00
    And the platform's settlement account balance is 30.00
    And 张三 has 220.00 of cash at the platform
