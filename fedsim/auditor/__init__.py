"""The honest-but-curious auditor: a Flower strategy wrapper that attacks and records."""

from __future__ import annotations

from fedsim.auditor.console import AuditSummary
from fedsim.auditor.setup import AuditSetup
from fedsim.auditor.strategy import LeakageAuditor

__all__ = ["AuditSetup", "AuditSummary", "LeakageAuditor"]
