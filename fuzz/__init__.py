"""Coverage-guided fuzzing (atheris) of everything that reads untrusted input.

`fuzz/targets/` holds one module per target; `fuzz/run.py` runs them (`make fuzz`, and a short
bounded run inside `make test`); `fuzz/oracle.py` says which outcomes are allowed. See
docs/reliability.md for what each target checks and what the campaigns reached.
"""
