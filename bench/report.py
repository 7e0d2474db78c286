"""Medians over repetitions, ratios against the reference, goals, the Markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

Run = dict[str, Any]


@dataclass
class Row:
    """One line of the table."""

    key: str
    metric: str
    ours: str
    reference: str
    ratio: str
    goal: str
    verdict: str
    values: dict[str, Any]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that exist (refused or failed runs are None)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _runs(runs: list[Run], metric: str, side: str) -> list[Run]:
    return [
        r
        for r in runs
        if r.get("metric") == metric
        and r.get("side") == side
        and "error" not in r
        and "skipped" not in r
    ]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _num(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _reps(values: list[float | None], fmt: Callable[[float | None], str]) -> str:
    """All repetitions, for the JSON and the notes."""
    return ", ".join(fmt(v) for v in values)


def _verdict(ok: bool | None, missed: str) -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else f"missed: {missed}"


def summarize(runs: list[Run], ref_reason: str | None, mongo_reason: str | None) -> list[Row]:
    """The table rows from every run."""
    rows: list[Row] = []
    no_ref = "skipped" if ref_reason else "—"

    # 1: idle sockets
    ours_idle, ref_idle = _runs(runs, "idle", "ours"), _runs(runs, "idle", "reference")
    held_o = median(r["held"] for r in ours_idle)
    held_r = median(r["held"] for r in ref_idle)
    asked = ours_idle[0]["asked"] if ours_idle else (ref_idle[0]["asked"] if ref_idle else None)
    rows.append(
        Row(
            "1a",
            f"idle sockets held by one gateway process (of {_num(asked, '{:,.0f}')} opened)",
            _num(held_o, "{:,.0f}"),
            _num(held_r, "{:,.0f}") if ref_idle else no_ref,
            _x(_ratio(held_o, held_r)),
            "—",
            "—",
            {"ours": [r["held"] for r in ours_idle], "reference": [r["held"] for r in ref_idle]},
        )
    )
    slope_o = [_kb(r["rss_per_socket"]) for r in ours_idle]
    slope_r = [_kb(r["rss_per_socket"]) for r in ref_idle]
    so, sr = median(slope_o), median(slope_r)
    ratio = _ratio(so, sr)
    rows.append(
        Row(
            "1b",
            "RSS per idle socket, KB (slope after GC over the opened totals)",
            _num(so, "{:.1f}"),
            _num(sr, "{:.1f}") if ref_idle else no_ref,
            _x(ratio),
            "≤ 0.80x Node",
            _verdict(None if ratio is None else ratio <= 0.8, f"{_x(ratio)} (goal 0.80x)"),
            {"ours": slope_o, "reference": slope_r},
        )
    )

    # 2: fan-out
    fo, fr = _runs(runs, "fanout", "ours"), _runs(runs, "fanout", "reference")
    do = median(r["deliveries_per_cpu_s"] for r in fo)
    dr = median(r["deliveries_per_cpu_s"] for r in fr)
    rate_o = median(r["best_rate"] for r in fo)
    rate_r = median(r["best_rate"] for r in fr)
    ratio = _ratio(do, dr)
    members = fo[0]["members"] if fo else (fr[0]["members"] if fr else 0)
    rows.append(
        Row(
            "2",
            f"fan-out deliveries per server CPU-second, {members:,}-member room, 100 B,"
            " at the highest rate with first-to-last p99 ≤ 50 ms",
            _fan(do, rate_o, fo),
            _fan(dr, rate_r, fr) if fr else no_ref,
            _x(ratio),
            "≥ 1.00x Node",
            _verdict(None if ratio is None else ratio >= 1.0, f"{_x(ratio)} (goal 1.00x)"),
            {
                "ours": [r["deliveries_per_cpu_s"] for r in fo],
                "reference": [r["deliveries_per_cpu_s"] for r in fr],
                "ours_rate": [r["best_rate"] for r in fo],
                "reference_rate": [r["best_rate"] for r in fr],
            },
        )
    )

    # 3: end to end at a fixed rate
    eo, er = _runs(runs, "e2e", "ours"), _runs(runs, "e2e", "reference")

    def lat(rs: list[Run], q: str) -> float | None:
        return median(None if r["fixed_refused"] else r["fixed"]["latency"][q] for r in rs)

    def cpu(rs: list[Run]) -> float | None:
        return median(None if r["fixed_refused"] else r["fixed"]["cpu_per_message_us"] for r in rs)

    p99o, p99r = lat(eo, "p99_ms"), lat(er, "p99_ms")
    rate = eo[0]["fixed"]["rate"] if eo else (er[0]["fixed"]["rate"] if er else 0)
    rooms = eo[0]["rooms"] if eo else (er[0]["rooms"] if er else 0)
    rows.append(
        Row(
            "3a",
            f"end to end, gateway A → worker → SQLite → gateway B, {rate:,.0f} msg/s over"
            f" {rooms} rooms: latency p50 / p99 / p99.9, ms",
            _lat3(lat(eo, "p50_ms"), p99o, lat(eo, "p999_ms")),
            _lat3(lat(er, "p50_ms"), p99r, lat(er, "p999_ms")) if er else no_ref,
            _x(_ratio(p99o, p99r)) + " (p99)",
            "p50 ≤ 2 / p99 ≤ 10 ms",
            _verdict(
                None if p99o is None else p99o <= 10 and (lat(eo, "p50_ms") or 0) <= 2,
                f"p50 {_num(lat(eo, 'p50_ms'), '{:.1f}')} / p99 {_num(p99o, '{:.1f}')} ms",
            ),
            {
                "ours_p99": [r["fixed"]["latency"]["p99_ms"] for r in eo],
                "reference_p99": [r["fixed"]["latency"]["p99_ms"] for r in er],
            },
        )
    )
    co, cr = cpu(eo), cpu(er)
    rows.append(
        Row(
            "3b",
            "end to end: CPU time per message, µs (ours: gateways + workers + nats + redis)",
            _num(co, "{:,.0f}") + _saturated(r["fixed"] for r in eo),
            (_num(cr, "{:,.0f}") + _saturated(r["fixed"] for r in er)) if er else no_ref,
            _x(_ratio(co, cr)),
            "≤ 250 µs",
            _verdict(None if co is None else co <= 250, f"{_num(co, '{:,.0f}')} µs"),
            {
                "ours": [r["fixed"]["cpu_per_message_us"] for r in eo],
                "reference": [r["fixed"]["cpu_per_message_us"] for r in er],
            },
        )
    )
    mo = _runs(runs, "e2e-mongo", "ours")
    if mo:
        mp = median(None if r["fixed_refused"] else r["fixed"]["latency"]["p99_ms"] for r in mo)
        rows.append(
            Row(
                "3c",
                "end to end on MongoDB: latency p50 / p99 / p99.9, ms",
                _lat3(
                    median(r["fixed"]["latency"]["p50_ms"] for r in mo),
                    mp,
                    median(r["fixed"]["latency"]["p999_ms"] for r in mo),
                ),
                "—",
                "—",
                "p99 ≤ 15 ms",
                _verdict(None if mp is None else mp <= 15, f"p99 {_num(mp, '{:.1f}')} ms"),
                {"ours_p99": [r["fixed"]["latency"]["p99_ms"] for r in mo]},
            )
        )
    else:
        rows.append(
            Row(
                "3c",
                "end to end on MongoDB",
                f"skipped: {mongo_reason}",
                "—",
                "—",
                "p99 ≤ 15 ms",
                "not measured",
                {},
            )
        )

    # 4: the highest end-to-end rate
    mro = median(r["max_rate"] for r in eo)
    mrr = median(r["max_rate"] for r in er)
    bound_o = any(r["generator_bound"] for r in eo)
    bound_r = any(r["generator_bound"] for r in er)
    rows.append(
        Row(
            "4",
            "highest end-to-end rate with p99 ≤ 50 ms and nothing lost, msg/s",
            _rate(mro, bound_o),
            _rate(mrr, bound_r) if er else no_ref,
            _x(_ratio(mro, mrr)),
            "≥ 10,000 msg/s in every repetition",
            _verdict(
                None if not eo else all((r["max_rate"] or 0) >= 10_000 for r in eo),
                "reps " + _reps([r["max_rate"] for r in eo], lambda v: _num(v, "{:,.0f}")),
            ),
            {"ours": [r["max_rate"] for r in eo], "reference": [r["max_rate"] for r in er]},
        )
    )

    # 5: scaling
    sc = _runs(runs, "scaling", "ours")

    def per_msg(name: str) -> float | None:
        return median(r["configs"].get(name, {}).get("cpu_per_message_us") for r in sc)

    base = per_msg("1gw-1w")
    for key, name, label in (
        ("5a", "2gw-1w", "1 → 2 gateways"),
        ("5b", "1gw-2w", "1 → 2 messages workers"),
        ("5c", "2gw-2w", "1 gw + 1 worker → 2 gw + 2 workers"),
    ):
        other = per_msg(name)
        ratio = _ratio(other, base)
        rate_s = sc[0]["configs"]["1gw-1w"]["rate"] if sc else 0
        rows.append(
            Row(
                key,
                f"CPU per message at {rate_s:,.0f} msg/s, {label}, µs",
                f"{_num(base, '{:,.0f}')} → {_num(other, '{:,.0f}')}"
                + _saturated(
                    c for r in sc for n, c in r["configs"].items() if n in ("1gw-1w", name)
                ),
                "—",
                _x(ratio),
                "flat (≤ 1.25x)",
                _verdict(None if ratio is None else ratio <= 1.25, f"{_x(ratio)}"),
                {
                    "base": [r["configs"].get("1gw-1w", {}).get("cpu_per_message_us") for r in sc],
                    "other": [r["configs"].get(name, {}).get("cpu_per_message_us") for r in sc],
                },
            )
        )
    rows += _connect_rows(runs, no_ref)
    return rows


def _connect_rows(runs: list[Run], no_ref: str) -> list[Row]:
    """Metric 6 (connects per second) and 7 (reconnect storm)."""
    rows: list[Row] = []
    co, cr = _runs(runs, "connect", "ours"), _runs(runs, "connect", "reference")
    if co or cr:
        ro = median(r["connects_per_s"] for r in co)
        rr = median(r["connects_per_s"] for r in cr)
        ratio = _ratio(ro, rr)
        n = (co or cr)[0]["asked"]
        rows.append(
            Row(
                "6",
                f"authenticated connects per second into one gateway, {n:,} sockets, HS256 JWT"
                " (reference: `jsonwebtoken` in `io.use`); server CPU per connect, µs",
                f"{_num(ro, '{:,.0f}')}/s, "
                + _num(median(r["server_cpu_per_connect_us"] for r in co), "{:,.0f}")
                + " µs",
                (
                    f"{_num(rr, '{:,.0f}')}/s, "
                    + _num(median(r["server_cpu_per_connect_us"] for r in cr), "{:,.0f}")
                    + " µs"
                )
                if cr
                else no_ref,
                _x(ratio),
                "≥ 1.00x Node with JWT",
                _verdict(None if ratio is None else ratio >= 1.0, _x(ratio)),
                {
                    "ours": [r["connects_per_s"] for r in co],
                    "reference": [r["connects_per_s"] for r in cr],
                },
            )
        )
    st = _runs(runs, "storm", "ours")
    skipped = [r for r in runs if r.get("metric") == "storm" and "skipped" in r]
    if st:
        caught = [r["all_caught_up_s"] for r in st]
        worst = None if any(c is None for c in caught) else max(c or 0 for c in caught)
        lost = sum(r["messages_missing"] for r in st)
        ok = worst is not None and worst <= 10 and lost == 0
        n = st[0]["clients"]
        rows.append(
            Row(
                "7",
                f"reconnect storm: {n:,} clients of a SIGTERMed gateway reconnect to the other"
                " and `sync`: all back / caught up (s), messages missing, peak CPU (cores)",
                f"{_num(median(r['all_reconnected_s'] for r in st), '{:.1f}')} /"
                f" {_num(median(caught), '{:.1f}')} s, {lost} missing,"
                f" peak {_num(median(r['peak_cores'] for r in st), '{:.2f}')} cores",
                "—",
                "—",
                "all back and caught up, none lost, ≤ 10 s",
                _verdict(ok, f"worst {_num(worst, '{:.1f}')} s, {lost} missing"),
                {"caught_up_s": caught, "missing": [r["messages_missing"] for r in st]},
            )
        )
    elif skipped:
        rows.append(
            Row("7", "reconnect storm", skipped[0]["skipped"], "—", "—", "—", "not measured", {})
        )
    return rows


def _saturated(steps: Iterable[dict[str, Any]]) -> str:
    """A mark when the servers' core was >= 90 % busy: CPU per message is then a floor."""
    return " (core saturated)" if any(s.get("saturated") for s in steps) else ""


