"""Pluggable security providers for the RPC server.

A provider is registered per ``authn_type`` (``{10: NtlmProvider}``). For every new
``auth_context_id`` on a connection the engine asks the provider for a fresh
:class:`SecurityContext`, then feeds it the tokens carried by bind / alter_context / auth3
PDUs. Once ``complete`` is true the context protects PDUs in both directions.

Writing another provider (SPNEGO = 9, Kerberos = 16) means implementing:

* ``accept(token) -> AcceptResult(reply_token, done)``: one leg of the handshake. The engine puts
  a non-empty ``reply_token`` into the bind_ack / alter_context_resp; after an auth3 the reply
  is dropped (the PDU has no answer). Raise :class:`AuthError` to refuse.
* ``identity`` (user, domain, account), ``session_key`` once done.
* ``verifier_size(level)``: length of the auth_value this context appends to outgoing PDUs at
  that level (the engine needs it to fill frag_length/auth_length before signing, since the
  header is covered by the signature).
* ``sign(message) -> verifier`` / ``verify(message, verifier)`` for packet integrity,
  ``seal(prefix, plaintext, suffix) -> (ciphertext, verifier)`` /
  ``unseal(prefix, ciphertext, suffix, verifier) -> plaintext`` for packet privacy.
  ``prefix`` is the PDU header (up to the stub), ``suffix`` the sec_trailer; the signed message is
  prefix + plaintext stub (with its padding) + suffix. Sequence numbers and cipher states are the
  context's business (one per direction).
"""

from dataclasses import dataclass
from typing import Optional, Tuple


class AuthError(Exception):
    """Authentication refused. ``status`` is the fault status used when it surfaces in a call."""

    def __init__(self, message: str, status: int = 5):
        super().__init__(message)
        self.status = status


class IntegrityError(AuthError):
    """A PDU signature or sealed payload did not verify."""


@dataclass
class AcceptResult:
    reply_token: bytes
    done: bool


@dataclass
class ServerIdentity:
    """What a provider needs to know about the server it authenticates for."""
    netbios_domain: str
    dns_domain: str
    netbios_computer: str
    dns_computer: str
    accounts: object           # AccountStore
    logger: object = None


class SecurityContext:
    auth_type: int = 0

    def __init__(self):
        self.complete = False
        self.failed: Optional[str] = None
        self.user = ""
        self.domain = ""
        self.account = None
        self.session_key = b""

    def accept(self, token: bytes) -> AcceptResult:  # pragma: no cover - interface
        raise NotImplementedError

    def verifier_size(self, level: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def sign(self, message: bytes) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def verify(self, message: bytes, verifier: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def seal(self, prefix: bytes, plaintext: bytes, suffix: bytes) -> Tuple[bytes, bytes]:  # pragma: no cover
        raise NotImplementedError

    def unseal(self, prefix: bytes, ciphertext: bytes, suffix: bytes, verifier: bytes) -> bytes:  # pragma: no cover
        raise NotImplementedError


class SecurityProvider:
    """Factory of security contexts for one authn_type."""
    auth_type: int = 0
    name: str = ""

    def __init__(self, identity: ServerIdentity):
        self.identity = identity

    def new_context(self) -> SecurityContext:  # pragma: no cover - interface
        raise NotImplementedError


def default_providers(accounts=None, kerberos_keytab=None, disable_ntlm=None):
    """Providers of a server built without ``security_providers``.

    NTLM (10) unless ``disable_ntlm`` (default: env ``ADCS_LAB_DISABLE_NTLM`` set to 1/true/yes); Kerberos (16)
    when a service keytab is found: ``kerberos_keytab``, env ``ADCS_LAB_KERBEROS_KEYTAB``, or ``seed.CA_KEYTAB``
    next to the accounts file the AccountStore was read from; SPNEGO (9) with whichever of the two is available.
    """
    import os
    from .ntlmssp import NtlmProvider
    from .kerberos import DISABLE_NTLM_ENV, KerberosProvider, SpnegoProvider, keytab_path_for

    if disable_ntlm is None:
        disable_ntlm = os.environ.get(DISABLE_NTLM_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    providers = {}
    if not disable_ntlm:
        providers[NtlmProvider.auth_type] = NtlmProvider
    keytab = keytab_path_for(accounts, kerberos_keytab)
    shared = {}      # one Kerberos acceptor (keys, replay cache) behind both 16 and 9 of a server

    def kerberos(identity):
        if id(identity) not in shared:
            shared[id(identity)] = KerberosProvider(identity, keytab=keytab)
        return shared[id(identity)]

    def negotiate(identity):
        return SpnegoProvider(identity, kerberos=kerberos(identity) if keytab else None,
                              ntlm=None if disable_ntlm else NtlmProvider(identity))

    if keytab:
        providers[KerberosProvider.auth_type] = kerberos
    if keytab or not disable_ntlm:
        providers[SpnegoProvider.auth_type] = negotiate
    return providers
