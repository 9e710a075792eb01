"""Parquet files written by DuckDB once per run, and the grants the tests query them under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from sovstack.data.sandbox import GrantedTable

# 60 people with 1-3 visits each (1 + id % 3). Regions by person: north 0-29 (30 people), south 30-39
# (exactly 10), east 40-44 (5, below k), west 45-59 (15; person 45's one visit dwarfs the rest).
VISITS = """
    SELECT p AS person_id, 'person ' || p AS name,
           CASE WHEN p < 30 THEN 'north' WHEN p < 40 THEN 'south' WHEN p < 45 THEN 'east' ELSE 'west' END AS region,
           CASE WHEN p = 45 THEN 100000 ELSE 10 END AS amount,
           CAST(DATE '2024-01-01' + INTERVAL (v) DAY AS DATE) AS visit_date
    FROM range(60) people(p), range(3) visits(v)
    WHERE v <= p % 3
"""
REGIONS = "SELECT * FROM (VALUES ('north', 'N'), ('south', 'S'), ('east', 'E'), ('west', 'W')) t(region, code)"
SECRET_TEXT = "the launch codes are 0000"


@dataclass(frozen=True)
class Files:
    visits: Path
    regions: Path
    secret: Path


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("parquet")
    made = Files(folder / "visits.parquet", folder / "regions.parquet", folder / "secret.parquet")
    with duckdb.connect(":memory:") as conn:
        conn.execute(f"COPY ({VISITS}) TO '{made.visits}' (FORMAT parquet)")
        conn.execute(f"COPY ({REGIONS}) TO '{made.regions}' (FORMAT parquet)")
        conn.execute(f"COPY (SELECT '{SECRET_TEXT}' AS text) TO '{made.secret}' (FORMAT parquet)")
    return made


@pytest.fixture(scope="session")
def tables(files: Files) -> list[GrantedTable]:
    """clinic_visits (aggregate, k=10, rounding 5, dominance top 2 < 90%); visits_full and regions (full)."""
    return [
        GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id"),
        GrantedTable("visits_full", files.visits, "full"),
        GrantedTable("regions", files.regions, "full"),
    ]
