# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CRL job: one job, getting the validated base CRL (and delta CRL) that one request needs.

- which URLs: the ``urls``/``delta_urls`` options, else the certificate's CRL distribution points and freshest-CRL
  pointers and the base CRL's freshest-CRL pointers (``_crl_fetch.Retriever`` tries them in order), or the CA itself
  (``_crl_fetch.CaFetcher``)
- which issuer: the one given, else the CA's signing certificate (from the CA), else the certificate's AIA caIssuers
  (it must have signed the certificate and be, or be issued by, a trust anchor: ``ca_bundle`` or the system store)
- base then delta, each validated (``_crl_validate``) before it is accepted; the delta against the base
- the revocation status of the certificate (``_revocation``) once both are there
- ``run(module)``: wcce_crl's backend, from the module's parameters to its result (facts of the CRLs, the status,
  the files ``_crl_outputs`` writes)

Every attempt is recorded in ``tried`` (the module's ``urls_tried``); ``JobError`` carries them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ssl
import traceback
import warnings

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._anchors import load_bundle
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_fetch import (
    LdapFetcher,
    Retriever,
    ldap_connector,
    open_ca,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import HttpClient, redact
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_outputs import pipe_outputs, write_outputs
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, CertificateError
from ansible_collections.adcs.enrollment.plugins.module_utils._revocation import entry_facts, revocation_status

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID


class JobError(AdcsError):
    """The module cannot deliver; ``tried`` lists the attempts so far; ``exception``: a traceback when unexpected."""

    def __init__(self, msg, tried=None, exception=None):
        super(JobError, self).__init__(msg)
        self.tried = tried or []
        self.exception = exception


# ---------------------------------------------------------------------------------------------------------------
# where a certificate or CRL points to
# ---------------------------------------------------------------------------------------------------------------
def _uris(general_names):
    return [name.value for name in general_names or [] if isinstance(name, x509.UniformResourceIdentifier)]


def distribution_point_urls(obj, oid=None):
    """URLs of the full names of the CRL distribution points (or, with the freshest-CRL OID, of FreshestCRL)."""
    ext = v.extension(obj, oid or ExtensionOID.CRL_DISTRIBUTION_POINTS)
    urls = []
    if ext is None:
        return urls
    for point in ext.value:
        for url in _uris(point.full_name):
            if url not in urls:
                urls.append(url)
    return urls


def cdp_urls(cert):
    return distribution_point_urls(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)


def freshest_urls(obj):
    """Freshest CRL (delta CRL) pointers of a certificate or a base CRL."""
    return distribution_point_urls(obj, ExtensionOID.FRESHEST_CRL)


def ca_issuers_urls(cert):
    ext = v.extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if ext is None:
        return []
    return [desc.access_location.value for desc in ext.value
            if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(desc.access_location, x509.UniformResourceIdentifier)]


def _dedupe(urls):
    out = []
    for url in urls:
        if url and url not in out:
            out.append(url)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the issuer: certificates (``_x509``), the AIA issuer and what it must chain to
# ---------------------------------------------------------------------------------------------------------------
def load_certificates(data):
    """Certificates from PEM (one or more), DER, base64 DER or a PKCS#7 bundle (DER/PEM): ``_x509.load_certificates``,
    its failure a CrlError (the messages wcce_crl has always given)."""
    if not _x509.to_bytes(data).strip():
        raise v.CrlError('empty certificate data')
    try:
        return _x509.load_certificates(data, base64_der=True)
    except CertificateError as exc:
        raise v.CrlError('not a certificate (PEM, DER or PKCS#7): %s' % (exc.detail or exc.summary))


def load_certificate(data):
    certs = load_certificates(data)
    if not certs:
        raise v.CrlError('no certificate found')
    return certs[0]


def trust_anchors(ca_bundle=None):
    """The CA certificates an issuer found through AIA must chain to: those of ``ca_bundle`` (``_anchors``), else
    those of the system trust store's CA file."""
    if ca_bundle:
        return load_bundle(ca_bundle)
    anchors = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')     # old roots with non-positive serial numbers: cryptography warns
        for der in ssl.create_default_context().get_ca_certs(binary_form=True):
            try:
                anchors.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    return anchors


def issuer_from_aia(retriever, cert, anchors, tried):
    """(issuer certificate, URL) from the AIA caIssuers URLs of ``cert``, or (None, None): it must have signed the
    certificate, and since it comes from the party being verified, be (or be issued by) one of ``anchors()``.
    ``tried`` receives the attempts (kind ``issuer``)."""
    def accept(data, _url):
        for candidate in load_certificates(data):
            if candidate.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(candidate)
            except Exception as exc:  # InvalidSignature, ValueError, TypeError
                raise v.CrlError('"%s" did not sign the certificate: %s'
                                 % (candidate.subject.rfc4514_string(), exc or type(exc).__name__))
            v.check_anchored(candidate, anchors())
            return candidate
        raise v.CrlError('no certificate for "%s" there' % cert.issuer.rfc4514_string())

    urls = ca_issuers_urls(cert)
    if not urls:
        return None, None
    attempts = []
    found, url = retriever.first(urls, accept, attempts)
    for item in attempts:
        item['kind'] = 'issuer'
    tried.extend(attempts)
    return found, url


def _failed(tried, kind):
    return '; '.join('%s: %s' % (t['url'], t['error']) for t in tried if t.get('kind') == kind and not t['ok'])


# ---------------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------------
class CrlJob(object):
    """Fetch and validate the base CRL and, when pointed to, its delta CRL.

    ``retriever``: a Retriever (URLs); ``ca``: a CaFetcher (from_ca) or None; ``cert``: the certificate whose CDP /
    freshest CRL / AIA are used and whose status is checked; ``issuer_cert``: the CA certificate (or None: AIA or
    the CA); ``urls``/``delta_urls``: explicit lists; ``freshness``: fail, warn or ignore; ``anchors``: the trust
    anchors (a list of certificates, or a callable returning one) that a CA certificate from the certificate's AIA
    must be, or be issued by (none: AIA issuers are refused).
    """

    def __init__(self, retriever, ca=None, cert=None, issuer_cert=None, urls=None, delta_urls=None, delta=True,
                 freshness='fail', now=None, anchors=None):
        self.retriever = retriever
        self.ca = ca
        self.cert = cert
        self.issuer_cert = issuer_cert
        self.issuer_source = 'given' if issuer_cert is not None else None
        self.urls = list(urls or [])
        self.delta_urls = list(delta_urls or [])
        self.want_delta = delta
        self.freshness = freshness
        self.now = now
        self._anchors = anchors
        self.tried = []
        self.warnings = []
        self.base = self.base_data = self.base_served_by = None
        self.delta = self.delta_data = self.delta_served_by = None

    # ---- issuer ----
    def anchors(self):
        if callable(self._anchors):
            self._anchors = self._anchors()
        return self._anchors or []

    def _issuer_from_ca(self):
        record = {'url': self.ca.label, 'ok': False, 'error': None, 'kind': 'issuer'}
        self.tried.append(record)
        try:
            self.issuer_cert = load_certificate(self.ca.ca_certificate())
        except Exception as exc:
            record['error'] = str(exc)
            if self.cert is None:
                raise JobError('cannot get the CA certificate from %s: %s' % (self.ca.label, exc), self.tried)
            return
        record['ok'] = True
        self.issuer_source = self.ca.label

    def _ensure_issuer(self):
        if self.issuer_cert is None and self.ca is not None:
            self._issuer_from_ca()
        if self.issuer_cert is not None:
            return
        if self.cert is not None:
            self.issuer_cert, url = issuer_from_aia(self.retriever, self.cert, self.anchors, self.tried)
            if self.issuer_cert is not None:
                self.issuer_source = redact(url)
                return
        if self.cert is None:
            raise JobError('the issuing CA certificate is needed to validate the CRL: set issuer_certificate '
                           '(or certificate, whose AIA names it, or from_ca)', self.tried)
        raise JobError('the issuing CA certificate of "%s" could not be obtained from its AIA (%s): set '
                       'issuer_certificate, or ca_bundle to the CA certificates it must chain to'
                       % (self.cert.issuer.rfc4514_string(), _failed(self.tried, 'issuer') or 'no URLs'), self.tried)

    # ---- CRLs ----
    def _acceptor(self, expect_delta):
        def accept(data, _url):
            crl = v.load_crl(data)
            warnings = v.validate_crl(crl, self.issuer_cert, now=self.now, freshness=self.freshness,
                                      expect_delta=expect_delta)
            if expect_delta:
                v.check_delta_against_base(crl, self.base)
            return crl, data, warnings
        return accept

    def _from_ca(self, delta):
        what = 'delta' if delta else 'base'
        label = '%s (%s CRL)' % (self.ca.label, what)
        record = {'url': label, 'ok': False, 'error': None, 'kind': what}
        self.tried.append(record)
        try:
            data = self.ca.delta_crl() if delta else self.ca.base_crl()
            value = self._acceptor(delta)(data, label)
        except Exception as exc:
            record['error'] = str(exc)
            return None, None
        record['ok'] = True
        return value, label

    def _fetch(self, urls, delta):
        tried = []
        value, url = self.retriever.first(urls, self._acceptor(delta), tried,
                                          trusted=set(self.urls) | set(self.delta_urls))
        for item in tried:
            item['kind'] = 'delta' if delta else 'base'
        self.tried.extend(tried)
        return value, (redact(url) if url else None)

    def base_urls(self):
        if self.urls:
            return _dedupe(self.urls)
        if self.cert is not None:
            return _dedupe(cdp_urls(self.cert))
        return []

    def delta_candidate_urls(self):
        if self.delta_urls:
            return _dedupe(self.delta_urls)
        urls = []
        if self.cert is not None and not self.urls:
            urls.extend(freshest_urls(self.cert))
        if self.base is not None:
            urls.extend(freshest_urls(self.base))
        return _dedupe(urls)

    def run(self):
        if self.ca is not None:
            # a renewed CA has one CRL per key: the one of the key that issued the certificate (or of the given
            # issuer's key; else the current key), checked with that CA certificate (MS-WCCE 3.2.1.4.3.2.18)
            self.ca.target(self.cert, self.issuer_cert)
        self._ensure_issuer()
        if self.ca is not None:
            value, served = self._from_ca(False)
        else:
            urls = self.base_urls()
            if not urls:
                raise JobError('no CRL URL: the certificate has no CRL distribution point; set urls or from_ca')
            value, served = self._fetch(urls, False)
        if value is None:
            raise JobError('no usable CRL: %s' % '; '.join('%s: %s' % (t['url'], t['error'])
                                                           for t in self.tried if not t['ok']), self.tried)
        self.base, self.base_data, warnings = value
        self.base_served_by = served
        self.warnings.extend(warnings)
        if self.want_delta:
            self._run_delta()
        return self

    def _run_delta(self):
        if self.ca is not None:
            value, served = self._from_ca(True)
            if value is None:
                # a CA without delta CRLs answers CERTSRV_E_PROPERTY_EMPTY: not an error unless the base points
                # to a delta
                if freshest_urls(self.base):
                    self._delta_missing()
                return
        else:
            urls = self.delta_candidate_urls()
            if not urls:
                return
            value, served = self._fetch(urls, True)
            if value is None:
                self._delta_missing()
                return
        self.delta, self.delta_data, warnings = value
        self.delta_served_by = served
        self.warnings.extend(warnings)

    def _delta_missing(self):
        text = 'the base CRL points to a delta CRL but none could be used (%s)' % _failed(self.tried, 'delta')
        if self.freshness == 'fail':
            raise JobError(text + '; set delta=false to use the base CRL alone', self.tried)
        self.warnings.append(text)

    def status(self):
        if self.cert is None:
            raise JobError('check_certificate needs certificate or certificate_path')
        try:
            return revocation_status(self.cert, self.base, self.delta, self.issuer_cert)
        except v.CrlError as exc:
            raise JobError(str(exc), self.tried)


# ---------------------------------------------------------------------------------------------------------------
# wcce_crl: from the module's parameters to its result
# ---------------------------------------------------------------------------------------------------------------
DELTA_KEYS = ('crl_number', 'base_crl_number', 'this_update', 'next_update', 'revoked_count')


def crl_facts(crl, include_entries=False):
    """What the module returns about a CRL."""
    entries = list(crl)
    facts = {
        'issuer': crl.issuer.rfc4514_string(),
        'crl_number': v.crl_number(crl),
        'this_update': v.iso_utc(v.this_update(crl)),
        'next_update': v.iso_utc(v.next_update(crl)),
        'revoked_count': len(entries),
        'is_delta': v.is_delta(crl),
        'base_crl_number': v.delta_base_number(crl),
        'freshest_crl_urls': freshest_urls(crl),
    }
    if include_entries:
        facts['entries'] = [entry_facts(e) for e in entries]
    return facts


def delta_facts(job, include_entries):
    """The ``delta`` return value: facts of the delta CRL applied, or None."""
    if job.delta is None:
        return None
    facts = crl_facts(job.delta, include_entries)
    out = dict((k, facts[k]) for k in DELTA_KEYS)
    out['served_by'] = job.delta_served_by
    if include_entries:
        out['entries'] = facts['entries']
    return out


def job_facts(job, include_entries):
    """The return values about the CRLs of a finished job."""
    facts = crl_facts(job.base, include_entries)
    out = dict((k, facts[k]) for k in ('issuer', 'crl_number', 'this_update', 'next_update', 'revoked_count'))
    out.update(served_by=job.base_served_by, issuer_certificate_source=job.issuer_source,
               delta=delta_facts(job, include_entries), urls_tried=job.tried)
    if include_entries:
        out['entries'] = facts['entries']
    return out


def read_certificate(path, text, what):
    """The certificate of option ``what`` (a path, or PEM text), or None; JobError when it cannot be read."""
    if path:
        try:
            with open(path, 'rb') as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            raise JobError('cannot read %s %s: %s' % (what, path, exc.strerror or exc))
    elif text:
        data = text.encode('utf-8') if not isinstance(text, bytes) else text
    else:
        return None
    try:
        return load_certificate(data)
    except v.CrlError as exc:
        raise JobError('%s: %s' % (what, exc))


def check_options(p):
    """What the argument spec cannot say; JobError."""
    if p['max_redirects'] < 0:
        raise JobError('max_redirects must be 0 or more')
    if p['max_size'] < 1:
        raise JobError('max_size must be 1 or more')
    if not p['urls'] and not p['from_ca'] and not (p['certificate_path'] or p['certificate']):
        raise JobError('one of certificate_path, certificate, urls or from_ca is required')
    if p['return_content'] and (p['dest'] or p['delta_dest']):
        raise JobError('return_content returns the CRL instead of writing it: it excludes dest and delta_dest')


def _result(module, job):
    p = module.params
    for warning in job.warnings:
        module.warn(warning)
    result = {'changed': False}
    result.update(job_facts(job, p['include_entries']))
    if p['check_certificate']:
        status = job.status()
        result.update(certificate_status=status, revoked=status['revoked'])
    if p['dest'] or p['delta_dest']:
        result.update(write_outputs(module, job))
    elif p['return_content']:
        if job.base is None:
            raise JobError('return_content needs a base CRL; none was fetched')
        result.update(pipe_outputs(p, job))
    return result


def run(module):
    """wcce_crl: the result dict; JobError (with the attempts in ``tried``) when it cannot deliver."""
    p = module.params
    check_options(p)
    host_addresses = dict((str(k), str(val)) for k, val in (p['host_addresses'] or {}).items())
    cert = read_certificate(p['certificate_path'], p['certificate'], 'certificate')
    issuer = read_certificate(p['issuer_certificate_path'], p['issuer_certificate'], 'issuer_certificate')
    http = HttpClient(timeout=p['timeout'] or 30, validate_certs=p['validate_certs'], ca_bundle=p['ca_bundle'],
                      use_proxy=p['use_proxy'], max_redirects=p['max_redirects'], host_addresses=host_addresses,
                      max_body=p['max_size'])
    retriever = Retriever(http, LdapFetcher(ldap_connector(p), max_size=p['max_size'], timeout=p['timeout'] or 30))
    session = job = None
    try:
        ca = None
        if p['from_ca']:
            ca, session = open_ca(p, host_addresses)
        job = CrlJob(retriever, ca=ca, cert=cert, issuer_cert=issuer, urls=p['urls'], delta_urls=p['delta_urls'],
                     delta=p['delta'], freshness=p['freshness'], anchors=lambda: trust_anchors(p['ca_bundle']))
        return _result(module, job.run())
    except JobError as exc:
        exc.tried = exc.tried or (job.tried if job else [])
        raise
    except AdcsError as exc:     # FetchError, CrlError, WcceError, LdapError, MissingLibrary...
        raise JobError(exc.to_message(), job.tried if job else [])
    except Exception as exc:  # never a bare traceback to the user
        raise JobError('unexpected error: %s' % exc, job.tried if job else [], exception=traceback.format_exc())
    finally:
        retriever.close()
        if session is not None:
            session.close()
