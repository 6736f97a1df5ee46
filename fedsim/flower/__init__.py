"""fedsim on Flower: the apps, the runtimes they run on, and each run's bookkeeping.

`apps/` holds the ServerApp and the ClientApp (what `pyproject.toml` names for `flwr run`),
`runtimes/` what runs them (Ray, a loopback deployment, an in-process grid), and
`bookkeeping/` what every round ends with (evaluation, records, checkpoints, progress).
`simulation` launches a scenario's apps in this process. The strategy wrappers the
ServerApp and the auditor share live in `fedsim.strategies`.
"""
