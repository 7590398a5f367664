# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The directory: one job, what Active Directory says about the PKI - enrollment services, templates, CA selection.

AD CS objects in the configuration partition (MS-ADTS / MS-WCCE 2.2.2.11):

- CN=Certificate Templates,CN=Public Key Services,CN=Services,CN=Configuration,<forest root>: pKICertificateTemplate
- CN=Enrollment Services,...: pKIEnrollmentService (one per enterprise CA: cn = CA name, dNSHostName,
  cACertificate, certificateTemplates = names of the templates the CA publishes)
- CN=OID,...: msPKI-Enterprise-Oid (display names of template and issuance policy OIDs)

The listing functions work on any object with the AdConnection.search() interface (certificate facts from
``_x509``). ``Directory`` is a lazy, cached connection for the enroller (services, template renewal
periods, templates, accounts; ``from_params()`` builds it from module options); ``select_cas()`` turns the options
or the enrollment services into the ``CaTarget`` list to try, in order.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import contextlib

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _dns
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    CaUnavailable,
    CertificateError,
    InvalidInput,
    LdapError,
    MissingLibrary,
    WcceError,
)

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
    from ansible_collections.adcs.enrollment.plugins.module_utils._templates import TEMPLATE_ATTRIBUTES
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
    """The enrollment services ``ca_name`` names (its CN, or its display name as Windows tools show it) on
    ``ca_host``; the CA is then addressed by its CN."""
    result = []
    for service in services:
        names = set((n or '').lower() for n in (service['name'], service.get('display_name')))
        if ca_name and ca_name.lower() not in names:
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


# ---------------------------------------------------------------------------------------------------------------
# CA selection and the lazy directory of the enroller
# ---------------------------------------------------------------------------------------------------------------
class CaTarget(object):
    def __init__(self, name, host, address=None, source='options'):
        self.name = name
        self.host = host
        self.address = address or host
        self.source = source

    def key(self):
        return (self.address.lower(), self.name.lower())

    def to_dict(self):
        return {'name': self.name, 'host': self.host, 'address': self.address, 'source': self.source}

    def __repr__(self):
        return 'CaTarget(%r, %r)' % (self.name, self.host)