def _kb(value: float | None) -> float | None:
    return None if value is None else value / 1024


def _fan(dps: float | None, rate: float | None, runs: list[Run]) -> str:
    if dps is None:
        return "none passed" if runs else "—"
    bound = " (generator-bound)" if any(r["generator_bound"] for r in runs) else ""
    return f"{dps / 1000:,.1f}k @ {rate:g} msg/s{bound}"


def _lat3(a: float | None, b: float | None, c: float | None) -> str:
    if a is None and b is None:
        return "—"
    return f"{_num(a, '{:.2f}')} / {_num(b, '{:.2f}')} / {_num(c, '{:.2f}')}"


def _rate(value: float | None, bound: bool) -> str:
    if value is None:
        return "< first step"
    return ("≥ " if bound else "") + f"{value:,.0f}"


def markdown(rows: list[Row]) -> str:
    """The table."""
    lines = [
        "| # | metric | ours | reference (Node socket.io) | ours / reference | goal | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.key} | {row.metric} | {row.ours} | {row.reference} | {row.ratio} |"
            f" {row.goal} | {row.verdict} |"
        )
    return "\n".join(lines)


def refusals(runs: list[Run]) -> list[str]:
    """Every step refused because the generator used more than its share of its core."""
    out: list[str] = []
    for run in runs:
        if "error" in run or "skipped" in run:
            continue  # a failed run has no steps (it crashed the report at load 30)
        steps: list[tuple[str, dict[str, Any]]] = []
        if run.get("metric") == "fanout":
            steps = [(f"{s['rate']:g} msg/s", s) for s in run.get("steps", [])]
        elif run.get("metric") in ("e2e", "e2e-mongo"):
            steps = [("fixed rate", run["fixed"])] + [
                (f"ramp {s['rate']:g} msg/s", s) for s in run.get("ramp", [])
            ]
        for label, step in steps:
            if step.get("refused"):
                out.append(
                    f"{run['metric']} {run['side']} rep {run['rep'] + 1} {label}: generator at"
                    f" {step['generator_cpu_frac']:.1%} of its core (> 70 %): excluded"
                )
    return out


