# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OS trust store selection: one job, sorting CA certificates into self-signed roots (trust anchors),
issuing CAs (intermediate store only) and refused certificates, as wcce_trust_anchors returns them to the trust
role (per certificate: its file name, facts and PEM).

Certificates of the playbook author are taken as given; certificates from the managed host are kept only when the
independently verified anchors of ``_anchors`` vouch for them; ``from_ad`` adds the roots of CN=Certification
Authorities and the certificates of the enrollment services (listed by ``_ca_report``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._anchors import (
    ANCHOR_REMEDY, AnchorSource, describe, fingerprint, is_ca, sha256_hex, unique,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._ca_report import (
    ca_indexes, read_enrollment_services, select_services,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError, InvalidInput, WcceError
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
else:  # reported by the modules (_deps.check)
    x509 = None


def classify(certs, anchors=None):
    """Sort certificates for an OS trust store: {'roots': [...], 'intermediates': [...], 'refused': [(cert,
    reason)]}. Only CA certificates are kept; a self-signed CA is a root, another CA an intermediate. With
    ``anchors`` (a TrustAnchors), a root is kept only when it is one of its anchors, an intermediate only when
    it chains to one."""
    out = {'roots': [], 'intermediates': [], 'refused': []}
    for cert in unique(certs):
        if not is_ca(cert):
            out['refused'].append((cert, 'not a CA certificate (basicConstraints CA:TRUE is missing)'))
            continue
        root = _chain.is_self_issued(cert)
        if root and not _chain.signature_valid(cert, cert):
            out['refused'].append((cert, 'its self-signature does not verify'))
            continue
        if anchors is not None:
            if root and _x509.cert_der(cert) not in set(_x509.cert_der(a) for a in anchors.anchors_among([cert])):
                out['refused'].append((cert, 'not among the independently verified anchors (%s)'
                                       % ', '.join(anchors.sources)))
                continue
            if not root:
                try:
                    anchors.verify(cert, certs, check_validity=False)
                except CertificateError:
                    out['refused'].append((cert, 'does not chain to the independently verified anchors (%s)'
                                           % ', '.join(anchors.sources)))
                    continue
        out['roots' if root else 'intermediates'].append(cert)
    return out


def _label(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', str(text or 'ca')).strip('-') or 'ca'


def _cn(cert):
    values = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return values[0].value if values else cert.subject.rfc4514_string()


def entry_facts(label, cert, source):
    """What a trust-store role needs of one certificate (file name without the role's prefix). Every certificate of
    a renewed CA gets its own file (the name ends in its fingerprint) and says its ``ca_cert_index``/``ca_key_index``."""
    digest = sha256_hex(cert)
    facts = {'name': label, 'file': '%s-%s.crt' % (_label(label), digest[:16]), 'subject': cert.subject.rfc4514_string(),
             'fingerprint_sha256': fingerprint(cert), 'sha256_fingerprint': fingerprint(cert),  # deprecated name
             'not_after': _x509.not_after(cert).strftime('%Y-%m-%dT%H:%M:%SZ'), 'source': source,
             'pem': _x509.cert_pem(cert).decode('ascii')}
    facts.update(ca_indexes(cert))
    return facts


def _parse_entry(entry, where):
    name = entry.get('name') or 'ca'
    content = entry.get('content') or ''
    try:
        certs = _x509.load_certificates(content.encode('utf-8') if isinstance(content, str) else bytes(content))
    except WcceError as exc:
        raise InvalidInput('%s "%s" holds no readable certificate' % (where, name), detail=exc.summary)
    if not certs:
        raise InvalidInput('%s "%s" holds no certificate' % (where, name))
    return name, certs


def trust_store_selection(certificates=(), host_certificates=(), from_ad=False, ca_names=(), source=None,
                          directory=None):
    """Which certificates an OS trust store gets: {'roots', 'intermediates', 'refused'} lists of entry_facts
    (refused ones with 'reason' instead of 'pem').

    ``certificates`` ({name, content}) come from the playbook author: CA certificates are taken as given, anything
    else is InvalidInput. ``host_certificates`` (files on the managed host, e.g. chain files) are kept only when they
    are among (roots) or chain to (issuing CAs) the anchors of ``source`` (an AnchorSource). ``from_ad`` adds the
    roots of CN=Certification Authorities and the enrollment services' certificates (only ``ca_names`` when given),
    which needs ``source`` to read AD over verified TLS; ``directory`` is the connected AdConnection."""
    roots, intermediates, refused = [], [], []
    seen = set()

    def add(label, cert, origin, root):
        if sha256_hex(cert) in seen:
            return
        seen.add(sha256_hex(cert))
        (roots if root else intermediates).append(entry_facts(label, cert, origin))

    for entry in certificates or []:
        name, certs = _parse_entry(entry, 'trust certificate')
        sorted_ = classify(certs)
        if sorted_['refused']:
            cert, reason = sorted_['refused'][0]
            raise InvalidInput('trust certificate "%s": %s: %s; it is never installed into a trust store'
                               % (name, describe(cert), reason))
        for cert in sorted_['roots']:
            add(name, cert, 'certificates', True)
        for cert in sorted_['intermediates']:
            add(name, cert, 'certificates', False)
    trust = None
    if host_certificates or from_ad:
        if from_ad and (source is None or source.connect_directory is None):
            raise InvalidInput('Reading the CA certificates from Active Directory needs a verified connection: %s'
                               % (source.unverified_reason if source is not None else 'no connection options'),
                               remedy='Use ldap_scheme=ldaps or starttls with validate_certs=true (and ca_bundle '
                                      'when the system trust store does not know the CA of the domain controller).')
        if source is None:
            source = AnchorSource()
        try:
            source.check()
        except InvalidInput:
            raise InvalidInput('CA certificates from files on the managed host are installed only when they are '
                               'among independently verified anchors, and none is configured: %s, and neither '
                               'ca_bundle nor ca_fingerprint is set' % source.unverified_reason, remedy=ANCHOR_REMEDY)
        trust = source.load()
    for entry in host_certificates or []:
        name, certs = _parse_entry(entry, 'host file')
        sorted_ = classify(certs, anchors=trust)
        for cert in sorted_['roots']:
            add(name, cert, 'host', True)
        for cert in sorted_['intermediates']:
            add(name, cert, 'host', False)
        for cert, reason in sorted_['refused']:
            facts = entry_facts(name, cert, 'host')
            facts.pop('pem')
            facts['reason'] = reason
            refused.append(facts)
    if from_ad:
        wanted = set(n.lower() for n in ca_names or [])
        services = [(s.name, c) for s in select_services(read_enrollment_services(directory), ca_names)
                    for c in s.certificates if is_ca(c)]
        ad_roots = [c for c in trust.directory_roots if c in trust.anchors_among([])]
        if wanted:
            ad_roots = []
            for _name, cert in services:
                try:
                    path = trust.verify(cert, [], check_validity=False)
                except CertificateError:
                    continue
                ad_roots.extend(c for c in ([cert] + path) if _chain.is_self_issued(c) and c in trust.directory_roots)
        for cert in ad_roots:
            add(_cn(cert), cert, 'Active Directory', True)
        for name, cert in services:
            if not _chain.is_self_issued(cert):
                add(name, cert, 'Active Directory', False)
            elif cert in trust.directory_roots:
                add(name, cert, 'Active Directory', True)
    return {'roots': roots, 'intermediates': intermediates, 'refused': refused}
