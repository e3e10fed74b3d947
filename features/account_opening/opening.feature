Feature: Opening a Class III account through the real-time API
  The platform sends the five elements of a new user (name, ID number, mobile, bound
  card and its kind). The bank checks them in that order, answers the first problem
  with its own code, and opens the account waiting for the ID-card images.

  Scenario: a valid application opens an account that waits for the ID-card images
    Given a user 张三 who has not applied for an account yet
    When 张三 applies for a Class III account
    Then the account is opened and waits for ID-card images
    And 张三 holds 1 Class III account
    And 张三's Class III balance is 0.00

  Scenario Outline: an application with a bad <element> is refused with <code> (<why>)
    Given a user 李四 who has not applied for an account yet
    When 李四 applies for a Class III account with <element> "<value>"
    Then the opening is refused with code <code>
    And 李四 holds 0 Class III accounts

    Examples:
      | element   | value               | code | why                               |
      | name      | Li Si               | 2001 | Latin letters                     |
      | name      | ·李四               | 2001 | starts with a middle dot          |
      | ID number | 31010119900307123   | 2002 | 17 characters                     |
      | ID number | 310101199003071231  | 2003 | wrong check character             |
      | ID number | 310101199002301233  | 2004 | 30 February                       |
      | ID number | 990101199003071237  | 2004 | no such province                  |
      | ID number | 310101201006011233  | 2005 | 15 years old                      |
      | mobile    | 12800138000         | 2006 | no mainland mobile starts with 12 |
      | bound card | 6222020000000000421 | 2007 | Luhn check fails                  |
      | bound card | 4111111111111111    | 2007 | not a UnionPay card               |
      | card kind | DEBIT_II            | 2008 | Class II debit cards cannot bind  |
      | bound card | 6299900000000123458 | 2011 | the card belongs to someone else  |
      | mobile    | 19900001234         | 2012 | blacklisted mobile number         |

  Scenario: a sixth account for the same ID number is refused
    Given 王五 already holds 5 Class III accounts
    When 王五 applies for a Class III account
    Then the opening is refused with code 2010
    And 王五 holds 5 Class III accounts
