@faults
Feature: Recovering an opening whose answer never arrived
  The bank may open the account and the answer may still not reach the platform: the
  connection drops, or the answer comes after the platform stopped waiting. The platform
  recovers by querying the request serial, and sending the same serial again never opens
  a second account.

  Scenario: the answer is lost; the serial query finds the account
    Given a user 张三 who has not applied for an account yet
    When the platform opens an account for 张三 with serial OPEN-LOST-1 and the answer is lost
    And the platform queries the opening by serial OPEN-LOST-1
    Then the account is opened and waits for ID-card images
    And 张三 holds 1 Class III account

  Scenario: the answer is lost; sending the same serial again answers the same account
    Given a user 张三 who has not applied for an account yet
    When the platform opens an account for 张三 with serial OPEN-LOST-2 and the answer is lost
    And the platform sends the opening for 张三 again with serial OPEN-LOST-2
    Then the answer names the account opened with serial OPEN-LOST-2
    And 张三 holds 1 Class III account

  @slow
  Scenario: the answer is late; the platform gives up, then finds the account by serial
    Given a user 李四 who has not applied for an account yet
    When the platform opens an account for 李四 with serial OPEN-SLOW-1 and gives up after 0.5 seconds
    And the platform queries the opening by serial OPEN-SLOW-1
    Then the account is opened and waits for ID-card images
    And 李四 holds 1 Class III account
