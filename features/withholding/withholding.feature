Feature: Batch withholding (代扣) from Class III accounts into the settlement account
  Spending the balance is platform income: the platform uploads a withholding file built
  from its consumption ledger and the bank debits each Class III account into the
  platform's settlement account, with the same return-file loop as disbursements.

  Background:
    Given a user 张三 with an active Class III account and 300.00 CNY

  Scenario: every record succeeds
    Given a user 李四 with an active Class III account and 100.00 CNY
    When the platform uploads a withholding batch B1 charging 张三 120.00 and 李四 100.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 2 successes and 0 failures
    And 张三's Class III balance is 180.00
    And 李四's Class III balance is 0.00
    And the platform's settlement account balance is 220.00
    And 张三 has 1880.00 of today's outflow limit left

  Scenario: a charge above the balance fails 3008 and takes nothing
    Given a user 李四 with an active Class III account and 100.00 CNY
    When the platform uploads a withholding batch B1 charging 张三 50.00 and 李四 100.01
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 1 success and 1 failure
    And the record for 李四 in batch B1 failed with code 3008
    And 李四's Class III balance is 100.00
    And the platform's settlement account balance is 50.00

  Scenario Outline: the account's state makes a record fail with <code> (<why>)
    Given a user 王五 with an active Class III account and <balance> CNY
    And <situation>
    When the platform uploads a withholding batch B1 charging 张三 50.00 and 王五 10.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 1 success and 1 failure
    And the record for 王五 in batch B1 failed with code <code>
    And 王五's Class III balance is <balance>
    And the platform's settlement account balance is 50.00
    And the ledger invariants hold

    Examples:
      | why                     | balance | situation                             | code |
      | frozen                  | 80.00   | 王五's account is frozen              | 3017 |
      | closed                  | 0.00    | 王五's account is closed              | 3018 |
      | no withholding agreement | 80.00  | 王五 has no withholding agreement     | 3043 |

  Scenario: on T+1 the top-ups are credited first, then the consumption is withheld
    Given a user 王五 with an active Class III account
    And the platform's 98 account holds 1000.00 CNY
    When the bank clock advances to T+1 09:00
    And the platform uploads a disbursement batch B1 paying 王五 80.00
    And the platform uploads a withholding batch B2 charging 王五 60.00
    And the bank clock advances by 25 minutes
    Then every record of batch B1 succeeded
    And every record of batch B2 succeeded
    And 王五's Class III balance is 20.00
    And the platform's settlement account balance is 60.00
    And the platform's 98 account balance is 920.00
    And the ledger invariants hold