def generator_peaks(runs: list[Run]) -> dict[str, float]:
    """The highest generator CPU share seen per metric (reported in smoke runs too)."""
    peaks: dict[str, float] = {}
    for run in runs:
        if "error" in run or "skipped" in run:
            continue
        fracs: list[float] = []
        if run.get("metric") == "fanout":
            fracs = [s["generator_cpu_frac"] for s in run.get("steps", [])]
        elif run.get("metric") in ("e2e", "e2e-mongo"):
            fracs = [run["fixed"]["generator_cpu_frac"]] + [
                s["generator_cpu_frac"] for s in run.get("ramp", [])
            ]
        elif run.get("metric") == "scaling":
            fracs = [c["generator_cpu_frac"] for c in run.get("configs", {}).values()]
        elif run.get("metric") == "connect" and run.get("generator_cpu_frac") is not None:
            fracs = [run["generator_cpu_frac"]]
        if fracs:
            key = run["metric"]
            peaks[key] = max(peaks.get(key, 0.0), *fracs)
    return peaks


def foreign_load(runs: list[Run]) -> float:
    """The highest CPU (cores) used by processes outside the benchmark during a step."""
    peak = 0.0
    for run in runs:
        for step in (
            run.get("steps", [])
            + ([run["fixed"]] if "fixed" in run else [])
            + run.get("ramp", [])
            + list(run.get("configs", {}).values())
            + ([run] if run.get("metric") == "connect" else [])
        ):
            peak = max(peak, step.get("foreign_cores", 0.0))
    return peak


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows as plain data."""
    return [asdict(r) for r in rows]
