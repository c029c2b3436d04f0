"""The database layer SOAR, the reports and the console share: its tables and migrations, below all of them.

Its engine and the SOAR and console tables are still in `pipeline.soar.db`, `pipeline.soar.models`,
`pipeline.soar.evidence` and `pipeline.console.models` (the layering test counts them in this layer); the
report tables are here, so that `pipeline/migrations/env.py` imports no report code.
"""
