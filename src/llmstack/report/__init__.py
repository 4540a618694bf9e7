"""The report card: one run's stage results gathered into runs/<run>/report.md with PNG curves,
and a sweep's runs compared in runs/<sweep>/sweep.md.

    python -m llmstack.launch report runs/<run> --config '{"report": {...}}'          # `report` rule
    python -m llmstack.launch sweep_report runs/<sweep>/sweep.md runs/<a> runs/<b> --config ...
    llmstack report [--run R]                                                       # regenerate later

gather reads a run (run.json, then each stage folder's meta.json and declared result file);
sections and results render the card; plots draws its PNGs; sweep compares runs. Logs are never
read, and the stage table (llmstack.pipeline) says which stages exist and in what order.
"""

from llmstack.report.gather import RunResults, StageResult, load_run
from llmstack.report.markdown import duration, fenced
from llmstack.report.plots import ema, smoothing
from llmstack.report.sections import stage_cost, write_report
from llmstack.report.sweep import regenerate, varied_settings, write_sweep

__all__ = [
    "RunResults",
    "StageResult",
    "duration",
    "ema",
    "fenced",
    "load_run",
    "regenerate",
    "smoothing",
    "stage_cost",
    "varied_settings",
    "write_report",
    "write_sweep",
]
