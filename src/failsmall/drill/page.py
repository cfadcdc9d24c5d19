"""A drill report as one self-contained HTML page: figures side by side, then per profile a
timeline in inline SVG (requests by outcome per second, each node's bundle over time, the
fleet's events) and the event log. No scripts, styles or fonts from elsewhere."""

from __future__ import annotations

from html import escape

from failsmall.drill.report import Figures, Measured, NotMeasured, Timing

WIDTH = 960
LEFT = 70
PLOT = WIDTH - LEFT - 10
OUTCOME_COLOURS = {"ok": "#4caf50", "blocked": "#ff9800", "error": "#e53935", "lost": "#757575"}
EVENT_COLOURS = {
    "push": "#1e88e5",
    "fault": "#8e24aa",
    "wave": "#90caf9",
    "gate": "#3949ab",
    "nack": "#d81b60",
    "quarantine": "#6d4c41",
    "rollback": "#f4511e",
    "complete": "#43a047",
    "refused": "#546e7a",
    "restore": "#00897b",
    "hypothesis": "#fdd835",
    "control": "#37474f",
}
PALETTE = ("#a5d6a7", "#ef9a9a", "#ce93d8", "#ffcc80", "#80deea", "#fff59d", "#bcaaa4", "#b0bec5")


def _timing(timing: Timing) -> str:
    match timing:
        case Measured(seconds=seconds):
            return f"{seconds:.1f} s"
        case NotMeasured(why=why):
            return f"— ({why})"


def _rows(f: Figures) -> list[tuple[str, str]]:
    return [
        ("requests", f"{f.requests:,} in {f.duration_s:.0f} s"),
        ("share of requests failed", f"{f.failed_share:.2%}"),
        ("blocked / 5xx / lost", f"{f.outcomes['blocked']} / {f.outcomes['error']} / {f.lost}"),
        (
            "failed per node while faulted",
            ", ".join(f"{n} {s:.0%}" for n, s in f.failed_share_by_node.items()) or "-",
        ),
        ("nodes that served a bad bundle", ", ".join(f.nodes_served_bad) or "none"),
        ("time to detect", _timing(f.time_to_detect)),
        ("time to roll back", _timing(f.time_to_roll_back)),
        ("latency p50 / p99", f"{f.p50_ms:.1f} / {f.p99_ms:.1f} ms"),
        ("widest version skew", f"{f.widest_skew}"),
        ("steady state before / after", f"{f.steady_before} / {f.steady_after}"),
    ]


def _x(t: float, span: float) -> float:
    return LEFT + PLOT * max(0.0, min(t, span)) / span


def _requests_svg(f: Figures, span: float) -> str:
    height, top = 150, 10
    peak = max((sum(v for k, v in row.items() if k != "t") for row in f.per_second), default=1)
    peak = max(peak, 1)
    bar = PLOT / span
    parts = [f'<svg width="{WIDTH}" height="{height + 30}" role="img">']
    for row in f.per_second:
        y = float(top + height)
        for outcome, colour in OUTCOME_COLOURS.items():
            n = row.get(outcome, 0)
            if not n:
                continue
            h = height * n / peak
            y -= h
            parts.append(
                f'<rect x="{_x(row["t"], span):.1f}" y="{y:.1f}" width="{max(bar - 0.5, 0.5):.1f}"'
                f' height="{h:.1f}" fill="{colour}"><title>t={row["t"]} s {outcome}: {n}'
                "</title></rect>"
            )
    parts.append(
        f'<text x="4" y="{top + 10}" font-size="11">{peak}/s</text>'
        f'<text x="4" y="{top + height}" font-size="11">0</text>'
    )
    parts += _axis(span, top + height)
    parts.append("</svg>")
    return "".join(parts)


def _axis(span: float, y: float) -> list[str]:
    step = 5 if span <= 60 else 10 if span <= 180 else 30
    out = [f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + PLOT}" y2="{y}" stroke="#999"/>']
    t = 0
    while t <= span:
        out.append(
            f'<text x="{_x(t, span):.1f}" y="{y + 14}" font-size="10" text-anchor="middle">{t}s'
            "</text>"
        )
        t += step
    return out


