"""Account store for the lab RPC servers (reads tests/lab/state/accounts.json)."""

import json
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Account:
    sam: str
    domain: str
    nt_hash: bytes = field(repr=False)
    sid: str = ""
    group_sids: List[str] = field(default_factory=list)
    kind: str = "user"
    enabled: bool = True
    upn: str = ""
    dns_host_name: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return "%s\\%s" % (self.domain, self.sam)


class AccountStore:
    """Case-insensitive lookup of accounts by (domain, user).

    ``domain`` may be the NetBIOS name, the DNS name or empty; ``user`` may be a sAMAccountName or a
    UPN (``user@dns.domain``). DNS domain names are learnt from the UPNs and can be added with
    :meth:`add_domain_alias` (the RPC server registers its own ``dns_domain``/``netbios_domain``).
    """

    def __init__(self, accounts: Optional[List[Account]] = None):
        self._lock = threading.Lock()
        self._by_key: Dict[tuple, Account] = {}
        self._by_upn: Dict[str, Account] = {}
        self._aliases: Dict[str, str] = {}   # upper-case alias -> upper-case NetBIOS domain
        self.source_path: Optional[str] = None   # the file read by from_file (finds the CA keytab next to it)
        for acc in accounts or []:
            self.add(acc)

    @classmethod
    def from_file(cls, path) -> "AccountStore":
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, dict):
            data = data.get("accounts", [])
        if not isinstance(data, list):
            raise ValueError("accounts file %s: expected a list of accounts" % path)
        store = cls()
        store.source_path = str(path)
        for item in data:
            store.add(cls._from_json(item))
        return store

    @staticmethod
    def _from_json(item: dict) -> Account:
        try:
            nt_hash = bytes.fromhex(item.get("nt_hash") or "")
        except ValueError:
            raise ValueError("account %r: nt_hash is not hex" % item.get("sam"))
        if len(nt_hash) not in (0, 16):
            raise ValueError("account %r: nt_hash must be 16 bytes" % item.get("sam"))
        known = {"sam", "domain", "nt_hash", "sid", "group_sids", "kind", "enabled", "upn", "dns_host_name",
                 "password"}
        return Account(
            sam=item["sam"], domain=item.get("domain", ""), nt_hash=nt_hash, sid=item.get("sid", ""),
            group_sids=list(item.get("group_sids") or []), kind=item.get("kind", "user"),
            enabled=bool(item.get("enabled", True)), upn=item.get("upn") or "",
            dns_host_name=item.get("dns_host_name") or "",
            extra={k: v for k, v in item.items() if k not in known})

    def add(self, account: Account) -> None:
        with self._lock:
            dom = account.domain.upper()
            self._by_key[(dom, account.sam.upper())] = account
            self._aliases.setdefault(dom, dom)
            if account.upn and "@" in account.upn:
                self._by_upn[account.upn.upper()] = account
                suffix = account.upn.rsplit("@", 1)[1].upper()
                self._aliases.setdefault(suffix, dom)

    def add_domain_alias(self, alias: str, netbios_domain: str) -> None:
        with self._lock:
            self._aliases[alias.upper()] = netbios_domain.upper()

    def __len__(self):
        return len(self._by_key)

    def __iter__(self):
        return iter(list(self._by_key.values()))

    def lookup(self, domain: str, user: str) -> Optional[Account]:
        domain = (domain or "").strip()
        user = (user or "").strip()
        if not user:
            return None
        with self._lock:
            if "@" in user and not domain:
                acc = self._by_upn.get(user.upper())
                if acc is not None:
                    return acc
                user, domain = user.rsplit("@", 1)
            if domain:
                nb = self._aliases.get(domain.upper())
                if nb is None:
                    return None
                return self._by_key.get((nb, user.upper()))
            matches = [a for (d, s), a in self._by_key.items() if s == user.upper()]
            return matches[0] if len(matches) == 1 else None
