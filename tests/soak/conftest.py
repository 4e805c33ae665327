"""The soak tier (`make test-soak`: bounded for `make test`; `make soak-long`: an hour, every file).

TORTIE_SOAK_SECONDS sets how long the flapping peer runs; TORTIE_ABUSE_FILES how many random and
mutated cluster files go through `tortiectl apply` and the daemons' reload."""
