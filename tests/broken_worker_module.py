"""A worker module that fails while it is imported, as a freshly deployed module reading a
setting that is missing would (tests/test_poison_rows.py). Never imported by the test runner's
discovery (its name does not start with "test")."""

raise RuntimeError("BILLING_API_KEY is missing from the settings")
