"""Server-rendered bar charts as plain data for the `portal/_chart.html` macro (inline SVG with a
title, a description and a table fallback: readable without JavaScript and by screen readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 48, 28, 12


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    series: int  # 0: current, 1: previous


@dataclass
class Chart:
    id: str
    title: str
    description: str
    columns: list[str]  # table header: first is the day label
    rows: list[list[str]]  # table body
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    max_value: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    legend: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.max_value == 0


def _days(start: datetime, end: datetime, limit: int = 62) -> list[date]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    days = []
    while first <= last and len(days) < limit:
        days.append(first)
        first += timedelta(days=1)
    return days


def _nice_max(value: int) -> int:
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def period_chart(chart_id: str, title: str, unit: str, current: list[tuple[str, int, int]],
                 previous: list[tuple[str, int, int]], current_range: tuple[datetime, datetime],
                 previous_range: tuple[datetime, datetime], metric: int = 2) -> Chart:
    """Per day of the period: this period's bars beside the previous period's (by day index).
    `current`/`previous` are (YYYY-MM-DD, calls, units); `metric` picks calls (1) or units (2)."""
    cur_days, prev_days = _days(*current_range), _days(*previous_range)
    cur = {r[0]: r[metric] for r in current}
    prev = {r[0]: r[metric] for r in previous}
    n = max(len(cur_days), len(prev_days), 1)
    series = [[cur.get(d.isoformat(), 0) for d in cur_days], [prev.get(d.isoformat(), 0) for d in prev_days]]
    peak = max([0, *series[0], *series[1]])
    top = _nice_max(peak)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.4)
    chart = Chart(id=chart_id, title=title,
                  description=(f"{unit.capitalize()} per day: this period (dark bars, {sum(series[0])} in all) beside "
                               f"the previous period (light bars, {sum(series[1])} in all)."),
                  columns=["Day of period", f"This period ({unit})", f"Previous period ({unit})"], rows=[],
                  max_value=peak, legend=["This period", "Previous period"])
    for i in range(n):
        x0 = PAD_LEFT + i * slot
        label = cur_days[i].isoformat() if i < len(cur_days) else f"day {i + 1}"
        for s in (1, 0):
            values = series[s]
            if i >= len(values):
                continue
            v = values[i]
            h = 0.0 if top == 0 else plot_h * v / top
            x = x0 + (slot - 2 * bar_w) / 2 + (0 if s == 1 else bar_w)
            chart.bars.append(Bar(x=round(x, 1), y=round(PAD_TOP + plot_h - h, 1), width=round(bar_w, 1),
                                  height=round(h, 1), label=label, value=v, series=s))
        chart.rows.append([label, str(series[0][i]) if i < len(series[0]) else "–",
                           str(series[1][i]) if i < len(series[1]) else "–"])
        if i % max(1, n // 6) == 0:
            chart.x_labels.append((round(x0 + slot / 2, 1), f"day {i + 1}"))
    for k in range(5):
        value = top * k // 4
        chart.ticks.append((round(PAD_TOP + plot_h - plot_h * k / 4, 1), f"{value:,}"))
    return chart


def daily_chart(chart_id: str, title: str, unit: str, rows: list[tuple[str, int, int]], start: datetime,
                end: datetime) -> Chart:
    """Calls per day in [start, end) as bars; the table fallback lists calls and units per day.
    `rows` are (YYYY-MM-DD, calls, units)."""
    days = _days(start, end)
    by_day = {r[0]: r for r in rows}
    values = [by_day[d.isoformat()][1] if d.isoformat() in by_day else 0 for d in days]
    peak = max([0, *values])
    top = _nice_max(peak)
    n = max(len(days), 1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.7)
    chart = Chart(id=chart_id, title=title, description=f"{unit.capitalize()} per day, {sum(values):,} in all.",
                  columns=["Day", "Calls", "Units"], rows=[], max_value=peak)
    for i, (d, v) in enumerate(zip(days, values, strict=True)):
        x0 = PAD_LEFT + i * slot
        h = 0.0 if top == 0 else plot_h * v / top
        chart.bars.append(Bar(x=round(x0 + (slot - bar_w) / 2, 1), y=round(PAD_TOP + plot_h - h, 1),
                              width=round(bar_w, 1), height=round(h, 1), label=d.isoformat(), value=v, series=0))
        if d.isoformat() in by_day:
            _, calls, units = by_day[d.isoformat()]
            chart.rows.append([d.isoformat(), f"{calls:,}", f"{units:,}"])
        if i % max(1, n // 6) == 0:
            chart.x_labels.append((round(x0 + slot / 2, 1), d.strftime("%d %b")))
    for k in range(5):
        chart.ticks.append((round(PAD_TOP + plot_h - plot_h * k / 4, 1), f"{top * k // 4:,}"))
    return chart
