"""Post-change verification: a pytest-testinfra suite (a pytest plugin, `plugin.py`, and the
bundled checks `test_*.py`) and `runner.run_verification`, which runs it in a subprocess for
`remediate verify` and `apply --verify`."""
