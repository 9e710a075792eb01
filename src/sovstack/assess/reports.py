"""Reports of an assessment: Markdown and a self-contained HTML page (inline CSS and SVG, nothing fetched).

JSON is ``schema.report_data``; the CycloneDX attestation is ``attest.attestation``.
"""

from __future__ import annotations

from html import escape

from sovstack.assess import charts
from sovstack.assess.criteria import PRESSURE_TITLES, CriteriaSet
from sovstack.assess.diff import AssessmentDiff
from sovstack.assess.results import Assessment, DrillResult, Result


def _num(value: float | int | None, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:g}{suffix}"


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _days(value: float | None) -> str:
    return "never" if value is None else f"{value:g} days"


# Markdown -------------------------------------------------------------------------------------

def markdown(assessment: Assessment, criteria: CriteriaSet | None = None) -> str:
    """The assessment as Markdown: gate and score side by side, pressures, layers, gaps, drills, exit."""
    a = assessment
    lines = [f"# Sovereignty assessment: {a.manifest}", "",
             f"Home {a.home}, as of {a.as_of}; criteria {a.criteria}, weights {a.profile}, gaps counted {a.mode}.", "",
             "| Gate (lowest level) | Weighted score |", "|---|---|",
             f"| **{_num(a.gate.level)}** — {a.gate.summary} | **{_num(a.score.value)}** / 100 |", "",
             "The two are never merged: the gate says how far the weakest answer lets you trust the stack; the "
             "score ranks stacks that pass your minimum gate.", "", "## Pressures (0–100)", "",
             "| Pressure | Score | Answers |", "|---|---|---|"]
    lines += [f"| {PRESSURE_TITLES[k]} | {_num(v.value)} | {len(v.basis)} |" for k, v in a.pressures.items()]
    lines += ["", "## Layers", "", "| Layer | Label | Points | Lowest level |", "|---|---|---|---|"]
    lines += [f"| {k} | {v.label} | {_num(v.points.value)} | {_num(v.lowest_level)} |" for k, v in a.layers.items()]
    lines += ["", "## Objectives", "", "| Objective | Score | Answers |", "|---|---|---|"]
    titles = criteria.objectives if criteria else {}
    lines += [f"| {k} {titles.get(k, '')} | {_num(v.value)} | {len(v.basis)} |" for k, v in a.objectives.items()]
    lines += ["", f"## Gaps ({a.gaps.count})", ""]
    lines += [f"- {_result_line(a.results[i])}" for i in a.gaps.results] or ["None: every answer is backed."]
    lines += _markdown_drills(a.drills) + _markdown_exit(a)
    lines += ["", "## Every answer", "",
              "| Criterion | Component | Declared | Counted | Points | Level | Gap | Evidence |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.criterion} | {r.component} | {r.declared or '—'} | {r.counted or '—'} | {_num(r.points)} | "
              f"{_num(r.level)} | {r.gap or ''} | {'; '.join(f'{e.type}: {e.source} ({e.date})' for e in r.evidence)} |"
              for r in a.results]
    return "\n".join(lines) + "\n"


def _result_line(r: Result) -> str:
    return (f"{r.criterion} on {r.component}: {r.gap}; declared {r.declared or 'nothing'}, "
            f"counted {r.counted or 'left out'}")


def _markdown_drills(drills: list[DrillResult]) -> list[str]:
    if not drills:
        return []
    lines = ["", "## Disruption drills", "", "| Scenario | Service now | Service after failover | Time to recover |",
             "|---|---|---|---|"]
    lines += [f"| {d.title} | {_pct(d.residual_now)} | {_pct(d.residual_final)} | "
              f"{'' if d.fully_recovered else 'not fully: '}{_days(d.time_to_recover_days)} |" for d in drills]
    for d in drills:
        lines += ["", f"### {d.title}", "", f"Effective {d.effective}. Sources: " + "; ".join(d.sources), ""]
        lines += [f"- {o.component}: {o.state} ({o.cause})"
                  + (f", back after {o.recovers_after_days:g} days" if o.recovers_after_days else "")
                  + (f" via {o.via}" if o.via else "") for o in d.outcomes]
    return lines


def _markdown_exit(a: Assessment) -> list[str]:
    if not a.exit:
        return []
    lines = ["", f"## Exit readiness (against {a.exit_rule})", "",
             "| Component | Verdict | Data | Config | Substitute | Switch | Reasons |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {e.component} | {e.verdict} | {e.data_export or '—'} | {e.config_export or '—'} | "
              f"{e.substitute or '—'}{' (tested)' if e.tested else ''} | {_num(e.switch_days, ' d')} | "
              f"{'; '.join(e.reasons)} |" for e in a.exit]
    return lines


def diff_markdown(d: AssessmentDiff) -> str:
    """What moved between two assessments, by how much, and the answers behind each move."""
    lines = [f"# {d.before} → {d.after}", "", "| Figure | Before | After | Change |", "|---|---|---|---|"]
    for m in (*d.moves, *d.drills):
        lines.append(f"| {m.figure} | {m.before} | {m.after} | {'' if m.delta is None else f'{m.delta:+g}'} |")
    for m in (*d.moves, *d.drills):
        if m.why:
            lines += ["", f"**{m.figure}** moved because:", *[f"- {w}" for w in m.why]]
    if not d.moves and not d.drills:
        lines += ["", "Nothing moved."]
    return "\n".join(lines) + "\n"


