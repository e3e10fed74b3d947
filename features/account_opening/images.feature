Feature: ID-card images decide when an account becomes active
  After the opening, the platform uploads both sides of the ID card over SFTP. The bank
  reviews them 30 minutes after the first one arrives: both sides readable -> ACTIVE;
  otherwise the images are rejected with a reason and the account keeps waiting. Money
  cannot reach an account whose images are not approved (3061).

  Background:
    Given a user 张三 who applied for an account but sent no ID-card images
    And the platform's 98 account holds 1000.00 CNY

  Scenario: both sides uploaded and approved after the review delay
    When 张三's ID-card images are uploaded
    And the bank clock advances by 29 minutes
    Then 张三's account is waiting for ID-card images
    When the bank clock advances by 1 minute
    Then 张三's account is active

  Scenario: images never sent: the account keeps waiting and a disbursement fails 3061
    When the bank clock advances by 1 day
    And the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then 张三's account is waiting for ID-card images
    And the record for 张三 in batch B1 failed with code 3061
    And 张三's Class III balance is 0.00

  Scenario: only the front side uploaded: the images are rejected
    When only the front of 张三's ID card is uploaded
    And the bank clock advances by 30 minutes
    Then 张三's ID-card images are rejected

  Scenario: unreadable images are rejected
    When 张三's ID-card images are uploaded unreadable
    And the bank clock advances by 30 minutes
    Then 张三's ID-card images are rejected

  Scenario: images approved late: the next batch after approval succeeds
    When the platform uploads a disbursement batch B1 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then the record for 张三 in batch B1 failed with code 3061
    When 张三's ID-card images are uploaded
    And the bank clock advances by 30 minutes
    And the platform uploads a disbursement batch B2 paying 张三 100.00
    And the bank clock advances by 25 minutes
    Then the record for 张三 in batch B2 succeeded
    And 张三's Class III balance is 100.00
    And the ledger invariants hold