def _lanes_svg(f: Figures, span: float, colours: dict[str, str]) -> str:
    lane_h = 22
    height = lane_h * len(f.lanes) + 20
    parts = [f'<svg width="{WIDTH}" height="{height}" role="img">']
    for i, lane in enumerate(f.lanes):
        y = 4 + i * lane_h
        parts.append(f'<text x="4" y="{y + 14}" font-size="11">{escape(lane.node_id)}</text>')
        for start, end, digest in lane.spans:
            colour = colours.get(digest, "#ffffff") if digest else "#ffffff"
            label = f.labels.get(digest, digest[:19]) if digest else "not answering"
            x0, x1 = _x(start, span), _x(max(end, start + 0.25), span)
            stroke = ' stroke="#e53935" stroke-dasharray="3,2"' if not digest else ""
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{lane_h - 4}"'
                f' fill="{colour}"{stroke}><title>{escape(lane.node_id)}: {escape(label)}'
                f" ({start:.1f}-{end:.1f} s)</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _events_svg(f: Figures, span: float) -> str:
    parts = [f'<svg width="{WIDTH}" height="34" role="img">']
    for e in f.events:
        x = _x(e.t, span)
        colour = EVENT_COLOURS.get(e.kind, "#000")
        parts.append(
            f'<line x1="{x:.1f}" y1="2" x2="{x:.1f}" y2="30" stroke="{colour}" stroke-width="2">'
            f"<title>{e.t:.1f} s {escape(e.kind)}: {escape(e.text)}</title></line>"
        )
    parts.append('<text x="4" y="20" font-size="11">events</text></svg>')
    return "".join(parts)


def _legend(items: dict[str, str]) -> str:
    return " ".join(
        f'<span class="key"><span class="sw" style="background:{c}"></span>{escape(k)}</span>'
        for k, c in items.items()
    )


def render(runs: list[Figures]) -> str:
    span = max((max(f.duration_s, len(f.per_second)) for f in runs), default=1.0) or 1.0
    title = f"failsmall drill {runs[0].scenario}" if runs else "failsmall drill"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}",
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;"
        "text-align:left;font-size:13px;vertical-align:top}",
        ".key{margin-right:12px;font-size:12px}.sw{display:inline-block;width:10px;"
        "height:10px;margin-right:4px}h2{margin-top:32px}",
        "</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<table><tr><th></th>",
        *(f"<th>{escape(f.profile)}</th>" for f in runs),
        "</tr>",
    ]
    columns = [_rows(f) for f in runs]
    for i, (label, _) in enumerate(columns[0] if columns else []):
        out.append(f"<tr><td>{escape(label)}</td>")
        out += [f"<td>{escape(c[i][1])}</td>" for c in columns]
        out.append("</tr>")
    out.append("</table>")
    for f in runs:
        digests = sorted({d for lane in f.lanes for _, _, d in lane.spans if d})
        colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(digests)}
        out.append(f"<h2>{escape(f.profile)}</h2>")
        out.append("<h3>requests by outcome, per second</h3>")
        out.append(_legend(OUTCOME_COLOURS))
        out.append(_requests_svg(f, span))
        out.append("<h3>nodes by bundle</h3>")
        out.append(_legend({f.labels.get(d, d[:19]): c for d, c in colours.items()}))
        out.append(_lanes_svg(f, span, colours))
        out.append(_legend({k: c for k, c in EVENT_COLOURS.items()}))
        out.append(_events_svg(f, span))
        out.append("<details><summary>event log</summary><table>")
        out += [
            f"<tr><td>{e.t:.2f} s</td><td>{escape(e.kind)}</td><td>{escape(e.text)}</td></tr>"
            for e in f.events
        ]
        out.append("</table></details>")
    out.append("</body></html>")
    return "\n".join(out)
