"""Progress of a search on the terminal: bars with ETA and one line per finished trial."""

from __future__ import annotations

import sys
from typing import Any

from hwssl.record import TrialRecord


def _latency_notes(lat: dict[str, Any]) -> str:
    """`` (1 thr, 2.31x faster than dense, noisy: tvm)`` for the one-line trial summary."""
    notes = [f"{lat['threads']} thr"] if lat.get("threads") else []
    ratio = (lat.get("vs_dense") or {}).get("tvm")
    if ratio:
        notes.append(f"{1 / ratio:.2f}x faster than dense" if ratio < 1 else f"{ratio:.2f}x slower than dense")
    if lat.get("noisy"):
        notes.append("noisy: " + ",".join(lat["noisy"]))
    return f" ({', '.join(notes)})" if notes else ""


def budget_text(record: TrialRecord) -> str:
    """``, target 0.5 -> predicted 0.123 ms (0.48x dense)`` for a budget-targeted trial, else ''."""
    x = record.extra
    if x.get("target") is None or x.get("predicted") is None:
        return ""
    units = " ms" if x.get("oracle_units") == "ms" else " MACs" if x.get("oracle_units") == "MACs" else ""
    ratio = x.get("predicted_ratio")
    stalled = ", out of this mix's reach" if (x.get("budget") or {}).get("stalled") else ""
    return (f", target {x['target']:.3g} -> predicted {x['predicted']:.4g}{units}"
            f"{f' ({ratio:.3g}x dense)' if ratio is not None else ''}{stalled}")


class Reporter:
    """Progress bars (study + current trial) with ETA and one line per finished trial."""

    def __init__(self, target: int, done: int, quiet: bool = False) -> None:
        from tqdm import tqdm
        self.quiet = quiet
        enabled = not quiet and sys.stderr.isatty()
        self._tqdm = tqdm
        self.study_bar = tqdm(total=target, initial=done, desc="study", unit="trial", position=0,
                              disable=not enabled, dynamic_ncols=True)
        self.trial_bar = None
        self.enabled = enabled
        self._phase = None

    def say(self, line: str) -> None:
        if not self.quiet:
            self._tqdm.write(line, file=sys.stderr)

    def trial_started(self, number: int, strengths: dict[str, float], label: str = "strengths",
                      precision: str = "fp32") -> None:
        tag = "" if precision == "fp32" else f" [{precision}]"
        self.say(f"[trial {number}]{tag} {label} " + ", ".join(f"{k}={v:.3g}" for k, v in strengths.items()))

    def phase(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        if self._phase != phase or self.trial_bar is None:
            if self.trial_bar is not None:
                self.trial_bar.close()
            self.trial_bar = self._tqdm(total=total, desc=f"  {phase}", unit="step", position=1, leave=False,
                                        dynamic_ncols=True)
            self._phase = phase
        self.trial_bar.n = step
        self.trial_bar.refresh()

    def _end_trial(self) -> None:
        if self.trial_bar is not None:
            self.trial_bar.close()
            self.trial_bar = None
            self._phase = None

    def trial_finished(self, number: int, record: TrialRecord, values: list[float]) -> None:
        self._end_trial()
        self.study_bar.update(1)
        lat = " ".join(f"{p}={v.tvm:.3f}ms{_latency_notes(v.to_dict())}" for p in record.profiles
                       if (v := record.latency(p)) is not None and v.tvm is not None)
        x = record.extra
        tag = "" if record.precision == "fp32" else (
            f" [{record.precision}, {'integer-only' if x.get('integer_only') else 'NOT integer-only'}]")
        self.say(f"[trial {number}]{tag} done in {x['wall_s']['total']:.0f}s: val acc {record.accuracy:.4f} "
                 f"(dense {record.dense.accuracy:.4f}), MACs {record.flops_ratio:.2f}x fewer"
                 f"{', blocks removed ' + str(len(x['blocks_removed'])) if x['blocks_removed'] else ''}"
                 f"{', ' + lat if lat else ''}{budget_text(record)}")

    def snapshot_added(self, parent: int, record: TrialRecord, values: list[float]) -> None:
        """A regularisation-path snapshot of trial ``parent`` stored as a trial of its own."""
        self.study_bar.update(1)
        self.say(f"[trial {parent} path] snapshot: val acc {record.accuracy:.4f}, MACs {record.flops_ratio:.2f}x "
                 f"fewer{budget_text(record)}")

    def trial_failed(self, number: int, exc: BaseException) -> None:
        self._end_trial()
        self.say(f"[trial {number}] FAILED: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._end_trial()
        self.study_bar.close()


