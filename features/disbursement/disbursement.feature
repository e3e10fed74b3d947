Feature: Batch disbursement (代发) from the 98 account to Class III accounts
  On T+1 the platform uploads one record per reconciled top-up over SFTP. The bank
  processes the file 10 minutes later and writes the return file 15 minutes after that:
  every record succeeds or fails with a code, and only successes move money.

  Background:
    Given the platform's 98 account holds 5000.00 CNY
    And a user 张三 with an active Class III account
    And a user 李四 with an active Class III account and 500.00 CNY

  Scenario: every record succeeds
    When the bank clock advances to T+1 10:00
    And the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 50.00
    And the bank clock advances by 10 minutes
    Then no return file for batch B1 has been written
    When the bank clock advances by 15 minutes
    Then the return file for batch B1 reports 2 successes and 0 failures
    And every record of batch B1 succeeded
    And 张三's Class III balance is 100.00
    And 李四's Class III balance is 550.00
    And the platform's 98 account balance is 4850.00
    And the ledger invariants hold

  Scenario Outline: a magic amount makes a record fail with <code> (<why>)
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 <amount>
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 1 success and 1 failure
    And the record for 张三 in batch B1 succeeded
    And the record for 李四 in batch B1 failed with code <code>
    And 李四's Class III balance is 500.00
    And the platform's 98 account balance is 4900.00

    Examples:
      | amount | code | why                  |
      | 0.08   | 3008 | insufficient balance |
      | 0.09   | 3009 | no such account      |
      | 0.13   | 3013 | over limit           |
      | 0.17   | 3017 | account frozen       |
      | 0.18   | 3018 | account closed       |
      | 0.28   | 3028 | system busy          |
      | 0.31   | 3031 | name mismatch        |
      | 0.57   | 3057 | bad account status   |

  Scenario Outline: the bank's own state makes a record fail with <code> (<why>)
    Given a user 王五 with an active Class III account
    And <situation>
    When the platform uploads a disbursement batch B1 paying 张三 100.00, 王五 30.00 and 李四 20.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 2 successes and 1 failure
    And the record for 王五 in batch B1 failed with code <code>
    And the record for 李四 in batch B1 succeeded
    And the platform's 98 account balance is 4880.00
    And the ledger invariants hold

    Examples:
      | why                  | situation                                                         | code |
      | frozen               | 王五's account is frozen                                          | 3017 |
      | closed               | 王五's account is closed                                          | 3018 |
      | unknown account      | the platform has a wrong account number on file for 王五          | 3009 |
      | name mismatch        | the platform has 王五's account under the name 王武               | 3031 |
      | a rule of the bank   | the bank will fail records for the account of 王五 with code 3028 | 3028 |

  Scenario: a credit that would take the balance above the 2,000.00 cap fails 3014
    Given a user 王五 with an active Class III account and 1950.00 CNY
    When the platform uploads a disbursement batch B1 paying 王五 50.00 and 李四 50.01
    And the platform uploads a disbursement batch B2 paying 王五 0.01
    And the bank clock advances by 25 minutes
    Then the record for 王五 in batch B1 succeeded
    And the record for 王五 in batch B2 failed with code 3014
    And 王五's Class III balance is 2000.00

  Scenario: images not approved: the record fails 3061 and the rest goes through
    Given a user 赵六 who applied for an account but sent no ID-card images
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 赵六 30.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 1 success and 1 failure
    And the record for 赵六 in batch B1 failed with code 3061
    And 张三's Class III balance is 100.00

  Scenario: the 98 account runs out of money part-way through the file
    Given a user 王五 with an active Class III account
    When the platform uploads a disbursement batch B1 paying 张三 1990.00, 王五 1990.00 and 李四 1490.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 reports 2 successes and 1 failure
    And the record for 李四 in batch B1 failed with code 3008
    And the platform's 98 account balance is 1020.00
    And the ledger invariants hold
