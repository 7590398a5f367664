# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CA report: one job, the enterprise CAs (enrollment services) of the directory with every CA certificate
each one holds in cACertificate, with its facts, its PEM and its classification (CA, self-signed, current, and for a
renewed CA the certificate and key index of each CA certificate).

Used by wcce_ca_info and by the trust-store selection (``_trust_store``), so the CAs are listed in one place. Works
on any object with the AdConnection.search() interface; needs cryptography (the callers check HAS_CRYPTOGRAPHY).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors
from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._directory import (
    ENROLLMENT_SERVICE_ATTRIBUTES, decode_enrollment_service, enrollment_services_dn, filter_services,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
else:  # reported by the modules (_deps.check)
    x509 = None

SERVICE_KEYS = ('name', 'display_name', 'dns_host_name', 'distinguished_name', 'ca_certificate_dn', 'templates')


class EnrollmentService(object):
    """One enrollment service: ``summary`` (name, dns_host_name, templates, ...) and its CA ``certificates``
    (cryptography objects, in directory order; damaged values are skipped)."""

    def __init__(self, entry):
        decoded = decode_enrollment_service(entry)
        self.summary = dict((key, decoded[key]) for key in SERVICE_KEYS)
        self.summary['config'] = ('%s\\%s' % (decoded['dns_host_name'], decoded['name'])
                                  if decoded['dns_host_name'] else decoded['name'])
        self.certificates = []
        for value in entry['attributes'].get('cACertificate') or []:
            try:
                self.certificates.append(x509.load_der_x509_certificate(bytes(value)))
            except ValueError:
                continue  # a damaged value in AD is skipped, never used

    @property
    def name(self):
        return self.summary['name']


def read_enrollment_services(conn, configuration_nc=None):
    """The EnrollmentService objects of the directory, sorted by name."""
    nc = configuration_nc or conn.configuration_nc
    found = conn.search(enrollment_services_dn(nc), '(objectClass=pKIEnrollmentService)',
                        ENROLLMENT_SERVICE_ATTRIBUTES, scope='LEVEL')
    services = [EnrollmentService(entry) for entry in found]
    services.sort(key=lambda s: (s.name or '').lower())
    return services


def select_services(services, names=(), ca_name=None, ca_host=None):
    """The services named in ``names`` (case-insensitive; all when empty) that match ``ca_name``/``ca_host``."""
    wanted = set(n.lower() for n in names or [] if n)
    kept = filter_services([s.summary for s in services], ca_name, ca_host)
    return [s for s in services if any(k is s.summary for k in kept) and (not wanted or (s.name or '').lower() in wanted)]


def ca_indexes(cert):
    """{'ca_cert_index', 'ca_key_index'} of a CA certificate (its CA Version extension; AD CS numbers the CA
    certificates of a renewed CA 0, 1, ... and each key by the certificate it came with); None for a certificate
    without the extension (the first certificate of a CA, or not an AD CS CA)."""
    version = _ca_keys.ca_version(cert)
    return {'ca_cert_index': version[0] if version else None, 'ca_key_index': version[1] if version else None}


def current_certificate(certs):
    """The current one of a CA's certificates: the highest certificate index (CA Version extension; none = 0),
    then the one that expires last."""
    def rank(cert):
        version = _ca_keys.ca_version(cert)
        return (version[0] if version else 0, _x509.not_after(cert))
    return max(certs, key=rank) if certs else None


def certificate_entry(cert, current=False, include_pem=True):
    """The facts of one CA certificate (the one facts schema, with ``is_ca``), its ``pem`` and its classification:
    ``self_signed`` (self-issued and its self-signature verifies), ``current`` (``current_certificate``) and its
    ``ca_cert_index``/``ca_key_index`` (``ca_indexes``)."""
    facts = _x509.certificate_facts(cert)
    if include_pem:
        facts['pem'] = _x509.cert_pem(cert).decode('ascii')
    facts.update(self_signed=_anchors.is_self_signed(cert), current=current)
    facts.update(ca_indexes(cert))
    return facts


def service_entry(service, include_pem=True):
    """The result entry of one enrollment service: its summary and its ``certificates``."""
    entry = dict(service.summary)
    current = current_certificate(service.certificates)
    entry['certificates'] = [certificate_entry(c, c is current, include_pem) for c in service.certificates]
    return entry


def ca_report(conn, params):
    """The wcce_ca_info result (without 'changed') for the module parameters ``params``."""
    services = read_enrollment_services(conn)
    names = [n for n in params.get('names') or [] if n and n.strip()]
    selected = select_services(services, names, params.get('ca_name'), params.get('ca_host'))
    found = set((s.name or '').lower() for s in selected)
    return {
        'domain_controller': conn.host,
        'configuration_naming_context': conn.configuration_nc,
        'certificate_authorities': [service_entry(s, params.get('include_pem', True)) for s in selected],
        'missing': [n for n in names if n.lower() not in found],
    }
