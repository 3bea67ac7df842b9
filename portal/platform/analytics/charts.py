"""Charts drawn on the server: the geometry of an SVG bar chart, with the previous period as a
line over the bars. A template (``templates/macros/charts.html``) draws it, beside a table of
the same figures, so a screen reader or a spreadsheet gets every number the picture shows.

Plain arithmetic, no library: a chart here is a few dozen rectangles. The SVG and the table's
rows are written here in one pass each (``svg``, ``table_rows``): a template loop pays a call
and an escape for every attribute of every bar, which was most of a dashboard's time."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
#: Room for the axis labels: left (values) and bottom (dates).
LEFT, BOTTOM, TOP = 48, 24, 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: Decimal


@dataclass(frozen=True)
class Chart:
    key: str  #: unique on the page (element ids)
    title: str
    unit: str
    bars: list[Bar]
    #: The previous period's values as SVG polyline points ("x,y x,y"), or "" without one.
    previous_points: str
    #: (y, label) of the value axis' lines.
    ticks: list[tuple[float, str]]
    #: (x, label) of a few dates along the bottom.
    x_labels: list[tuple[float, str]]
    #: The table: (label, value, previous label, previous value).
    rows: list[tuple[str, Decimal, str | None, Decimal | None]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    def svg(self) -> Markup:
        """The chart as an ``<svg>`` element: grid lines and value labels, a bar per label (its
        value as a tooltip), the previous period's line, and a few dates along the bottom. Texts
        are escaped; values are Decimals and coordinates floats, which hold no markup."""
        key = escape(self.key)
        line = ", a line for the previous period" if self.previous_points else ""
        parts = [f'<svg viewBox="0 0 {self.width} {self.height}" width="100%" role="img"\n'
                 f'       aria-labelledby="chart-{key}-title" class="chart-svg">',
                 f'<title id="chart-{key}-title">{escape(self.title)}: bars for the period{line}; the table below '
                 'has every value.</title>']
        parts += [f'<line x1="{LEFT}" x2="{self.width - 8}" y1="{y}" y2="{y}" class="chart-grid"/>'
                  f'<text x="{LEFT - 4}" y="{y + 4}" text-anchor="end" class="chart-axis">{escape(label)}</text>'
                  for y, label in self.ticks]
        parts += [f'<rect x="{bar.x}" y="{bar.y}" width="{bar.width}" height="{bar.height}" class="chart-bar">'
                  f'<title>{escape(bar.label)}: {bar.value}</title></rect>' for bar in self.bars]
        if self.previous_points:
            parts.append(f'<polyline points="{escape(self.previous_points)}" class="chart-previous" fill="none"/>')
        parts += [f'<text x="{x}" y="{self.height - 6}" text-anchor="middle" class="chart-axis">{escape(label[5:])}</text>'
                  for x, label in self.x_labels]
        parts.append("</svg>")
        return Markup("\n".join(parts))  # noqa: S704 - numbers, and every text escaped above

    def table_rows(self) -> Markup:
        """The rows of the chart's table: day, value, the previous period's day and value."""
        return Markup("\n".join(  # noqa: S704 - texts escaped, values Decimals
            f"<tr><td>{escape(label)}</td><td>{value}</td><td>{escape(previous_label or '')}</td>"
            f"<td>{'' if previous is None else previous}</td></tr>"
            for label, value, previous_label, previous in self.rows))


def _nice_top(value: Decimal) -> Decimal:
    """The axis' top: the next of 1, 2, 5 x 10^n at or above ``value``."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)


def _label(value: Decimal) -> str:
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return text or "0"


def bar_chart(key: str, title: str, unit: str, labels: list[str], values: list[Decimal],
              previous_labels: list[str] | None = None, previous: list[Decimal] | None = None) -> Chart:
    """A bar per label; ``previous`` (same length, aligned by position) drawn as a line."""
    previous = previous or []
    previous_labels = previous_labels or []
    top = _nice_top(max([*values, *previous, Decimal(0)]))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(values), 1)
    gap = min(4.0, slot * 0.2)

    def y_of(value: Decimal) -> float:
        return round(TOP + plot_h - float(value / top) * plot_h, 2)

    bars = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = y_of(value)
        bars.append(Bar(round(LEFT + index * slot + gap / 2, 2), y, round(slot - gap, 2),
                        round(TOP + plot_h - y, 2), label, value))
    points = " ".join(f"{round(LEFT + (i + 0.5) * slot, 2)},{y_of(v)}" for i, v in enumerate(previous))
    ticks = [(y_of(top * Decimal(n) / 4), _label(top * Decimal(n) / 4)) for n in range(5)]
    every = max(1, len(labels) // 6)
    x_labels = [(round(LEFT + (i + 0.5) * slot, 2), label) for i, label in enumerate(labels) if i % every == 0]
    rows = [(label, value, previous_labels[i] if i < len(previous_labels) else None,
             previous[i] if i < len(previous) else None) for i, (label, value) in enumerate(zip(labels, values,
                                                                                               strict=True))]
    return Chart(key, title, unit, bars, points, ticks, x_labels, rows)
