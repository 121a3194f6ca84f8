"""Experiments: study kinds, specs, the results store, the resumable runner and its backends, exports and the HTML
report.

Nothing is imported until asked for, so `import goodhartlab.lab.store` does not load the report's
matplotlib or the runner's rich.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ResultsStore": "goodhartlab.lab.store", "StudyInfo": "goodhartlab.lab.store",
    "RunSpec": "goodhartlab.lab.runner", "SweepSummary": "goodhartlab.lab.runner",
    "run_sweep": "goodhartlab.lab.runner", "build_report": "goodhartlab.lab.report",
    "load_spec": "goodhartlab.lab.spec", "run_studies": "goodhartlab.lab.study",
    "KINDS": "goodhartlab.lab.registry", "study_kind": "goodhartlab.lab.registry",
    "export_store": "goodhartlab.lab.export", "open_backend": "goodhartlab.lab.backends",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'goodhartlab.lab' has no attribute {name!r}")
