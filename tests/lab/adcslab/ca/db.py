"""The CA request database (SQLite, one file at <state>/ca/requests.db).

Dispositions are stored with the AD CS database values (certsrv.h DB_DISP_*), as ``certutil -view`` shows them.
One connection shared by all threads, serialised by a lock (the CA server is multi-threaded).
"""

import datetime
import sqlite3
import threading

DB_DISP_ACTIVE = 8
DB_DISP_PENDING = 9
DB_DISP_ISSUED = 20
DB_DISP_REVOKED = 21
DB_DISP_ERROR = 30
DB_DISP_DENIED = 31

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT,
    submitted_at TEXT NOT NULL,
    resolved_at TEXT,
    requester_name TEXT NOT NULL,
    requester_sid TEXT NOT NULL,
    requester_json TEXT NOT NULL,
    transport TEXT,
    flags INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    request_type TEXT,
    request_blob BLOB,
    template TEXT,
    template_oid TEXT,
    disposition INTEGER NOT NULL,
    status_hresult INTEGER NOT NULL DEFAULT 0,
    disposition_message TEXT NOT NULL DEFAULT '',
    subject TEXT,
    serial TEXT UNIQUE,
    certificate BLOB,
    not_before TEXT,
    not_after TEXT,
    revoked_at TEXT,
    revocation_reason INTEGER,
    archived_key BLOB,
    old_certificate BLOB
);
CREATE TABLE IF NOT EXISTS crls (
    kind TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    base_number INTEGER,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    crl BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_COLUMNS = ("request_id", "submitted_at", "resolved_at", "requester_name", "requester_sid", "requester_json",
            "transport", "flags", "attributes", "request_type", "request_blob", "template", "template_oid",
            "disposition", "status_hresult", "disposition_message", "subject", "serial", "certificate",
            "not_before", "not_after", "revoked_at", "revocation_reason", "archived_key",
            "old_certificate")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).isoformat() if moment else None


class RequestDB:
    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self.lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")   # WAL: commits survive a CA crash; no fsync each
            self._conn.executescript(_SCHEMA)
            columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(requests)")}
            if "archived_key" not in columns:  # databases from before key archival
                self._conn.execute("ALTER TABLE requests ADD COLUMN archived_key BLOB")
            if "old_certificate" not in columns:  # Request.RawOldCertificate (MS-CSRA 3.1.1.1.2), renewals
                self._conn.execute("ALTER TABLE requests ADD COLUMN old_certificate BLOB")

    def close(self):
        with self.lock:
            self._conn.close()

    # -- requests ---------------------------------------------------------------------------------------------
    def new_request(self, requester_name, requester_sid, requester_json, transport, flags, attributes, blob):
        """Insert a row in the 'active' state and return its request ID (monotonic, never reused)."""
        with self.lock:
            cursor = self._conn.execute(
                "INSERT INTO requests (submitted_at, requester_name, requester_sid, requester_json, transport, "
                "flags, attributes, request_blob, disposition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iso(utcnow()), requester_name, requester_sid, requester_json, transport, flags, attributes,
                 blob, DB_DISP_ACTIVE))
            return cursor.lastrowid

    def update(self, request_id, **values):
        if not values:
            return
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise KeyError("unknown request columns: %s" % ", ".join(sorted(unknown)))
        assignments = ", ".join("%s = ?" % name for name in values)
        with self.lock:
            self._conn.execute("UPDATE requests SET %s WHERE request_id = ?" % assignments,
                               list(values.values()) + [request_id])

    def get(self, request_id):
        with self.lock:
            row = self._conn.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return dict(row) if row else None

    def get_by_serial(self, serial_hex):
        with self.lock:
            row = self._conn.execute("SELECT * FROM requests WHERE serial = ?", (serial_hex.lower(),)).fetchone()
        return dict(row) if row else None

    def list(self, disposition=None):
        query = "SELECT * FROM requests"
        params = ()
        if disposition is not None:
            query += " WHERE disposition = ?"
            params = (disposition,)
        with self.lock:
            rows = self._conn.execute(query + " ORDER BY request_id", params).fetchall()
        return [dict(row) for row in rows]

    def revoked(self):
        with self.lock:
            rows = self._conn.execute(
                "SELECT serial, revoked_at, revocation_reason, certificate FROM requests WHERE disposition = ? "
                "ORDER BY request_id", (DB_DISP_REVOKED,)).fetchall()
        return [dict(row) for row in rows]

    # -- CRLs and small settings ----------------------------------------------------------------------------------
    def get_crl(self, kind):
        with self.lock:
            row = self._conn.execute("SELECT * FROM crls WHERE kind = ?", (kind,)).fetchone()
        return dict(row) if row else None

    def put_crl(self, kind, number, base_number, this_update, next_update, crl):
        with self.lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO crls (kind, number, base_number, this_update, next_update, crl) "
                "VALUES (?, ?, ?, ?, ?, ?)", (kind, number, base_number, iso(this_update), iso(next_update), crl))

    def next_counter(self, key):
        with self.lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            value = int(row["value"]) + 1 if row else 1
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
            return value
