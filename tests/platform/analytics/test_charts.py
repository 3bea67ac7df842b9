"""The chart's SVG and table rows, written in one pass each: every value drawn, every text escaped."""

from __future__ import annotations

from decimal import Decimal

from portal.platform.analytics.charts import bar_chart


def test_the_svg_has_a_bar_per_day_the_previous_line_and_escaped_text():
    chart = bar_chart("k", 'Volume <b>"A&B"</b>', "", ["2029-04-10", "2029-04-11"], [Decimal("1.5"), Decimal(3)],
                      ["2029-04-08", "2029-04-09"], [Decimal(2), Decimal(0)])
    svg = str(chart.svg())
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert svg.count("<rect ") == 2 and "<title>2029-04-11: 3</title>" in svg and "<polyline points=" in svg
    assert "Volume &lt;b&gt;&#34;A&amp;B&#34;&lt;/b&gt;: bars for the period, a line for the previous period" in svg
    assert "<b>" not in svg
    # The tallest bar reaches the top of the axis (5: the next of 1, 2, 5 above 3).
    assert '<text x="44" y="14.0" text-anchor="end" class="chart-axis">5</text>' in svg


def test_the_table_rows_hold_every_value_and_its_previous():
    chart = bar_chart("k", "T", "", ["2029-04-10", "<x>"], [Decimal("1.5"), Decimal(3)], ["2029-04-08"], [Decimal(2)])
    rows = str(chart.table_rows())
    assert rows.split("\n") == ["<tr><td>2029-04-10</td><td>1.5</td><td>2029-04-08</td><td>2</td></tr>",
                                "<tr><td>&lt;x&gt;</td><td>3</td><td></td><td></td></tr>"]
