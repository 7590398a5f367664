"""The lab CA's view of Active Directory: templates, its enrollment service, accounts and the CDP object, read over
LDAPS (ldap3) from the lab DC at request time, as an AD CS Enterprise CA's policy module reads them.

``DirectoryConfig.discover(state_dir)`` finds the connection details (``<state>/lab.json``, else the lab's fixed
addresses plus the Administrator password from ``<state>/accounts.json`` once the lab AD has been seeded).
``LabDirectory`` holds one LDAP connection (re-bound when it breaks) guarded by a lock.

Reads are cached as a Windows CA caches templates and their rights (``DirectoryCache``): the enrollment service,
the templates (with their security descriptors) and the requester accounts (with tokenGroups) are kept for at
most ``ADCSLAB_DIRECTORY_CACHE_SECONDS`` (default 30 s; 0 turns the cache off) and only while the DC's
``highestCommittedUSN`` (rootDSE: it grows with every write to any partition) is the one they were read at. So a
template or ACL changed over LDAP still takes effect on the next request (tests change templates at runtime), at
the cost of one rootDSE read per request instead of four searches: the reads of one request
(``LabDirectory.request()``) share one USN check; a read outside a request checks on its own. Values derived from
the reads (parsed templates: ``cached``) are kept under the same rules. ``invalidate()`` drops everything at once.
"""

import contextlib
import copy
import json
import logging
import os
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import List, Optional

log = logging.getLogger("adcslab.ca.directory")

SD_FLAGS_OID = "1.2.840.113556.1.4.801"  # LDAP_SERVER_SD_FLAGS_OID
DACL_SECURITY_INFORMATION = 0x04
OWNER_SECURITY_INFORMATION = 0x01
GROUP_SECURITY_INFORMATION = 0x02

# Defaults = the lab's fixed facts (docs/dev-brief.md), used when lab.json is not written yet (first start).
DEFAULT_DC_ADDRESS = "127.0.0.11"
DEFAULT_DC_NAME = "dc1.lab.adcs.test"
DEFAULT_BASE_DN = "DC=lab,DC=adcs,DC=test"
DEFAULT_DNS_DOMAIN = "lab.adcs.test"

TEMPLATE_ATTRIBUTES = [
    "cn", "displayName", "flags", "revision", "pKIKeyUsage", "pKIExpirationPeriod", "pKIOverlapPeriod",
    "pKIExtendedKeyUsage", "pKICriticalExtensions", "msPKI-Cert-Template-OID", "msPKI-Template-Schema-Version",
    "msPKI-Template-Minor-Revision", "msPKI-Certificate-Name-Flag", "msPKI-Enrollment-Flag",
    "msPKI-Private-Key-Flag", "msPKI-Minimal-Key-Size", "msPKI-RA-Signature", "msPKI-RA-Application-Policies",
    "msPKI-Certificate-Application-Policy", "msPKI-Certificate-Policy", "nTSecurityDescriptor", "distinguishedName",
]
ACCOUNT_ATTRIBUTES = ["distinguishedName", "sAMAccountName", "objectSid", "objectGUID", "userPrincipalName", "mail",
                      "dNSHostName", "cn", "objectClass", "servicePrincipalName"]


CACHE_SECONDS_ENV = "ADCSLAB_DIRECTORY_CACHE_SECONDS"
DEFAULT_CACHE_SECONDS = 30.0


class DirectoryError(Exception):
    """The lab AD could not be reached or answered something unusable."""


def cache_seconds_from_env(default=DEFAULT_CACHE_SECONDS):
    try:
        return max(0.0, float(os.environ.get(CACHE_SECONDS_ENV, default)))
    except ValueError:
        return default


