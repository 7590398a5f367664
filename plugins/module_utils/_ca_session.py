# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CA session: one job, talking to an enterprise CA over one authenticated DCOM session, with failover.

``CaSession(host, name, auth, timeout, address)`` is one ``_dcom.DcomSession`` to one CA with its
``_wcce.CertRequestClient`` (``.client``, after ``open()``) and the CA certificates, read once
(``ca_certificates()``). With Kerberos the session names the CA by its DNS name (the service ticket) and connects
to its address. Enrollment and the CRL from the CA use it alike::

    with CaSession('ca1.example.com', 'EXAMPLE-CA', auth, timeout=30).open() as ca:
        ca.client.get_ca_property(...)

``CaPool`` keeps one open session per CA for many requests: ``session_for(template)`` returns the session of the
first reachable candidate of ``select(template)`` (``_directory.select_cas``); a CA that is unavailable is marked
down for the pool's lifetime and the next candidate is tried. Authentication and protocol errors are not retried on
other CAs. ``name_the_ca()`` turns the CA's own fault answer to a call into a message naming that CA.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._directory import CaTarget
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    CaUnavailable,
    InvalidInput,
    ProtocolError,
    ReplyVerificationError,
    TransportError,
    WcceError,
)

RPC_S_SERVER_UNAVAILABLE = 0x800706BA
E_INVALIDARG = 0x80070057


def dcom_session(target, auth, timeout):
    """The DCOM session to ``target`` (a _directory.CaTarget): Kerberos names the CA by its DNS name (the service
    ticket) and connects to its address; NTLM connects to the address."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
    if getattr(auth, 'kind', '') == 'kerberos' and target.host and target.host != target.address:
        return _dcom.DcomSession(target.host, auth, timeout=timeout, remote_host=target.address)
    return _dcom.DcomSession(target.address, auth, timeout=timeout)


def cert_request_client(session, name):
    """The ICertRequestD(2) client of CA ``name`` over ``session``."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce
    return _wcce.CertRequestClient(session, name)


class CaSession(object):
    """One DcomSession + CertRequestClient for one CA, and the CA certificates read once per session.

    ``session_factory(target)`` and ``client_factory(session, name)`` replace the DCOM session and the client
    (tests, other transports); by default they are ``dcom_session`` and ``cert_request_client``."""

    def __init__(self, host, name, auth=None, timeout=30, address=None, source='options', session_factory=None,
                 client_factory=None):
        self.target = CaTarget(name, host, address, source)
        self.auth = auth
        self.timeout = timeout
        self._session_factory, self._client_factory = session_factory, client_factory
        self.session = self.client = self._ca_certs = None   # opened by open()

    @classmethod
    def for_target(cls, target, auth=None, timeout=30, session_factory=None, client_factory=None):
        return cls(target.host, target.name, auth, timeout, target.address, target.source, session_factory,
                   client_factory)

    def open(self):
        """Connect and authenticate; returns self. Raises the _errors exceptions of _dcom."""
        if self._session_factory is not None:
            self.session = self._session_factory(self.target)
        else:
            self.session = dcom_session(self.target, self.auth, self.timeout)
        self.session.open()
        self.client = (self._client_factory or cert_request_client)(self.session, self.target.name)
        return self

    def ca_certificates(self):
        """The CA signing certificate and its chain (GetCACert with GETCERT_CHAIN, else the certificate)."""
        if self._ca_certs is None:
            certs = []
            try:
                data = self.client.get_ca_cert(_ndr.GETCERT_CASIGCERT | _ndr.GETCERT_CHAIN)
                certs = _x509.load_certificates(data) if data else []
            except ReplyVerificationError:
                raise       # a tampered reply is no reason to ask again: stop (the connection is poisoned)
            except WcceError:
                certs = []
            if not certs:
                data = self.client.get_ca_cert(_ndr.GETCERT_CASIGCERT)
                certs = _x509.load_certificates(data) if data else []
            self._ca_certs = certs
        return self._ca_certs

    def close(self):
        if self.session is not None:
            self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def name_the_ca(exc, target):
    """A fault the CA answered to a call (an HRESULT from the CA, not a lost or refused connection) says which CA
    refused; a wrong CA name (E_INVALIDARG) is hinted at. Other errors keep their summary."""
    if exc.hresult is None or exc.hresult == RPC_S_SERVER_UNAVAILABLE:
        return exc
    exc.summary = 'The CA "%s" at %s refused the call' % (target.name, target.address)
    if exc.hresult == E_INVALIDARG:
        exc.summary += ' (is "%s" the CA name?)' % target.name
    return exc


class CaPool(object):
    """One open CaSession per CA, with failover between the candidates of ``select(template)``.

    ``auth``: an _auth method (None: ``auth_error`` or InvalidInput is raised when a CA is needed)."""

    def __init__(self, auth, select, timeout=30, session_factory=None, client_factory=None, auth_error=None):
        self.auth = auth
        self.auth_error = auth_error
        self.select = select
        self.timeout = timeout
        self._session_factory, self._client_factory = session_factory, client_factory
        self._sessions = {}
        self._down = {}
        self.sessions_opened = 0
        self.ca_contacted = False

    def session_for(self, template):
        """An open CaSession to a CA for ``template`` (the next candidate when one is unavailable)."""
        if self.auth is None:
            if self.auth_error is not None:
                raise self.auth_error
            raise InvalidInput('Credentials are required to contact the CA (username with password or nt_hash)')
        targets = self.select(template)
        for target in targets:
            session = self._sessions.get(target.key())
            if session is not None:
                return session
        errors = []
        for target in targets:
            if target.key() in self._down:
                errors.append(self._down[target.key()])
                continue
            session = CaSession.for_target(target, self.auth, self.timeout, self._session_factory,
                                           self._client_factory)
            self.ca_contacted = True
            try:
                session.open()
            except (CaUnavailable, TransportError) as exc:
                session.close()
                if isinstance(exc, ProtocolError):
                    raise
                self._down[target.key()] = (target, exc)
                errors.append((target, exc))
                continue
            except Exception:
                session.close()
                raise
            self.sessions_opened += 1
            self._sessions[target.key()] = session
            return session
        if len(errors) == 1:
            raise errors[0][1]
        raise CaUnavailable('No CA for template %s could be reached' % template,
                            detail='; '.join('%s (%s): %s' % (t.name, t.address, e.to_message())
                                             for t, e in errors),
                            remedy='Check that the CA hosts are reachable on TCP 135 and the dynamic RPC ports '
                                   'and that Certificate Services runs.')

    def close(self):
        for session in self._sessions.values():
            session.close()
        self._sessions = {}
