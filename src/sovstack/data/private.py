"""Differentially private answers for sensitive datasets, computed by OpenDP (its Polars interface).

    spec(plan, table, epsilon) -> dict      the aggregate plan as a release OpenDP can analyse, or Refused
    release(spec, path) -> dict             in the worker: OpenDP's measurement, released once

The privacy unit is one person (the dataset's entity): they may add or remove at most
``max_rows_per_entity`` rows, a bound the steward declares and publishing checks against the file,
so no truncation pass is needed. Sums and means clamp each row to the bounds the steward declared
for the column; group keys must be columns whose possible values the steward declared public, so
which groups exist is never learnt from the data. Each answer spends ``epsilon`` (pure DP, Laplace
noise from OpenDP's samplers); OpenDP's own privacy map checks the measurement before it is used.

Only a narrow language reaches OpenDP: COUNT(*), SUM(col), AVG(col) over declared columns, GROUP BY
declared key columns, WHERE built from comparisons, AND/OR/NOT, IN lists, BETWEEN, IS NULL and
+ - * on columns and literals. Nothing in it can raise an error that depends on a value, so a failing
query says nothing about any one person.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from sovstack.core.errors import Refused

if TYPE_CHECKING:
    from sovstack.data.disclosure import AggregatePlan

DEFAULT_EPSILON = 0.1
HIDDEN_COUNT = "__count"  # added to a thresholded release that asked for no count, and not returned
ALPHA = 0.05  # accuracy is reported at 95% confidence
MAX_KEY_COMBINATIONS = 10_000
QUANTILE_CANDIDATES = 101  # evenly spaced over the column's declared bounds: a quantile is one of them

_COMPARISONS: dict[type[exp.Expr], str] = {exp.EQ: "eq", exp.NEQ: "ne", exp.GT: "gt", exp.GTE: "ge", exp.LT: "lt",
                                            exp.LTE: "le"}
_ARITHMETIC: dict[type[exp.Expr], str] = {exp.Add: "add", exp.Sub: "sub", exp.Mul: "mul"}


def _refuse(reasons: list[str]) -> Refused:
    return Refused("the query was refused", action="data.query", reasons=reasons)


def spec(plan: AggregatePlan, *, bounds: dict[str, list[float]], keys: dict[str, list[Any]],
         max_rows_per_entity: int, max_length: int, epsilon: float, delta: float = 0.0) -> dict[str, Any]:
    """The release OpenDP will make for ``plan``, or Refused naming what a DP answer cannot take.

    With ``delta`` > 0, GROUP BY may also take columns whose values were not declared public: only the
    groups whose noisy count clears a threshold OpenDP sets from ε and δ are released, so a group of a
    few people (whose mere existence could say who is in the data) is almost never seen.
    """
    reasons: list[str] = []
    key_names = [_key_column(key, keys, delta, reasons) for key in plan.keys]
    thresholded = any(name not in keys for name in key_names)
    cells = [_cell(cell, key_names, bounds, reasons) for cell in plan.cells]
    where = _predicate(plan.where, reasons) if plan.where is not None else None
    combinations = 1
    for name in key_names:
        combinations *= len(keys.get(name, [])) or 1
    if not thresholded and combinations > MAX_KEY_COMBINATIONS:
        reasons.append(f"the GROUP BY keys make {combinations} groups; at most {MAX_KEY_COMBINATIONS}")
    if not any(cell["kind"] != "key" for cell in cells):
        reasons.append("a sensitive dataset answers aggregates: add COUNT(*), SUM(column) or AVG(column)")
    if reasons:
        raise _refuse(list(dict.fromkeys(reasons)))
    return {"keys": key_names, "key_values": {} if thresholded else {name: keys[name] for name in key_names},
            "cells": cells, "where": where, "contributions": max_rows_per_entity, "max_length": max(1, max_length),
            "epsilon": epsilon, "delta": delta if thresholded else 0.0}


def needs_delta(plan: AggregatePlan, keys: dict[str, list[Any]]) -> bool:
    """Whether the plan groups by a column whose values are not declared public (a thresholded release)."""
    return any(isinstance(key, exp.Column) and key.name not in keys for key in plan.keys)


def _key_column(key: exp.Expr, keys: dict[str, list[Any]], delta: float, reasons: list[str]) -> str:
    if not isinstance(key, exp.Column) or key.table:
        reasons.append(f"GROUP BY {key.sql(dialect='duckdb')}: group by a column whose values the steward declared "
                       "public")
        return ""
    name = key.name
    if name not in keys and delta <= 0:
        declared = ", ".join(sorted(keys)) or "none"
        reasons.append(f"GROUP BY {name}: its values are not declared public, so groups could reveal who is in the "
                       f"data, and this dataset allows no thresholded release (its δ cap is 0); declared: "
                       f"{declared}")
    return name


def _cell(cell: Any, key_names: list[str], bounds: dict[str, list[float]], reasons: list[str]) -> dict[str, Any]:
    if cell.kind == "key":
        return {"name": cell.name, "kind": "key", "key": key_names[cell.key] if cell.key >= 0 else ""}
    if cell.kind == "count_star":
        return {"name": cell.name, "kind": "count"}
    if cell.kind in ("sum", "avg"):
        arg = cell.arg
        if not isinstance(arg, exp.Column) or arg.table:
            reasons.append(f"{cell.name}: SUM and AVG take one column here, clamped to its declared bounds "
                           "(filter rows with WHERE)")
            return {"name": cell.name, "kind": cell.kind}
        if arg.name not in bounds:
            declared = ", ".join(sorted(bounds)) or "none"
            reasons.append(f"{cell.name}: {arg.name} has no declared bounds, so one person's value could dominate; "
                           f"declared: {declared}")
            return {"name": cell.name, "kind": cell.kind}
        low, high = bounds[arg.name]
        return {"name": cell.name, "kind": "sum" if cell.kind == "sum" else "mean", "column": arg.name,
                "bounds": [float(low), float(high)]}
    if cell.kind == "quantile":
        arg = cell.arg
        if not isinstance(arg, exp.Column) or arg.table or arg.name not in bounds:
            reasons.append(f"{cell.name}: medians and quantiles take one column with declared bounds, which give "
                           "the candidate values")
            return {"name": cell.name, "kind": "quantile"}
        low, high = (float(b) for b in bounds[arg.name])
        step = (high - low) / (QUANTILE_CANDIDATES - 1)
        return {"name": cell.name, "kind": "quantile", "column": arg.name, "alpha": cell.alpha,
                "candidates": [low + i * step for i in range(QUANTILE_CANDIDATES)], "bounds": [low, high]}
    reasons.append(f"{cell.name}: COUNT(column) and COUNT(DISTINCT ...) are not answered with differential "
                   "privacy here; use COUNT(*) with a WHERE")
    return {"name": cell.name, "kind": cell.kind}


def _predicate(node: exp.Expr, reasons: list[str]) -> Any:
    """The WHERE clause as a small JSON tree the worker turns into a Polars expression."""
    if isinstance(node, exp.Paren):
        return _predicate(node.this, reasons)
    if isinstance(node, exp.Column) and not node.table:
        return ["col", node.name]
    if isinstance(node, exp.Literal):
        if node.is_string:
            return ["lit", node.this]
        return ["lit", float(node.this) if any(c in node.this for c in ".eE") else int(node.this)]
    if isinstance(node, exp.Boolean):
        return ["lit", bool(node.this)]
    if isinstance(node, exp.Neg):
        return ["neg", _predicate(node.this, reasons)]
    if type(node) in _COMPARISONS or type(node) in _ARITHMETIC:
        op = _COMPARISONS.get(type(node)) or _ARITHMETIC[type(node)]
        return [op, _predicate(node.this, reasons), _predicate(node.expression, reasons)]
    if isinstance(node, exp.And | exp.Or):
        return ["and" if isinstance(node, exp.And) else "or", _predicate(node.this, reasons),
                _predicate(node.expression, reasons)]
    if isinstance(node, exp.Not):
        return ["not", _predicate(node.this, reasons)]
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return ["is_null", _predicate(node.this, reasons)]
    if isinstance(node, exp.Between):
        return ["between", _predicate(node.this, reasons), _predicate(node.args["low"], reasons),
                _predicate(node.args["high"], reasons)]
    if isinstance(node, exp.In) and not node.args.get("query"):
        values = [_predicate(value, reasons) for value in node.expressions]
        if any(value[0] != "lit" for value in values if isinstance(value, list)):
            reasons.append("IN takes a list of literal values here")
        return ["in", _predicate(node.this, reasons), [value[1] for value in values if isinstance(value, list)]]
    reasons.append(f"{node.sql(dialect='duckdb')} is not supported in WHERE of a differentially private query; use "
                   "comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL and + - *")
    return ["lit", True]


# --- the worker side: runs in the sandbox worker, imports polars and opendp -------------------------


def _expr(tree: Any) -> Any:
    import polars as pl

    op, *args = tree
    if op == "col":
        return pl.col(args[0])
    if op == "lit":
        return pl.lit(args[0])
    if op == "neg":
        return -_expr(args[0])
    if op == "not":
        return ~_expr(args[0])
    if op == "is_null":
        return _expr(args[0]).is_null()
    if op == "between":
        return _expr(args[0]).is_between(_expr(args[1]), _expr(args[2]))
    if op == "in":
        return _expr(args[0]).is_in(args[1])
    left, right = _expr(args[0]), _expr(args[1])
    return {"eq": left.__eq__, "ne": left.__ne__, "gt": left.__gt__, "ge": left.__ge__, "lt": left.__lt__,
            "le": left.__le__, "add": left.__add__, "sub": left.__sub__, "mul": left.__mul__, "and": left.__and__,
            "or": left.__or__}[op](right)


def _aggregate(cell: dict[str, Any]) -> Any:
    import polars as pl

    if cell["kind"] == "count":
        return pl.len().dp.noise().alias(cell["name"])  # type: ignore[attr-defined]
    value: Any = pl.col(cell["column"]).cast(pl.Float64).fill_nan(0.0).fill_null(0.0)  # .dp: OpenDP's namespace
    bounds = tuple(cell["bounds"])
    if cell["kind"] == "quantile":
        return value.dp.quantile(cell["alpha"], cell["candidates"]).alias(cell["name"])
    if cell["kind"] == "sum":
        return value.dp.sum(bounds).alias(cell["name"])
    return value.dp.mean(bounds).alias(cell["name"])


def release(request: dict[str, Any], path: str) -> dict[str, Any]:
    """Make OpenDP's measurement for the request, check its privacy loss, and release it once."""
    import opendp.prelude as dp
    import polars as pl
    from opendp.accuracy import summarize_polars_measurement
    from opendp.extras.polars import Margin
    from opendp.measurements import make_private_lazyframe

    dp.enable_features("contrib", "honest-but-curious")
    epsilon, delta, keys = float(request["epsilon"]), float(request.get("delta", 0.0)), list(request["keys"])
    thresholded = bool(keys) and not request["key_values"]
    length = int(request["max_length"])
    margins = [Margin(by=[], max_length=length, max_groups=1)]
    key_rows = [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(request["key_values"].get(name, []) for name in keys))]
    if keys:  # unknown keys: at most one group per row is the only bound that needs no look at the data
        margins.append(Margin(by=keys, max_length=length, max_groups=length if thresholded else len(key_rows)))
    loss_of = dp.loss_of(epsilon=epsilon, delta=delta) if thresholded else dp.loss_of(epsilon=epsilon)
    context = dp.Context.compositor(data=pl.scan_parquet(path),
                                    privacy_unit=dp.unit_of(contributions=int(request["contributions"])),
                                    privacy_loss=loss_of, split_evenly_over=1, margins=margins)
    query = context.query()
    if request["where"] is not None:
        query = query.filter(_expr(request["where"]))
    cells = list(request["cells"])
    if thresholded and not any(cell["kind"] == "count" for cell in cells):
        cells.append({"name": HIDDEN_COUNT, "kind": "count"})  # the threshold is applied to a noisy count
    aggregates = [_aggregate(cell) for cell in cells if cell["kind"] != "key"]
    if thresholded:
        query = query.group_by(keys).agg(aggregates)
    elif keys:
        query = query.group_by(keys).agg(aggregates).with_keys(pl.DataFrame(key_rows))
    else:
        query = query.select(aggregates)
    plan, inner = object.__getattribute__(query, "polars_plan"), object.__getattribute__(query, "_query")
    domain, metric = inner._chain

    def measure(scale: float, threshold: int | None = None) -> tuple[Any, float, float]:
        made = make_private_lazyframe(domain, metric, inner._output_measure, plan, global_scale=scale,
                                      threshold=threshold)
        loss = made.map(inner._d_in)  # type: ignore[no-untyped-call]
        return (made, float(loss[0]), float(loss[1])) if thresholded else (made, float(loss), 0.0)

    # The loss OpenDP's map reports falls as 1/scale, so one trial scale says which scale spends ε; then,
    # for unknown keys, the smallest threshold whose δ fits (OpenDP's own search). OpenDP's map stays the
    # judge of the measurement actually used.
    ceiling = 2**32 - 1 if thresholded else None
    trial = 1.0
    measurement, loss, _ = measure(trial, ceiling)
    scale = trial * loss / epsilon
    for _ in range(50):
        measurement, loss, _ = measure(scale, ceiling)
        if loss <= epsilon:
            break
        scale *= 1.001
    else:
        raise RuntimeError("no noise scale met the privacy loss")
    if thresholded:
        threshold = int(dp.binary_search(lambda t: measure(scale, int(t))[2] <= delta, T=int))
        measurement, loss, spent_delta = measure(scale, threshold)
        if loss > epsilon or spent_delta > delta:
            raise RuntimeError("no threshold met the privacy loss")
    summary = summarize_polars_measurement(measurement, ALPHA)
    accuracy = {str(row["column"]): float(row["accuracy"]) for row in summary.iter_rows(named=True)
                if row["accuracy"] is not None}
    cutoffs = [row["threshold"] for row in summary.iter_rows(named=True) if row.get("threshold") is not None]
    released = inner._context(measurement)
    if any(cell["kind"] == "quantile" for cell in cells):
        frame = released.collect()  # a quantile's scorer cannot leave Rust as a Polars plan: no streaming
    else:
        frame = released.lazy().collect(engine="streaming")
    if keys:
        frame = frame.sort(keys, nulls_last=True)
    return {"frame": frame, "accuracy": accuracy, "threshold": int(max(cutoffs)) if cutoffs else None}


def answer(request: dict[str, Any], path: str) -> dict[str, Any]:
    """The released rows in the plan's column order, counts as non-negative integers, and the accuracy."""
    released = release(request, path)
    frame, accuracy = released["frame"], released["accuracy"]
    rows = []
    for record in frame.iter_rows(named=True):
        row = []
        for cell in request["cells"]:
            if cell["kind"] == "key":
                row.append(record[cell["key"]])
                continue
            value = record[cell["name"]]
            if cell["kind"] == "count":
                value = max(0, int(value or 0))  # post-processing: a count is never negative
            elif value is not None:
                value = float(value)
            row.append(value)
        rows.append(row)
    cells = [cell for cell in request["cells"] if cell["kind"] != "key"]
    error = {cell["name"]: _accuracy_of(cell, accuracy) for cell in cells}
    return {"columns": [cell["name"] for cell in request["cells"]], "rows": rows, "accuracy": error,
            "threshold": released["threshold"]}


def _accuracy_of(cell: dict[str, Any], accuracy: dict[str, float]) -> float | None:
    found = accuracy.get(cell["name"])
    return None if found is None or cell["kind"] in ("mean", "quantile") else found
