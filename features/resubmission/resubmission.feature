Feature: Failed records are fixed and re-submitted until every record of the batch has succeeded
  The bank answers a disbursement batch with a return file; a failed record leaves the
  top-up in transit. Operators fix the cause (the ID-card images, the bank's freeze), and
  the platform re-submits the failures in a new batch, under new serials that name the
  original, until every original record has succeeded. While the cause is still there
  (as the bank's account view shows), nothing is sent again, and no record may ever
  succeed twice.

  Background:
    Given the platform's 98 account holds 10.00 CNY
    And 张三 is a platform user with an active Class III account

  Scenario: images never approved: the record fails 3061, waits for the images, then succeeds
    Given 李四 is a platform user whose ID-card images were never sent
    When 张三 tops up 100.00 by WeChat Pay
    And 李四 tops up 50.00 by WeChat Pay
    And the bank clock advances to T+1 09:30
    And the platform reconciles WeChat's bill of T
    And an operator approves the reconciliation of T
    And the bank clock advances to T+1 10:05
    And the platform disburses the top-ups of T as batch B1
    And the platform polls for return files every 20 minutes until every batch is answered
    Then the platform recorded 李四's record in batch B1 as failed with code 3061
    And 张三 has 100.00 of cash at the platform
    And the platform holds 50.00 in transit for 李四
    When the platform tries to re-submit the failed records
    Then the re-submission sends nothing and holds 李四's record
    When the platform sends 李四's ID-card images
    And the bank clock advances by 30 minutes
    And the platform re-submits the failed records as batch B2
    And the platform polls for return files every 20 minutes until every batch is answered
    Then every record of batch B1 has succeeded
    And no record succeeded twice
    And 李四 has 50.00 of cash at the platform
    And 李四's Class III balance is 50.00
    And the ledger invariants hold

  Scenario: the bank freezes an account: the record fails 3017 until the freeze is lifted
    Given 王五 is a platform user with an active Class III account
    When 张三 tops up 80.00 by WeChat Pay
    And 王五 tops up 20.00 by WeChat Pay
    And the bank freezes 王五's account for a risk review
    And the platform settles the top-ups of T the next morning in batch B1
    Then the platform recorded 王五's record in batch B1 as failed with code 3017
    When the platform tries to re-submit the failed records
    Then the re-submission sends nothing and holds 王五's record
    When the bank lifts the freeze on 王五's account
    And the platform re-submits the failed records as batch B2
    And the platform polls for return files every 20 minutes until every batch is answered
    Then every record of batch B1 has succeeded
    And no record succeeded twice
    And the platform's batch B2 pays 王五 20.00
    And 王五's Class III balance is 20.00
    And 张三's Class III balance is 80.00
