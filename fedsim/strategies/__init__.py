"""Flower strategies both fedsim's ServerApp and the auditor build on.

The wrappers pass every call through to an inner strategy (or grid) and change one hook
(`passthrough`): drop unusable replies (`reply_filter`, with the check the auditor also
applies, `reply_check`), order replies by partition (`ordering`), sample clients by a
seeded draw (`sampling`). `aggregators` holds the strategies a scenario names, which
aggregate, and the state they carry between rounds.
"""