class Directory(object):
    """Lazy, cached LDAP reads: the enrollment services, template renewal periods, templates and accounts.

    ``connect`` is a callable returning a connected ``_ldap.AdConnection``; errors become InvalidInput/
    CaUnavailable messages naming the directory. ``cache``: a ``_policy_cache.PolicyCache`` answering before LDAP
    (what is read from LDAP goes into it; ``close()`` saves it); ``from_cache`` says whether an answer came from
    it, ``refresh()`` drops what it gave when the CA says the policy changed."""

    def __init__(self, connect, cache=None):
        self._connect = connect
        self._conn = None
        self._services = None
        self._templates = {}
        self.cache = cache
        self.from_cache = False    # some answer of this run came from the policy cache
        self._cached_services = None   # the enrollment services the policy cache gave, until refresh() compares
        self.error = None
        self.template_error = None

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    @property
    def cache_warning(self):
        return self.cache.warning if self.cache is not None else None

    def _cached(self, kind, name):
        value = self.cache.get(kind, name) if self.cache is not None else None
        if value is not None:
            self.from_cache = True
        return value

    def _keep(self, kind, name, value):
        if self.cache is not None:
            self.cache.put(kind, name, value)

    def refresh(self):
        """Forget every answer of the policy cache (the CA refused in a way that says the policy changed): the
        next reads go to Active Directory, and what they find replaces the cache. Returns whether there was
        anything to forget."""
        if not self.from_cache:
            return False
        self.from_cache = False
        self._services = None
        self._templates = {}
        self.cache.forget()
        return True

    def cas_moved(self):
        """After ``refresh()``: whether the enrollment services read now differ (CA names, hosts, published
        templates) from those the policy cache had given; False when they did not come from it. An unavailable CA
        is retried only then (else it is simply down, and a retry would wait for it again)."""
        if self._cached_services is None:
            return False
        cached, self._cached_services = self._cached_services, None

        def view(services):
            return sorted((s.get('name'), s.get('dns_host_name'), tuple(s.get('templates') or ())) for s in services)
        try:
            return view(cached) != view(self.services())
        except Exception:   # AD unreadable now: the retry reports it
            return True

    def close(self):
        if self.cache is not None:
            self.cache.save()
        if self._conn is not None:
            with contextlib.suppress(Exception):   # best effort: closing after use or after a failure
                self._conn.close()
            self._conn = None

    def services(self):
        if self._services is None:
            services = self._cached('services', '')
            self._cached_services = services
            if services is None:
                services = list_enrollment_services(self.conn, self.conn.configuration_nc)
                self._keep('services', '', services)
            self._services = services
        return self._services

    def template_renewal_days(self, template):
        """The template's renewal period (pKIOverlapPeriod) in days, or None when it cannot be read."""
        key = template.lower()
        if key not in self._templates:
            info = self._templates.get('info:' + key)    # the template read in full already has it
            days = self._cached('renewal', template)
            if days is None and info is not None:
                days = (info.get('renewal_period') or {}).get('seconds')
                days = days / 86400.0 if days is not None else None
            if days is None:
                try:
                    conn = self.conn
                    found = conn.search(templates_dn(conn.configuration_nc),
                                        _template_filter(template),
                                        ['cn', 'pKIOverlapPeriod'], scope='LEVEL')
                    if found:
                        days = _renewal.template_window_days(
                            (found[0]['attributes'].get('pKIOverlapPeriod') or [None])[0])
                        self._keep('renewal', template, days)
                except Exception as exc:  # fall back to the default; say why
                    self.error = 'the renewal period of template %s could not be read from Active Directory: %s' \
                                 % (template, exc)
            self._templates[key] = days
        return self._templates[key]

    def account(self, principal):
        """dict(dn, cn, mail, dns_host_name, upn) of an account (by sAMAccountName or UPN), or None when it cannot
        be read (``template_error`` then says why)."""
        key = 'account:' + principal.lower()
        if key not in self._templates:
            found = self._cached('account', principal)
            if found is None:
                found = self._read_account(principal)
                self._keep('account', principal, found)
            self._templates[key] = found
        return self._templates[key]

    def _read_account(self, principal):
        try:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
            conn = self.conn
            entry = conn.find_account(principal)
            if entry is None:
                self.template_error = 'the account %s was not found in Active Directory' % principal
                return None
            attrs = ['cn', 'mail', 'dNSHostName', 'userPrincipalName']
            entry = conn.search(entry['dn'], '(objectClass=*)', attrs, scope='BASE', paged=False)[0]
            return {'dn': entry['dn'], 'cn': _ldap.first_text(entry, 'cn'), 'mail': _ldap.first_text(entry, 'mail'),
                    'dns_host_name': _ldap.first_text(entry, 'dNSHostName'),
                    'upn': _ldap.first_text(entry, 'userPrincipalName')}
        except Exception as exc:  # the comparison then skips the names from AD; say why
            self.template_error = 'the account %s could not be read from Active Directory: %s' % (principal, exc)
            return None

    def template_info(self, template):
        """The template decoded from Active Directory (_templates.decode_template), or None when it cannot be read
        (``template_error`` then says why)."""
        key = 'info:' + template.lower()
        if key not in self._templates:
            info = self._cached('template', template)
            if info is None:
                info = self._read_template(template)
                self._keep('template', template, info)
            self._templates[key] = info
        return self._templates[key]

    def _read_template(self, template):
        try:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _templates
            conn = self.conn
            attributes = [a for a in _templates.TEMPLATE_ATTRIBUTES if a != 'nTSecurityDescriptor']
            found = conn.search(templates_dn(conn.configuration_nc), _template_filter(template), attributes,
                                scope='LEVEL')
            if found:
                return _templates.decode_template(found[0]['attributes'])
            self.template_error = 'the template %s was not found in Active Directory' % template
        except Exception as exc:  # the comparison then skips what needs the template; say why
            self.template_error = 'the template %s could not be read from Active Directory: %s' % (template, exc)
        return None