# HTML -----------------------------------------------------------------------------------------

STYLE = """body{font:14px/1.5 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa}.pair{display:flex;gap:1em}.card{border:1px solid #d0d7de;
border-radius:6px;padding:1em;flex:1}.big{font-size:2.2em;font-weight:600}.gap{color:#9a6700}.charts{display:flex;
flex-wrap:wrap;gap:2em;align-items:flex-start}small{color:#59636e}"""


def html(assessment: Assessment, criteria: CriteriaSet | None = None) -> str:
    """A self-contained HTML report with the radar, per-layer bars and drill timelines as inline SVG."""
    a = assessment
    body = [f"<h1>Sovereignty assessment: {escape(a.manifest)}</h1>",
            f"<p>Home {escape(a.home)}, as of {a.as_of}; criteria {escape(a.criteria)}, weights "
            f"{escape(a.profile)}, gaps counted <b>{escape(a.mode)}</b>.</p>",
            '<div class="pair">'
            f'<div class="card"><div>Gate (lowest level)</div><div class="big">{_num(a.gate.level)}</div>'
            f"<small>{escape(a.gate.summary)}</small></div>"
            f'<div class="card"><div>Weighted score</div><div class="big">{_num(a.score.value)}</div>'
            f"<small>out of 100, from {len(a.score.basis)} answers; not merged with the gate</small></div></div>",
            "<h2>Pressures and layers</h2>", '<div class="charts">',
            charts.radar({k: v.value for k, v in a.pressures.items()}, PRESSURE_TITLES), charts.layer_bars(a.layers),
            "</div>", _html_gaps(a), _html_drills(a.drills), _html_exit(a), _html_answers(a),
            _html_sources(criteria)]
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Sovereignty assessment: {escape(a.manifest)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _rows(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html_gaps(a: Assessment) -> str:
    if not a.gaps.count:
        return "<h2>Gaps</h2><p>None: every answer is backed by valid evidence.</p>"
    items = "".join(f'<li class="gap">{escape(_result_line(a.results[i]))}</li>' for i in a.gaps.results)
    return f"<h2>Gaps ({a.gaps.count})</h2><ul>{items}</ul>"


def _html_drills(drills: list[DrillResult]) -> str:
    if not drills:
        return ""
    parts = ["<h2>Disruption drills</h2>"]
    for d in drills:
        outcomes = _rows(["Component", "State", "Cause", "Back after", "Via"],
                         [[escape(o.component), escape(o.state), escape(o.cause), _days(o.recovers_after_days)
                           if o.state != "degraded" else "running", escape(o.via or "")] for o in d.outcomes])
        parts += [f"<h3>{escape(d.title)}</h3>",
                  f"<p>Effective {d.effective}. Service now {_pct(d.residual_now)}, after failover "
                  f"{_pct(d.residual_final)}, time to recover {_days(d.time_to_recover_days)}"
                  f"{'' if d.fully_recovered else ' (not fully recovered)'}; "
                  f"data exposed: {_pct(d.exposed_share)}.</p>",
                  charts.drill_timeline(d), outcomes,
                  "<p><small>Sources: " + "; ".join(escape(s) for s in d.sources) + "</small></p>"]
    return "\n".join(parts)


def _html_exit(a: Assessment) -> str:
    if not a.exit:
        return ""
    rows = [[escape(e.component), escape(e.verdict), escape(e.data_export or "—"), escape(e.config_export or "—"),
             escape(e.substitute or "—") + (" (tested)" if e.tested else ""), _num(e.switch_days),
             escape("; ".join(e.reasons))] for e in a.exit]
    return (f"<h2>Exit readiness (against {escape(a.exit_rule)})</h2>"
            + _rows(["Component", "Verdict", "Data", "Config", "Substitute", "Switch days", "Reasons"], rows))


def _html_answers(a: Assessment) -> str:
    rows = [[escape(r.criterion), escape(r.component), escape(r.declared or "—"), escape(r.counted or "—"),
             _num(r.points), _num(r.level), f'<span class="gap">{escape(r.gap)}</span>' if r.gap else "",
             "<br>".join(escape(f"{e.type}: {e.source} ({e.date}, {e.confidence})") for e in r.evidence)]
            for r in a.results]
    return ("<h2>Every answer</h2><details><summary>" + str(len(rows)) + " answers with their evidence</summary>"
            + _rows(["Criterion", "Component", "Declared", "Counted", "Points", "Level", "Gap", "Evidence"], rows)
            + "</details>")


def _html_sources(criteria: CriteriaSet | None) -> str:
    if criteria is None:
        return ""
    items = "".join(f"<li>{escape(s.name)}{' — ' + escape(s.url) if s.url else ''}</li>" for s in criteria.sources)
    return f"<h2>Criteria sources</h2><ul>{items}</ul>"
