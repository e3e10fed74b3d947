Feature: Balance checks: the platform's books against the bank's
  Per user the platform checks its journal (opening + credits - debits = balance) and the
  bank's Class III balance against its own figure: the user's cash plus rides not yet
  withheld (that money is still in the user's bank account). Money moved at the bank
  without the platform is reported with the user and both figures.

  Background:
    Given the platform's 98 account holds 10.00 CNY
    And 张三 is a platform user with an active Class III account
    And 李四 is a platform user with an active Class III account
    And 张三 tops up 100.00 by WeChat Pay
    And 李四 tops up 60.00 by WeChat Pay
    And the platform settles the top-ups of T the next morning in batch B1

  Scenario: the books agree, with a ride not yet withheld still in the user's bank account
    When 张三 spends 30.00 on a ride
    And the platform checks the balances
    Then the balance check finds no difference
    And 张三 has 70.00 of cash at the platform
    And 张三's Class III balance is 100.00

  @faults
  Scenario Outline: money moved at the bank behind the platform's back is reported (<what>)
    When <event>
    And the platform checks the balances
    Then the balance check reports 张三: the bank holds <bank>, the platform expects 100.00

    Examples:
      | what    | event                                                                   | bank   |
      | deposit | the bank credits 5.00 to 张三's account behind the platform's back      | 105.00 |
      | refund  | 张三 is refunded 20.00 by the bank directly, behind the platform's back | 80.00  |