class DirectoryCache:
    """Read results by key, valid for ``seconds`` and while the directory's change number (USN) is unchanged.

    ``usn()`` reads the change number: once per ``get`` outside a request, once per request inside ``request()``
    (the first read of a request checks; its later reads trust that check, so a change made just before a request
    is always seen, and one made during a request is seen by the next). The scope is per thread: each connection of
    the lab CA server handles its requests in its own thread."""

    def __init__(self, seconds, usn, clock=time.monotonic):
        self.seconds = seconds
        self._usn = usn
        self._clock = clock
        self._entries = {}
        self._at_usn = None
        self._scope = threading.local()
        self.hits = 0
        self.misses = 0
        self.usn_reads = 0

    def invalidate(self):
        self._entries.clear()
        self._at_usn = None

    @contextlib.contextmanager
    def request(self):
        """The reads inside share one USN check (nested scopes join the outer one)."""
        depth = getattr(self._scope, "depth", 0)
        if depth == 0:
            self._scope.checked = False
        self._scope.depth = depth + 1
        try:
            yield self
        finally:
            self._scope.depth = depth
            if depth == 0:
                self._scope.checked = False

    def _check_usn(self):
        if getattr(self._scope, "depth", 0) and self._scope.checked:
            return
        self.usn_reads += 1
        usn = self._usn()
        if usn != self._at_usn:   # something changed in AD (or first use): nothing cached is trusted
            self._entries.clear()
            self._at_usn = usn
        if getattr(self._scope, "depth", 0):
            self._scope.checked = True

    def get(self, key, load):
        if self.seconds <= 0:
            return load()
        self._check_usn()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.seconds:
            self.hits += 1
            return copy.deepcopy(entry[1])
        self.misses += 1
        value = load()
        self._entries[key] = (now, copy.deepcopy(value))
        return value


def sid_to_str(data):
    """Binary SID (MS-DTYP 2.4.2) -> S-1-... string."""
    data = bytes(data)
    if len(data) < 8:
        raise ValueError("SID too short")
    revision, count = data[0], data[1]
    authority = int.from_bytes(data[2:8], "big")
    subs = struct.unpack("<%dI" % count, data[8:8 + 4 * count])
    return "S-%d-%d%s" % (revision, authority, "".join("-%d" % s for s in subs))


def sid_to_bytes(text):
    parts = text.strip().upper().split("-")
    if len(parts) < 3 or parts[0] != "S":
        raise ValueError("not a SID: %r" % text)
    subs = [int(p) for p in parts[3:]]
    head = bytes([int(parts[1]), len(subs)]) + int(parts[2]).to_bytes(6, "big")
    return head + struct.pack("<%dI" % len(subs), *subs)


def _escape_bytes(data):
    return "".join("\\%02x" % b for b in data)


@dataclass
class DirectoryConfig:
    address: str
    port: int
    tls_name: str
    ca_bundle: Optional[str]
    bind_user: str
    bind_password: str
    base_dn: str
    dns_domain: str

    @property
    def config_dn(self):
        return "CN=Configuration," + self.base_dn

    @property
    def pks_dn(self):
        return "CN=Public Key Services,CN=Services," + self.config_dn

    @classmethod
    def discover(cls, state_dir):
        """Connection details for the lab AD of ``state_dir``, or None when no directory is configured there.

        A directory is configured when ``lab.json`` exists, or when the lab AD has been seeded (``seed-version``
        marker) and ``accounts.json`` holds the Administrator's password (the lab writes lab.json only after the
        lab CA has started)."""
        state_dir = os.path.abspath(state_dir)
        lab_json = os.path.join(state_dir, "lab.json")
        accounts_json = os.path.join(state_dir, "accounts.json")
        if os.path.exists(lab_json):
            with open(lab_json, "r", encoding="utf-8") as handle:
                lab = json.load(handle)
            dc = lab.get("dc") or {}
            admin = (lab.get("accounts") or {}).get("admin") or {}
            if admin.get("password"):
                return cls(address=dc.get("address", DEFAULT_DC_ADDRESS), port=int(dc.get("ldaps_port", 636)),
                           tls_name=dc.get("tls_name") or dc.get("hostname") or DEFAULT_DC_NAME,
                           ca_bundle=lab.get("ca_bundle") or _bundle(state_dir),
                           bind_user=admin.get("upn") or "Administrator@" + lab.get("domain", DEFAULT_DNS_DOMAIN),
                           bind_password=admin["password"], base_dn=lab.get("base_dn", DEFAULT_BASE_DN),
                           dns_domain=lab.get("domain", DEFAULT_DNS_DOMAIN))
        if os.path.exists(os.path.join(state_dir, "seed-version")) and os.path.exists(accounts_json):
            with open(accounts_json, "r", encoding="utf-8") as handle:
                accounts = json.load(handle)
            for record in accounts:
                if str(record.get("sam", "")).lower() == "administrator" and record.get("password"):
                    return cls(address=DEFAULT_DC_ADDRESS, port=636, tls_name=DEFAULT_DC_NAME,
                               ca_bundle=_bundle(state_dir),
                               bind_user=record.get("upn") or "Administrator@" + DEFAULT_DNS_DOMAIN,
                               bind_password=record["password"], base_dn=DEFAULT_BASE_DN,
                               dns_domain=record.get("dns_domain") or DEFAULT_DNS_DOMAIN)
        return None


