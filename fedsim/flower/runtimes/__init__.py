"""Where fedsim's apps run, and what stops a run whose runtime fails: Ray (joined or
started), a Ray cluster or a Flower deployment on loopback, an in-process grid, and the
fault switch tests use."""
