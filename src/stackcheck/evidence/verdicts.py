"""The verdicts a requirement can have: shared by the recorder, the report, the history and
the availability judge, so none of them imports another for five strings."""

PASS, FAIL, SKIPPED, NOT_COVERED = "pass", "fail", "skipped", "not covered"
# a measurement over less than the window its target is defined for (e.g. 30 days of
# availability): neither pass nor fail yet; the value and its projection are shown
PROVISIONAL = "provisional"
VERDICTS = (PASS, FAIL, PROVISIONAL, SKIPPED, NOT_COVERED)