def _template_filter(template):
    """The LDAP filter of one certificate template by name (ldap3 escapes the name)."""
    from ldap3.utils.conv import escape_filter_chars
    return '(&(objectClass=pKICertificateTemplate)(cn=%s))' % escape_filter_chars(template)


def select_cas(template, ca_host=None, ca_name=None, directory=None, dns_server=None):
    """Candidate CAs for ``template``, in the order to try them.

    ``ca_host`` + ``ca_name``: that CA only. Otherwise the enrollment services in Active Directory (``directory``)
    that publish the template, restricted to ``ca_name``/``ca_host`` when given. When the services came from the
    policy cache and none fits, Active Directory is read again once (a CA or template published since)."""
    if ca_host and ca_name:
        return [CaTarget(ca_name, ca_host, _dns.resolve_host(ca_host, dns_server), 'options')]
    if directory is None:
        raise InvalidInput('Give ca_host and ca_name, or domain (with the directory credentials) to find the CA '
                           'in Active Directory')
    try:
        return _discovered(template, ca_host, ca_name, directory, dns_server)
    except InvalidInput:
        if not getattr(directory, 'from_cache', False) or not directory.refresh():
            raise
    return _discovered(template, ca_host, ca_name, directory, dns_server)


def _discovered(template, ca_host, ca_name, directory, dns_server):
    try:
        services = directory.services()
    except WcceError:
        raise
    except Exception as exc:
        raise CaUnavailable('Finding the enterprise CAs in Active Directory failed', detail=str(exc),
                            remedy='Check domain, domain_controller and the directory credentials, or give '
                                   'ca_host and ca_name.')
    services = filter_services(services, ca_name=ca_name)
    if ca_host:
        services = [s for s in services if (s.get('dns_host_name') or '').lower().rstrip('.') ==
                    ca_host.lower().rstrip('.')] or [dict(s, dns_host_name=ca_host) for s in services]
    if not services:
        raise InvalidInput('No enterprise CA%s found in Active Directory'
                           % (' named %s' % ca_name if ca_name else ''))
    publishing = [s for s in services if template and any(t.lower() == template.lower() for t in s['templates'])]
    if template and not publishing:
        raise InvalidInput('No enterprise CA publishes the certificate template %s (CAs found: %s)'
                           % (template, ', '.join('%s (%s)' % (s['name'], ', '.join(s['templates']) or 'none')
                                                  for s in services)))
    return [CaTarget(s['name'], s['dns_host_name'], _dns.resolve_host(s['dns_host_name'], dns_server), 'discovery')
            for s in (publishing or services) if s.get('dns_host_name')]


def from_params(params, check_mode=False, cache=False):
    """A lazy Directory from the module's connection options, or None when neither domain nor domain_controller is
    given; with the policy cache the options ask for (``_policy_cache.from_params``; never written in check
    mode), or ``cache`` when given (a PolicyCache or None)."""
    if not _auth.has_directory(params):
        return None
    ldap_connect = _auth.ldap_connector(params)

    def connect():
        try:
            return ldap_connect()
        except MissingLibrary:
            raise WcceError('The Python library "ldap3" is required to read Active Directory',
                            remedy='Install ldap3, or give ca_host and ca_name and renew_before.')
        except LdapError as exc:
            raise WcceError('Reading Active Directory failed: %s' % exc,
                            remedy='Check domain, domain_controller, ldap_scheme and the credentials, or give '
                                   'ca_host and ca_name.')
    if cache is False:
        cache = None
        if params.get('policy_cache'):   # an option of wcce_request only
            from ansible_collections.adcs.enrollment.plugins.module_utils import _policy_cache
            cache = _policy_cache.from_params(params, check_mode=check_mode)
    return Directory(connect, cache)
