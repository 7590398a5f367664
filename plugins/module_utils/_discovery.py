# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AD CS objects in the configuration partition (MS-ADTS / MS-WCCE 2.2.2.11):

- CN=Certificate Templates,CN=Public Key Services,CN=Services,CN=Configuration,<forest root>: pKICertificateTemplate
- CN=Enrollment Services,...: pKIEnrollmentService (one per enterprise CA: cn = CA name, dNSHostName,
  cACertificate, certificateTemplates = names of the templates the CA publishes)
- CN=OID,...: msPKI-Enterprise-Oid (display names of template and issuance policy OIDs)

Works on any object with the AdConnection.search() interface; cryptography is optional (certificate facts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii

from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError
from ansible_collections.adcs.enrollment.plugins.module_utils._templates import TEMPLATE_ATTRIBUTES

PKS_RDN = 'CN=Public Key Services,CN=Services'
ENROLLMENT_SERVICE_ATTRIBUTES = ['cn', 'name', 'displayName', 'dNSHostName', 'cACertificate', 'certificateTemplates',
                                 'cACertificateDN', 'flags', 'distinguishedName']


def public_key_services_dn(configuration_nc):
    return '%s,%s' % (PKS_RDN, configuration_nc)


def templates_dn(configuration_nc):
    return 'CN=Certificate Templates,%s' % public_key_services_dn(configuration_nc)


def enrollment_services_dn(configuration_nc):
    return 'CN=Enrollment Services,%s' % public_key_services_dn(configuration_nc)


def oid_container_dn(configuration_nc):
    return 'CN=OID,%s' % public_key_services_dn(configuration_nc)


def _text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    return value


def _values(entry, name):
    return entry['attributes'].get(name) or []


def _first(entry, name):
    values = _values(entry, name)
    return values[0] if values else None


def certificate_facts(der):
    """The facts of a DER certificate (``_x509.certificate_facts``, the one schema) and its ``pem``."""
    try:
        cert = _x509.load_certificate(bytes(der))
    except CertificateError as exc:
        return {'error': 'cannot parse certificate: %s' % (exc.detail or exc.summary)}
    facts = _x509.certificate_facts(cert)
    facts['pem'] = _x509.cert_pem(cert).decode('ascii')
    return facts


def list_templates(conn, configuration_nc, sd_flags=0x07):
    """All pKICertificateTemplate entries (raw), with the DACL/owner/group of nTSecurityDescriptor."""
    return conn.search(templates_dn(configuration_nc), '(objectClass=pKICertificateTemplate)', TEMPLATE_ATTRIBUTES,
                       scope='LEVEL', sd_flags=sd_flags)


def enterprise_oid_names(conn, configuration_nc):
    """{oid: displayName} from msPKI-Enterprise-Oid objects (template OIDs and issuance policies)."""
    names = {}
    try:
        found = conn.search(oid_container_dn(configuration_nc), '(objectClass=msPKI-Enterprise-Oid)',
                            ['msPKI-Cert-Template-OID', 'displayName'], scope='SUBTREE')
    except Exception:  # the container is optional; its absence must not fail the module
        return names
    for entry in found:
        oid = _text(_first(entry, 'msPKI-Cert-Template-OID'))
        name = _text(_first(entry, 'displayName'))
        if oid and name:
            names[oid] = name
    return names


def decode_enrollment_service(entry):
    cert_values = _values(entry, 'cACertificate')
    certificates = [certificate_facts(v) for v in cert_values]
    current = certificates[-1] if certificates else {}
    if len(certificates) > 1:
        # after a CA certificate renewal several are stored: the current one expires last
        dated = [c for c in certificates if c.get('not_after')]
        if dated:
            current = max(dated, key=lambda c: c['not_after'])
    name = _text(_first(entry, 'cn') or _first(entry, 'name'))
    return {
        'name': name,
        'display_name': _text(_first(entry, 'displayName')) or name,
        'dns_host_name': _text(_first(entry, 'dNSHostName')),
        'distinguished_name': entry.get('dn'),
        'ca_certificate_dn': _text(_first(entry, 'cACertificateDN')),
        'certificate': dict((k, v) for k, v in current.items() if k != 'pem') or None,
        # deprecated flat names of certificate.* (removed in 2.0.0), with their values as before
        'certificate_subject': current.get('subject'),
        'certificate_issuer': current.get('issuer'),
        'certificate_not_before': current.get('not_before'),
        'certificate_not_after': current.get('not_after'),
        'certificate_serial_number': current['serial_number'].lower() if current.get('serial_number') else None,
        'certificate_sha256_fingerprint': current.get('fingerprint_sha256'),
        'certificate_sha1_fingerprint': current.get('fingerprint_sha1'),
        'certificate_pem': current.get('pem'),
        'certificates': len(certificates),
        'templates': sorted((_text(v) for v in _values(entry, 'certificateTemplates')), key=lambda n: n.lower()),
    }


def list_enrollment_services(conn, configuration_nc):
    found = conn.search(enrollment_services_dn(configuration_nc), '(objectClass=pKIEnrollmentService)',
                        ENROLLMENT_SERVICE_ATTRIBUTES, scope='LEVEL')
    services = [decode_enrollment_service(e) for e in found]
    services.sort(key=lambda s: (s['name'] or '').lower())
    return services


def filter_services(services, ca_name=None, ca_host=None):
    result = []
    for service in services:
        if ca_name and (service['name'] or '').lower() != ca_name.lower():
            continue
        if ca_host and (service['dns_host_name'] or '').lower() != ca_host.lower().rstrip('.'):
            continue
        result.append(service)
    return result


def publishing_cas(services, template_name):
    """Enrollment services (summaries) whose certificateTemplates contains ``template_name``."""
    result = []
    for service in services:
        if any(t.lower() == (template_name or '').lower() for t in service['templates']):
            result.append({
                'name': service['name'],
                'dns_host_name': service['dns_host_name'],
                'certificate_subject': service['certificate_subject'],
                'certificate_not_after': service['certificate_not_after'],
                'certificate_fingerprint_sha256': (service['certificate'] or {}).get('fingerprint_sha256'),
                'certificate_sha256_fingerprint': service['certificate_sha256_fingerprint'],   # deprecated
                'config': '%s\\%s' % (service['dns_host_name'], service['name']) if service['dns_host_name'] else service['name'],
            })
    return result


def hexlify(data):
    return binascii.hexlify(bytes(data)).decode('ascii')
