Feature: A batch file refused as a whole
  The bank validates the whole file before any record: encoding, structure, the header's
  count and total, the batch number. A refused file gets a rejection file with a 4xxx
  code in download/returns at once, and no money moves; files accepted before it are
  processed as usual.

  Background:
    Given the platform's 98 account holds 1000.00 CNY
    And a user 张三 with an active Class III account
    And a user 李四 with an active Class III account

  Scenario: the header's total differs from the records
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 50.00 whose header total says 160.00
    Then the batch file B1 is rejected with code 4004
    And batch B1 moved no money

  Scenario: the header's count differs from the records
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 50.00 whose header count says 3
    Then the batch file B1 is rejected with code 4003
    And batch B1 moved no money

  Scenario: a file in UTF-8 instead of GBK
    When the platform uploads a disbursement batch B1 paying 张三 100.00 and 李四 50.00 encoded in UTF-8
    Then the batch file B1 is rejected with code 4001
    And batch B1 moved no money

  Scenario: a batch number used the day before is refused, the first batch stands
    When the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances to T+1 10:00
    And the platform uploads a disbursement batch B2 with the batch number of B1 paying 李四 50.00
    Then the batch file B2 is rejected with code 4005
    And batch B2 moved no money
    And 张三's Class III balance is 100.00
    And 李四's Class III balance is 0.00
