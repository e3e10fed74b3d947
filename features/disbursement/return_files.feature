@faults
Feature: Return files that come late, never, twice or damaged
  The platform polls download/returns every 20 minutes for the batches it waits on. The
  bank may write a return file late, not at all, twice, or cut short; the money moved
  all the same, and the platform must not act on a damaged copy.

  Background:
    Given the platform's 98 account holds 1000.00 CNY
    And a user 张三 with an active Class III account

  Scenario: a batch number ending in 9xx8 (9008) gets its return file two hours late
    When the platform uploads a disbursement batch B9008 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then no return file for batch B9008 has been written
    And 张三's Class III balance is 100.00
    When the bank clock advances by 2 hours
    Then the return file for batch B9008 reports 1 success and 0 failures

  Scenario: a return file late by the profile's rule
    Given the return file for batch B7 will be late by 40 minutes
    When the platform uploads a disbursement batch B7 paying 张三 100.00
    And the bank clock advances by 1 hour
    Then no return file for batch B7 has been written
    When the bank clock advances by 5 minutes
    Then the return file for batch B7 reports 1 success and 0 failures

  Scenario: the return file never comes, though the money moved
    Given the return file for batch B1 will be never written
    When the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances by 1 day
    Then no return file for batch B1 has been written
    And 张三's Class III balance is 100.00
    And the ledger invariants hold

  Scenario: the return file comes twice with the same records
    Given the return file for batch B1 will be written twice
    When the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 has been written twice with the same records
    And 张三's Class III balance is 100.00

  Scenario: a truncated return file fails the codec's trailer check
    Given the return file for batch B1 will be truncated
    When the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 is refused by the codec with code 4002

  Scenario: a return file short of a record does not add up
    Given a user 李四 with an active Class III account
    And the return file for batch B1 will be short of one record
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 50.00
    And the bank clock advances by 25 minutes
    Then the return file for batch B1 lists fewer records than its header counts
