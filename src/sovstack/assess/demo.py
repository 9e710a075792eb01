"""The assessor's part of the demo: score the demo deployment once the other modules have seeded it.

It only reads: nothing is written, committed or rolled back, so running the demo twice is harmless.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sovstack.assess import live
from sovstack.core.plugins import DemoContext, plugin_manager


def report(session: Session, ctx: DemoContext) -> None:
    """Say the live gate and score of the demo deployment, and where to see the scorecard."""
    # The demo hook is not handed the app's plugin manager; a fresh one holds the same modules.
    run = live.live_assessment(session, plugin_manager(), ctx.settings)
    a = run.assessment
    score = "n/a" if a.score.value is None else f"{a.score.value:g}"
    level = "n/a" if a.gate.level is None else str(a.gate.level)
    ctx.say(f"sovereignty self-assessment of {len(run.manifest.components)} components: gate level {level}, "
            f"weighted score {score}/100, {a.gaps.count} gaps counted {a.mode} (console: /assess)")
