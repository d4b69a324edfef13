"""The ERP's side of a run, spilled to a local SQLite file: every project's record keyed by the path its workspace
must have, so the platform's workspaces (read in whatever order the platform lists them) are each matched with
one indexed lookup, and memory stays the same for 1,000 projects or 1,000,000.

The file outlives a crash (a resumed run reads it again, with the top-level folders already compared), and is
removed when the run ends.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.reconciliation.compare import key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS planned (path TEXT PRIMARY KEY, code TEXT NOT NULL, record TEXT NOT NULL,
                                    item_id TEXT, matched INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS planned_code ON planned (code);
CREATE TABLE IF NOT EXISTS groups_done (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS crosswalk (code TEXT PRIMARY KEY, canonical TEXT NOT NULL, linked TEXT);
CREATE TABLE IF NOT EXISTS phases (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS touched (path TEXT PRIMARY KEY, shown TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retention (folder TEXT PRIMARY KEY, policies TEXT NOT NULL);
"""


class Spill:
    """A run's scratch tables in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)

    def close(self, *, remove: bool = False) -> None:
        """Close the file (and delete it: the run ended)."""
        self.db.close()
        if remove:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def done(self, phase: str) -> bool:
        """Whether a phase was finished by this run (or an attempt of it that crashed later)."""
        return self.db.execute("SELECT 1 FROM phases WHERE name = ?", (phase,)).fetchone() is not None

    def finish(self, phase: str) -> None:
        """Mark a phase finished."""
        self.db.execute("INSERT OR IGNORE INTO phases VALUES (?)", (phase,))

    def set(self, name: str, value: str) -> None:
        """Keep a value for this run (the platform's change cursor)."""
        self.db.execute("INSERT OR REPLACE INTO notes VALUES (?, ?)", (name, value))

    def get(self, name: str) -> str | None:
        """A value kept for this run."""
        row = self.db.execute("SELECT value FROM notes WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def keep_retention(self, index: Mapping[str, Sequence[str]]) -> None:
        """Keep Box's retention assignments as this run read them (folder id -> policy names)."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM retention")
        self.db.executemany("INSERT INTO retention VALUES (?, ?)",
                            ((folder, json.dumps(sorted(names))) for folder, names in index.items()))
        self.db.execute("INSERT OR REPLACE INTO notes VALUES ('retention', 'kept')")
        self.db.execute("COMMIT")

    def retention(self) -> dict[str, list[str]] | None:
        """Box's retention assignments as this run read them; None: not read."""
        if self.get("retention") is None:
            return None
        return {str(folder): json.loads(names) for folder, names in self.db.execute("SELECT * FROM retention")}

    def touch(self, path: str) -> None:
        """A workspace path the platform reported a change in (an incremental run compares it)."""
        self.db.execute("INSERT OR IGNORE INTO touched VALUES (?, ?)", (key(path), path))

    def candidate_paths(self) -> list[str]:
        """Incremental: the planned workspace paths and the changed ones, each once, by path."""
        rows = self.db.execute("SELECT path FROM planned WHERE path NOT LIKE char(0) || '%' UNION "
                               "SELECT shown FROM touched ORDER BY 1")
        unique: dict[str, str] = {}
        for (path,) in rows:
            unique.setdefault(key(str(path)), str(path))
        return list(unique.values())

    def plan(self, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
        """Keep (workspace path, project code, ERP record) rows; returns how many."""
        count = 0

        def values() -> Iterator[tuple[str, str, str]]:
            nonlocal count
            for path, code, record in rows:
                count += 1
                yield key(path), code, json.dumps(record, default=str)

        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO planned (path, code, record) VALUES (?, ?, ?)", values())
        self.db.execute("COMMIT")
        return count

    def planned_count(self) -> int:
        """How many projects have a planned workspace."""
        return int(self.db.execute("SELECT count(*) FROM planned").fetchone()[0])

    def match(self, path: str, item_id: str) -> tuple[str, dict[str, Any]] | None:
        """The project whose workspace is at ``path`` (code, ERP record), marked as found; None: an orphan."""
        return self.match_all([(path, item_id)])[0]

    def match_all(self, found: Sequence[tuple[str, str]]) -> list[tuple[str, dict[str, Any]] | None]:
        """Each (workspace path, item id) matched as :meth:`match` matches it: one lookup, one update, for all."""
        keys = [key(path) for path, _ in found]
        rows = {str(path): (str(code), str(record)) for path, code, record in self.db.execute(
            "SELECT path, code, record FROM planned WHERE path IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),))}
        self.db.executemany("UPDATE planned SET matched = 1, item_id = ? WHERE path = ?",
                            [(item_id, k) for (_, item_id), k in zip(found, keys, strict=True) if k in rows])
        return [(rows[k][0], json.loads(rows[k][1])) if k in rows else None for k in keys]

    def begin(self) -> None:
        """Start a unit of work (a top-level folder's matches and its mark)."""
        self.db.execute("BEGIN")

    def commit(self) -> None:
        """End the unit of work."""
        self.db.execute("COMMIT")

    def group_done(self, name: str) -> bool:
        """Whether a top-level folder was compared by an earlier attempt of this run."""
        return self.db.execute("SELECT 1 FROM groups_done WHERE name = ?", (key(name),)).fetchone() is not None

    def mark_group(self, name: str) -> None:
        """Record a top-level folder as compared."""
        self.db.execute("INSERT OR IGNORE INTO groups_done VALUES (?)", (key(name),))

    def unmatched(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Projects whose workspace was not found: (path, code, record), by path."""
        for path, code, record in self.db.execute("SELECT path, code, record FROM planned WHERE matched = 0 "
                                                  "ORDER BY path"):
            yield str(path), str(code), json.loads(record)

    def link(self, rows: Iterable[tuple[str, str, str | None]]) -> None:
        """Keep the crosswalk's (ERP project code, canonical id, linked workspace id) rows."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM crosswalk")
        self.db.executemany("INSERT OR REPLACE INTO crosswalk VALUES (?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def crosswalk_missing(self) -> Iterator[str]:
        """ERP project codes the crosswalk does not know."""
        for (code,) in self.db.execute("SELECT p.code FROM planned p LEFT JOIN crosswalk c ON c.code = p.code "
                                       "WHERE c.code IS NULL ORDER BY p.code"):
            yield str(code)

    def crosswalk_stale(self) -> Iterator[tuple[str, str]]:
        """(code, canonical id) the crosswalk knows and the ERP no longer has."""
        for code, canonical in self.db.execute("SELECT c.code, c.canonical FROM crosswalk c LEFT JOIN planned p "
                                               "ON p.code = c.code WHERE p.code IS NULL ORDER BY c.code"):
            yield str(code), str(canonical)

    def link_drift(self) -> Iterator[tuple[str, str, str | None]]:
        """(code, workspace id found, workspace id the crosswalk links) where they differ."""
        for code, item_id, linked in self.db.execute(
                "SELECT p.code, p.item_id, c.linked FROM planned p JOIN crosswalk c ON c.code = p.code "
                "WHERE p.item_id IS NOT NULL AND (c.linked IS NULL OR c.linked != p.item_id) ORDER BY p.code"):
            yield str(code), str(item_id), None if linked is None else str(linked)
