"""One judgement of leakage for every reader: records → facts → verdicts.

`read_record` says what one leakage record shows (scores, whatever its status; or why
it has none), `leakage_facts` condenses a run's records per series and audited round,
and `verdicts` turns those into sentences and data (`report/verdicts.json`). The live
console line, the report's verdict, curves and round table, and the tables of
EXPERIMENTS.md all read these, so no reader can show less leakage than the records hold.
"""

from __future__ import annotations

from fedsim.judgement.criteria import IMAGE_RULE, ROW_RULE, image_recovered, row_recovered
from fedsim.judgement.facts import RoundFacts, SeriesFacts, leakage_facts, round_counts
from fedsim.judgement.reading import Reading, Series, read_record
from fedsim.judgement.verdicts import Verdict, judge, verdicts, write_verdicts

__all__ = [
    "IMAGE_RULE",
    "ROW_RULE",
    "Reading",
    "RoundFacts",
    "Series",
    "SeriesFacts",
    "Verdict",
    "image_recovered",
    "judge",
    "leakage_facts",
    "read_record",
    "round_counts",
    "row_recovered",
    "verdicts",
    "write_verdicts",
]