def _bundle(state_dir):
    path = os.path.join(state_dir, "pki", "ca-bundle.pem")
    return path if os.path.exists(path) else None


@dataclass
class DirectoryAccount:
    """The requester's account as the policy module reads it."""
    dn: Optional[str]
    sam: str
    sid: str
    token_groups: List[str] = field(default_factory=list)
    upn: Optional[str] = None
    mail: Optional[str] = None
    dns_host_name: Optional[str] = None
    cn: Optional[str] = None
    object_guid: Optional[bytes] = None
    is_computer: bool = False


class LabDirectory:
    """LDAPS access to the lab AD. Thread-safe (one connection, one lock, re-bound on failure)."""

    def __init__(self, config: DirectoryConfig, timeout=10, cache_seconds=None):
        self.config = config
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn = None
        self.cache = DirectoryCache(cache_seconds_from_env() if cache_seconds is None else cache_seconds,
                                    self._highest_usn)

    def invalidate(self):
        """Forget every cached read (the next request reads AD again)."""
        with self._lock:
            self.cache.invalidate()

    def _highest_usn(self):
        def run(conn):
            if not conn.search("", "(objectClass=*)", search_scope="BASE", attributes=["highestCommittedUSN"]):
                from ldap3.core.exceptions import LDAPException
                raise LDAPException(conn.result.get("description"))
            return self._text(conn.response[0], "highestCommittedUSN")

        return self._call(run)

    def _cached(self, key, load):
        with self._lock:
            return self.cache.get(key, load)

    def cached(self, key, load):
        """A value derived from directory reads (``load`` reads through this directory), kept under the cache's
        rules (its lifetime, dropped when AD changes); ``key`` must not collide with the read keys (a tuple whose
        first item names the kind: "template", ...)."""
        return self._cached(("derived",) + tuple(key), load)

    def request(self):
        """Context of one request: its directory reads share one check of AD's change number."""
        return self.cache.request()

    # -- connection ------------------------------------------------------------------------------------------
    def _connect(self):
        import ssl

        from ldap3 import NONE, SIMPLE, Connection, Server, Tls

        tls = Tls(validate=ssl.CERT_REQUIRED if self.config.ca_bundle else ssl.CERT_NONE,
                  ca_certs_file=self.config.ca_bundle, valid_names=[self.config.tls_name])
        server = Server(self.config.address, port=self.config.port, use_ssl=True, tls=tls, get_info=NONE,
                        connect_timeout=self.timeout)
        conn = Connection(server, user=self.config.bind_user, password=self.config.bind_password,
                          authentication=SIMPLE, receive_timeout=self.timeout, raise_exceptions=False)
        if not conn.bind():
            raise DirectoryError("LDAP bind to %s:%d as %s failed: %s" % (
                self.config.address, self.config.port, self.config.bind_user, conn.result.get("description")))
        return conn

    def close(self):
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.unbind()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
                self._conn = None

    def _call(self, operation):
        """Run ``operation(conn)``; reconnect once when the connection broke."""
        from ldap3.core.exceptions import LDAPException

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    return operation(self._conn)
                except (LDAPException, OSError) as exc:
                    self.close()
                    if attempt == 2:
                        raise DirectoryError("LDAP error talking to %s: %s" % (self.config.address, exc))
        raise DirectoryError("unreachable")

    def _search(self, base, flt, attributes, scope="SUBTREE", controls=None):
        from ldap3 import BASE, SUBTREE

        def run(conn):
            ok = conn.search(base, flt, search_scope=BASE if scope == "BASE" else SUBTREE, attributes=attributes,
                             controls=controls)
            if not ok and conn.result.get("result") not in (0, 32):  # 32 = noSuchObject
                from ldap3.core.exceptions import LDAPException
                if conn.result.get("result") in (-1, 1, 51, 52, 80):
                    raise LDAPException(conn.result.get("description"))
                raise DirectoryError("LDAP search %s (%s) failed: %s" % (base, flt, conn.result.get("description")))
            return [item for item in (conn.response or []) if item.get("type") == "searchResEntry"]

        return self._call(run)

    @staticmethod
    def _raw(entry, name):
        raw = entry.get("raw_attributes") or {}
        for key, values in raw.items():
            if key.lower() == name.lower():
                return [bytes(v) for v in values]
        return []

    @classmethod
    def _text(cls, entry, name):
        values = cls._raw(entry, name)
        return values[0].decode("utf-8") if values else None

    @classmethod
    def _texts(cls, entry, name):
        return [v.decode("utf-8") for v in cls._raw(entry, name)]

    # -- reads -------------------------------------------------------------------------------------------------
    def enrollment_service(self, ca_name):
        """The CA's pKIEnrollmentService object: dict(dn, templates, dns_host_name, flags), or None."""
        from ldap3.utils.dn import escape_rdn

        dn = "CN=%s,CN=Enrollment Services,%s" % (escape_rdn(ca_name), self.config.pks_dn)

        def load():
            entries = self._search(dn, "(objectClass=pKIEnrollmentService)",
                                   ["certificateTemplates", "dNSHostName", "flags", "cn"], scope="BASE")
            if not entries:
                return None
            entry = entries[0]
            return {"dn": dn, "templates": self._texts(entry, "certificateTemplates"),
                    "dns_host_name": self._text(entry, "dNSHostName"), "flags": int(self._text(entry, "flags") or 0)}

        return self._cached(("service", ca_name.lower()), load)

    def template_entries(self, name_or_oid=None):
        """Raw pKICertificateTemplate entries (with the DACL), all or the one named by cn or OID."""
        from ldap3.utils.conv import escape_filter_chars

        base = "CN=Certificate Templates," + self.config.pks_dn
        if name_or_oid:
            value = escape_filter_chars(name_or_oid.strip())
            flt = "(&(objectClass=pKICertificateTemplate)(|(cn=%s)(msPKI-Cert-Template-OID=%s)))" % (value, value)
        else:
            flt = "(objectClass=pKICertificateTemplate)"
        control = (SD_FLAGS_OID, True, bytes([0x30, 0x03, 0x02, 0x01, DACL_SECURITY_INFORMATION
                                              | OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION]))
        return self._cached(("templates", (name_or_oid or "").strip().lower()),
                            lambda: self._search(base, flt, TEMPLATE_ATTRIBUTES, controls=[control]))

    def account(self, sam=None, sid=None):
        """The account by sAMAccountName (else objectSid), with its tokenGroups, or None."""
        return self._cached(("account", (sam or "").lower(), sid), lambda: self._read_account(sam, sid))

    def _read_account(self, sam, sid):
        from ldap3.utils.conv import escape_filter_chars

        entries = []
        if sam:
            entries = self._search(self.config.base_dn, "(sAMAccountName=%s)" % escape_filter_chars(sam),
                                   ACCOUNT_ATTRIBUTES)
            if sid:
                entries = [e for e in entries if self._raw(e, "objectSid")
                           and sid_to_str(self._raw(e, "objectSid")[0]) == sid] or entries
        if not entries and sid:
            entries = self._search(self.config.base_dn, "(objectSid=%s)" % _escape_bytes(sid_to_bytes(sid)),
                                   ACCOUNT_ATTRIBUTES)
        entries = [e for e in entries if e.get("dn")]
        if not entries:
            return None
        entry = entries[0]
        dn = entry["dn"]
        groups = self._search(dn, "(objectClass=*)", ["tokenGroups"], scope="BASE")
        token_groups = sorted({sid_to_str(v) for v in self._raw(groups[0], "tokenGroups")}) if groups else []
        classes = [c.lower() for c in self._texts(entry, "objectClass")]
        guid = self._raw(entry, "objectGUID")
        return DirectoryAccount(
            dn=dn, sam=self._text(entry, "sAMAccountName") or sam, sid=sid_to_str(self._raw(entry, "objectSid")[0]),
            token_groups=token_groups, upn=self._text(entry, "userPrincipalName"), mail=self._text(entry, "mail"),
            dns_host_name=self._text(entry, "dNSHostName"), cn=self._text(entry, "cn"),
            object_guid=guid[0] if guid else None, is_computer="computer" in classes)

    # -- writes ------------------------------------------------------------------------------------------------
    def publish_crl(self, ca_name, server_short_name, base_der=None, delta_der=None):
        """Write the base and/or delta CRL to CN=<ca>,CN=<server>,CN=CDP,CN=Public Key Services,... (objectClass
        cRLDistributionPoint, certificateRevocationList / deltaRevocationList), creating the objects if needed."""
        from ldap3 import MODIFY_REPLACE
        from ldap3.utils.dn import escape_rdn

        container = "CN=%s,CN=CDP,%s" % (escape_rdn(server_short_name), self.config.pks_dn)
        dn = "CN=%s,%s" % (escape_rdn(ca_name), container)

        def run(conn):
            if not conn.search(container, "(objectClass=*)", search_scope="BASE", attributes=["cn"]) \
                    and conn.result.get("result") == 32:
                if not conn.add(container, attributes={"objectClass": ["top", "container"]}):
                    raise DirectoryError("cannot create %s: %s" % (container, conn.result.get("description")))
            exists = conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["cn"])
            if not exists:
                attrs = {"objectClass": ["top", "cRLDistributionPoint"],
                         "certificateRevocationList": base_der or b"\x00"}
                if delta_der:
                    attrs["deltaRevocationList"] = delta_der
                ok = conn.add(dn, attributes=attrs)
            else:
                changes = {}
                if base_der:
                    changes["certificateRevocationList"] = [(MODIFY_REPLACE, [base_der])]
                if delta_der:
                    changes["deltaRevocationList"] = [(MODIFY_REPLACE, [delta_der])]
                ok = conn.modify(dn, changes) if changes else True
            if not ok:
                raise DirectoryError("cannot publish the CRL to %s: %s" % (dn, conn.result.get("description")))
            return dn

        return self._call(run)

    def read_cdp(self, ca_name, server_short_name):
        """(base_der, delta_der) stored on the CDP object, for tests and tools."""
        from ldap3.utils.dn import escape_rdn

        dn = "CN=%s,CN=%s,CN=CDP,%s" % (escape_rdn(ca_name), escape_rdn(server_short_name), self.config.pks_dn)
        entries = self._search(dn, "(objectClass=cRLDistributionPoint)",
                               ["certificateRevocationList", "deltaRevocationList"], scope="BASE")
        if not entries:
            return None, None
        base = self._raw(entries[0], "certificateRevocationList")
        delta = self._raw(entries[0], "deltaRevocationList")
        return (base[0] if base else None), (delta[0] if delta else None)


def guid_bytes_to_str(data):
    return str(uuid.UUID(bytes_le=bytes(data)))
