"""SQLite measurement store (WAL): every latency a device reports, kept as it arrives.

Inserts are idempotent on the measurement id the device agent computes, so a result that
is re-sent after a lost connection is stored once. Each insert is its own transaction, so a
writer killed mid-run loses at most the row it was writing. The schema is versioned with
`PRAGMA user_version`; a store from a newer edge_eas is refused rather than misread.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edge_eas.errors import UserError
from edge_eas.cost.latency import latency_ms

SCHEMA_VERSION = 2  # 2: prediction_json (scenarios with accuracy targets)

SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    measurement_id   TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL,
    target           TEXT NOT NULL,
    engine           TEXT NOT NULL,
    threads          INTEGER,
    batch_size       INTEGER NOT NULL,
    bench_run        TEXT,
    scenario         TEXT,
    arch_json        TEXT NOT NULL,
    classes_json     TEXT,
    mflops           REAL,
    params           INTEGER,
    predicted_ms     REAL,
    median_ms        REAL NOT NULL,
    p90_ms           REAL,
    cv               REAL,
    noisy            INTEGER,
    stats_json       TEXT NOT NULL,
    environment_json TEXT,
    bundle_sha256    TEXT,
    runtime_version  TEXT,
    created_at       TEXT NOT NULL,
    prediction_json  TEXT
);
CREATE INDEX IF NOT EXISTS by_model ON measurements (target, engine, threads, batch_size);
CREATE INDEX IF NOT EXISTS by_run ON measurements (bench_run, device_id);
CREATE TABLE IF NOT EXISTS bundles (
    sha256      TEXT PRIMARY KEY,
    space_json  TEXT NOT NULL,
    class_names TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS block_profiles (
    target     TEXT NOT NULL,
    engine     TEXT NOT NULL,
    threads    INTEGER NOT NULL,
    block_key  TEXT NOT NULL,
    median_ms  REAL NOT NULL,
    stats_json TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (target, engine, threads, block_key)
);
"""


FIXED = "fixed"


def fixed_key(space_digest: str) -> str:
    """The block_profiles key of a space's fixed term (rows named plain 'fixed' predate spaces
    being told apart and are never used: they may belong to another space)."""
    return f"{FIXED}@{space_digest}"


@dataclass(frozen=True)
class Measurement:
    measurement_id: str
    device_id: str
    target: str
    engine: str
    threads: int | None
    batch_size: int
    arch: dict[str, Any]
    median_ms: float
    stats: dict[str, Any]
    bench_run: str | None = None
    scenario: str | None = None
    classes: list[int] | None = None
    mflops: float | None = None
    params: int | None = None
    predicted_ms: float | None = None
    environment: dict[str, Any] | None = None
    bundle_sha256: str | None = None
    runtime_version: str | None = None
    prediction: dict[str, Any] | None = None  # accuracy target and predicted accuracy (`target_prediction`)

    @classmethod
    def from_agent(cls, line: dict[str, Any], device_id: str, target: str, bench_run: str | None) -> "Measurement":
        """A 'measurement' line of the device agent's output."""
        return cls(measurement_id=line["measurement_id"], device_id=device_id, target=target, engine=line["engine"],
                   threads=line.get("threads"), batch_size=int(line.get("batch_size", 1)), arch=line["arch"],
                   median_ms=float(line["stats"]["median_ms"]), stats=line["stats"], bench_run=bench_run,
                   scenario=line.get("scenario"), classes=line.get("classes"), mflops=line.get("mflops"),
                   params=line.get("params"), predicted_ms=line.get("predicted_ms"),
                   environment=line.get("environment"), bundle_sha256=line.get("bundle_sha256"),
                   runtime_version=line.get("runtime_version"), prediction=target_prediction(line))


def target_prediction(line: dict[str, Any]) -> dict[str, Any] | None:
    """What a line says about accuracy: the scenario's target (min_accuracy) where it had one,
    and the answer's predicted accuracy, interval and safe value where the bundle predicts;
    None when neither."""
    target, prediction = line.get("min_accuracy"), line.get("prediction")
    if target is None and prediction is None:
        return None
    return {**({"min_accuracy": target} if target is not None else {}), **(prediction or {})}


class MeasurementStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a readable measurement store: {exc}") from None
        if version > SCHEMA_VERSION:
            self.db.close()
            raise UserError(f"measurement store {self.path} has schema version {version}, newer than this "
                            f"edge_eas supports ({SCHEMA_VERSION}): upgrade edge_eas to read it")
        if version < SCHEMA_VERSION:
            with self._tx():  # executescript would commit early; run the DDL inside one transaction
                if version == 1:  # a store from before targets: add the column, keep every row
                    self.db.execute("ALTER TABLE measurements ADD COLUMN prediction_json TEXT")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _tx(self):  # type: ignore[no-untyped-def]
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "MeasurementStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writes -------------------------------------------------------------------------
    def insert(self, m: Measurement) -> bool:
        """Store one measurement; False when its id was already stored (a re-send)."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        cur = self.db.execute(
            "INSERT OR IGNORE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m.measurement_id, m.device_id, m.target, m.engine, m.threads, m.batch_size, m.bench_run, m.scenario,
             json.dumps(m.arch, sort_keys=True), json.dumps(m.classes), m.mflops, m.params, m.predicted_ms,
             m.median_ms, m.stats.get("p90_ms"), m.stats.get("cv"), int(bool(m.stats.get("noisy"))),
             json.dumps(m.stats), json.dumps(m.environment) if m.environment is not None else None,
             m.bundle_sha256, m.runtime_version, now,
             json.dumps(m.prediction, sort_keys=True) if m.prediction is not None else None))
        return cur.rowcount == 1

    def put_bundle(self, sha256: str, space: dict[str, Any], class_names: list[str]) -> None:
        """Remember which search space a bundle's archs belong to (calibration needs it)."""
        self.db.execute("INSERT OR IGNORE INTO bundles VALUES (?,?,?)",
                        (sha256, json.dumps(space, sort_keys=True), json.dumps(class_names)))

    def bundle_space(self, sha256: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT space_json FROM bundles WHERE sha256 = ?", (sha256,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_block_profile(self, target: str, engine: str, threads: int | None, block_key: str, median_ms: float,
                          stats: dict[str, Any] | None = None) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        self.db.execute("INSERT OR REPLACE INTO block_profiles VALUES (?,?,?,?,?,?,?)",
                        (target, engine, threads or 0, block_key, median_ms, json.dumps(stats or {}), now))

    # ---- reads --------------------------------------------------------------------------
    def measurements(self, target: str | None = None, engine: str | None = None, threads: int | None = None,
                     batch_size: int | None = 1, bench_run: str | None = None,
                     device_id: str | None = None) -> list[dict[str, Any]]:
        clauses, args = [], []  # type: list[str], list[Any]
        for col, val in (("target", target), ("engine", engine), ("batch_size", batch_size),
                         ("bench_run", bench_run), ("device_id", device_id)):
            if val is not None:
                clauses.append(f"{col} = ?")
                args.append(val)
        if threads is not None:
            clauses.append("threads IS ?")
            args.append(threads)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(f"SELECT * FROM measurements {where} ORDER BY created_at, measurement_id", args)
        cols = [c[0] for c in rows.description]
        return [self._decode(dict(zip(cols, r))) for r in rows.fetchall()]

    def scenarios_done(self, bench_run: str, device_id: str) -> set[str]:
        rows = self.db.execute("SELECT scenario FROM measurements WHERE bench_run = ? AND device_id = ?",
                               (bench_run, device_id))
        return {r[0] for r in rows.fetchall()}

    def block_profiles(self, target: str, engine: str, threads: int | None,
                       space_digest: str | None = None) -> dict[str, float]:
        """The device's per-block entries, shared by every space (a block config's time does not
        depend on the network around it), plus, as 'fixed', the fixed term profiled for the
        space `space_digest` (stem, head and invoke differ between spaces)."""
        rows = dict(self.db.execute("SELECT block_key, median_ms FROM block_profiles WHERE target=? AND engine=? AND "
                                    "threads=?", (target, engine, threads or 0)).fetchall())
        out = {k: v for k, v in rows.items() if not k.startswith(FIXED)}
        if space_digest is not None and fixed_key(space_digest) in rows:
            out[FIXED] = rows[fixed_key(space_digest)]
        return out

    def reference_hints(self, target: str, bundle_sha256: str, threads: int | None,
                        batch_size: int = 1) -> dict[str, float]:
        """engine -> the fastest the bundle's speed reference ran in the stored measurements of
        this target (runtime/timing.SpeedReference.settle takes it as a starting best)."""
        rows = self.db.execute("SELECT engine, stats_json FROM measurements WHERE target=? AND bundle_sha256=? AND "
                               "threads=? AND batch_size=?", (target, bundle_sha256, threads or 0, batch_size))
        best: dict[str, float] = {}
        for engine, stats_json in rows.fetchall():
            stats = json.loads(stats_json)
            ms = min((v for v in (stats.get("reference_ms"), stats.get("reference_best_ms")) if v), default=None)
            if ms is not None and ms > 0:
                best[engine] = min(best.get(engine, ms), float(ms))
        return best

    def fixed_profile(self, target: str, engine: str, threads: int | None, space_digest: str) -> dict[str, Any]:
        """The space's 'fixed' profile row as the agent sent it (entry_scale, probe_archs, ...),
        empty when there is none."""
        row = self.db.execute("SELECT stats_json FROM block_profiles WHERE target=? AND engine=? AND threads=? AND "
                              "block_key=?", (target, engine, threads or 0, fixed_key(space_digest))).fetchone()
        return dict(json.loads(row[0] or "{}")) if row else {}

    def fixed_probe_archs(self, target: str, engine: str, threads: int | None, space_digest: str) -> list[dict[str, Any]]:
        """The archs the space's profiled fixed term was fitted to: an evaluation leaves them out
        of its held-out set."""
        return list(self.fixed_profile(target, engine, threads, space_digest).get("probe_archs") or [])

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for col in ("arch_json", "classes_json", "stats_json", "environment_json", "prediction_json"):
            value = row.pop(col)
            row[col[:-5]] = json.loads(value) if value is not None else None
        row["latency_ms"] = latency_ms({"median_ms": row["median_ms"], **row["stats"]})
        return row

    def iter_models(self) -> Iterator[tuple[str, str, int | None]]:
        yield from self.db.execute("SELECT DISTINCT target, engine, threads FROM measurements").fetchall()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
