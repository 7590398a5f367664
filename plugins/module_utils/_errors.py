# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exception hierarchy of the collection: one job, naming failures.

``AdcsError`` is the one root: every exception a module_utils file raises on purpose derives from it (LdapError,
FetchError, JobError, CrlError, TemplateDecodeError, SecurityDescriptorError, KerberosFailure, MissingLibrary...), so
a module catches ``AdcsError`` and shows ``exc.to_message()``. ``AdcsError`` keeps the message it is given:
``str(exc)`` is that message, unchanged.

``WcceError`` is the subclass for enrollment failures with an HRESULT, request ID, detail and remedy (its
``to_message()`` composes them); ``except WcceError`` catches exactly what it caught before ``AdcsError`` existed
(the classes below and KerberosFailure), not the LDAP/CRL/template errors. The code tables behind the HRESULTs
are in ``_hresults``.

No third-party imports: this file must import on any controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _hresults():
    """The HRESULT tables, loaded when an error needs them (a run that fails nothing never compiles them)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _hresults as tables
    return tables


class AdcsError(Exception):
    """Root of every failure the collection raises on purpose; ``str()`` is the message given, for the user."""

    def to_message(self):
        """The text a module shows (subclasses may compose it; here the message as given)."""
        return str(self)

    def to_dict(self):
        """Facts for the module result (never secrets); WcceError adds the HRESULT facts."""
        return {'hresult': None, 'error_name': None, 'meaning': None, 'request_id': None,
                'remedy': getattr(self, 'remedy', None)}


class MissingLibrary(AdcsError):
    """An optional Python library is needed and does not import (see ``_deps.require``)."""

    def __init__(self, message, library=None, import_error=None):
        super(MissingLibrary, self).__init__(message)
        self.library = library
        self.import_error = import_error


class RpcFault(AdcsError):
    """A DCE/RPC fault PDU, a refused bind or a nonzero status/HRESULT ending a reply (``_rpc_conn``): ``error_code``
    is the number (NCA status, Win32 code or HRESULT); ``_dcom.translate_exception`` makes the user's message from
    it, never from this text."""

    def __init__(self, error_code, packet=None):
        self.error_code = _hresults().normalize(error_code)
        self.packet = packet        # the decoded reply, when a reply's status was nonzero
        name = _hresults().describe_hresult(self.error_code).name
        super(RpcFault, self).__init__('DCE/RPC fault %s (%s)' % (name, _hresults().format_hresult(self.error_code)))

    def get_error_code(self):
        return self.error_code


class LdapError(AdcsError):
    """Any failure talking to the directory; the message is meant for the user."""


class DnsError(AdcsError):
    """A DNS lookup found nothing usable (no SRV record, only targets outside the domain, no dnspython)."""


# --------------------------------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------------------------------
class WcceError(AdcsError):
    """Base of every enrollment failure: an AdcsError with HRESULT, request ID, detail and remedy.
    ``to_message()`` is the text a module shows to users."""

    default_summary = 'Certificate enrollment failed'

    def __init__(self, summary=None, hresult=None, request_id=None, detail=None, remedy=None):
        self.summary = summary or self.default_summary
        self.hresult = _hresults().normalize(hresult) if hresult is not None else None
        self.request_id = request_id
        self.detail = detail
        self._remedy = remedy
        super(WcceError, self).__init__(self.to_message())

    @property
    def info(self):
        return _hresults().describe_hresult(self.hresult) if self.hresult is not None else None

    @property
    def remedy(self):
        if self._remedy:
            return self._remedy
        info = self.info
        return info.remedy if info is not None else None

    def to_message(self):
        parts = [self.summary.rstrip('.')]
        info = self.info
        if info is not None:
            parts.append('HRESULT %s (%s): %s' % (_hresults().format_hresult(info.code), info.name, info.meaning.rstrip('.')))
        if self.request_id:
            parts.append('request ID %s' % self.request_id)
        if self.detail:
            parts.append(str(self.detail).strip().rstrip('.'))
        text = '; '.join(p for p in parts if p)
        remedy = self.remedy
        if remedy:
            text += '. What to do: %s' % remedy
        elif not text.endswith('.'):
            text += '.'
        return text

    def to_dict(self):
        """Facts for the module result (never contains secrets)."""
        info = self.info
        return {
            'hresult': None if info is None else _hresults().format_hresult(info.code),
            'error_name': None if info is None else info.name,
            'meaning': None if info is None else info.meaning,
            'request_id': self.request_id,
            'remedy': self.remedy,
        }

    def __str__(self):
        return self.to_message()


class AuthenticationError(WcceError):
    """The credentials or the security context failed (logon, Kerberos, SSPI)."""
    default_summary = 'Authentication to the CA failed'


class KerberosFailure(AuthenticationError):
    """A Kerberos step failed (KDC discovery, ticket acquisition, service ticket)."""

    default_summary = 'Kerberos authentication failed'


class AccessDenied(WcceError):
    """Authenticated, but not allowed to talk to the CA at all (DCOM activation/launch rights)."""
    default_summary = 'The CA refused access'


class TransportError(WcceError):
    """The RPC/DCOM channel broke (connection, binding, fault PDU)."""
    default_summary = 'The RPC/DCOM connection to the CA failed'


# Alias named in the design brief (ConnectionError is a builtin, hence the underscore).
ConnectionError_ = TransportError


class CaUnavailable(TransportError):
    """The CA host or service is not there or is busy: another CA may be tried."""
    default_summary = 'The CA is unavailable'


class ProtocolError(TransportError):
    """A reply that does not decode as MS-WCCE/DCOM says it should."""
    default_summary = 'The CA sent a reply that could not be decoded'


class ReplyVerificationError(ProtocolError):
    """A reply PDU failed its security verifier (tampered, stripped, replayed): discarded, nothing written."""
    default_summary = 'A reply from the CA failed verification'


class RequestDenied(WcceError):
    """The CA refused this request (policy module, template or enrollment permission)."""
    default_summary = 'The CA denied the certificate request'


class BadRequest(WcceError):
    """The request we built is malformed or unsuitable for the template."""
    default_summary = 'The CA rejected the certificate request as invalid'


class NotFound(WcceError):
    """The request ID or CA property does not exist."""
    default_summary = 'The CA has no such object'


class RequestPending(WcceError):
    """Taken under submission: a certificate manager must approve it (retrieve it later by request ID)."""
    default_summary = 'The certificate request is pending approval by a certificate manager'


class InvalidInput(WcceError):
    """Bad parameters detected locally before anything was sent (key size, SAN syntax, ...)."""
    default_summary = 'Invalid enrollment parameters'


class CertificateError(WcceError):
    """A certificate/key/chain check failed locally (mismatch, bad signature, unreadable file)."""
    default_summary = 'Certificate check failed'


class FileOutputError(WcceError):
    """An output file could not be read, staged or renamed into place."""
    default_summary = 'Writing the output files failed'


def exception_class_for(code):
    tables = _hresults()
    return {
        tables.CAT_DENIED: RequestDenied,
        tables.CAT_AUTH: AuthenticationError,
        tables.CAT_ACCESS: AccessDenied,
        tables.CAT_UNAVAILABLE: CaUnavailable,
        tables.CAT_TRANSPORT: TransportError,
        tables.CAT_REQUEST: BadRequest,
        tables.CAT_NOT_FOUND: NotFound,
        tables.CAT_GENERIC: WcceError,
    }[tables.error_category(code)]


def exception_for_hresult(code, summary=None, request_id=None, detail=None, default_class=None):
    """Build (not raise) the exception matching a code's category."""
    cls = exception_class_for(code)
    if cls is WcceError and default_class is not None:
        cls = default_class
    return cls(summary=summary, hresult=code, request_id=request_id, detail=detail)
