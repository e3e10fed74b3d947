Feature: Several business days of the whole flow, on several profiles and seeds
  Users top up by WeChat (a few never pay), ride on their cash; each next morning the
  platform reconciles, gets the day approved, disburses, polls for returns, re-submits
  what failed and withholds the rides. On the faults-heavy profile WeChat drops,
  duplicates, delays and ignores notifications, the bank fails records as system busy
  (3028) and writes return files late or twice, at seeded rates. Whatever happens, the
  books must agree at the end.

  @slow
  Scenario Outline: <days> days of <users> users on the <profile> profile, seed <seed>: the books agree
    Given the bank runs the <profile> profile with seed <seed>
    And the platform's 98 account holds 100.00 CNY
    And <users> platform users with active Class III accounts
    When <days> business days of top-ups, rides and T+1 settlement go by
    Then the bank's and the platform's books agree
    And the ledger invariants hold

    Examples:
      | profile      | seed     | users | days |
      | default      | 20260105 | 12    | 3    |
      | default      | 7        | 15    | 2    |
      | faults-heavy | 20260105 | 15    | 3    |
      | faults-heavy | 7        | 12    | 2    |
