# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LDAP test material shared by the unit tests of _ldap, _ldap_search, _ldap_kerberos and _dns: a mocked ldap3
Connection/Server (``make()`` builds an AdConnection on them), TLS certificates from a test CA, a fake gssapi, SRV
records and resolvers."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_search
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.dns import SRV, FakeResolver

BASE = 'DC=lab,DC=adcs,DC=test'
CONFIG = 'CN=Configuration,' + BASE
DOMAIN_SID = 'S-1-5-21-1-2-3'


CERTS = {}


def tls_certificate(*dns_names):
    """DER of a certificate for dns_names, signed by a test CA (built once per name list)."""
    if dns_names not in CERTS:
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        if 'ca' not in CERTS:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'Test Enterprise CA')])
            now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
            ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                  .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
                  .not_valid_after(now + datetime.timedelta(days=2))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                  .sign(ca_key, hashes.SHA256()))
            CERTS['ca'] = (ca, ca_key)
        ca, ca_key = CERTS['ca']
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        CERTS[dns_names] = (cert.public_bytes(serialization.Encoding.DER), cert, key)
    return CERTS[dns_names][0]


class FakeTlsSocket(object):
    """The TLS socket of a connection: the certificate the server presented."""

    def __init__(self, der):
        self.der = der
        self.options = {}

    def setsockopt(self, level, name, value):
        self.options[(level, name)] = value

    def getpeercert(self, binary_form=False):
        assert binary_form
        return self.der


class FakeConnection(object):
    """Records how it was built and answers searches from a script."""

    peer = ('dc1.lab.adcs.test', 'lab.adcs.test', 'LAB')   # a Kerberos Authentication DC certificate

    instances = []

    def __init__(self, server, **kwargs):
        self.server = server
        self.kwargs = kwargs
        self.calls = []
        self.closed = True
        self.result = {}
        self.response = []
        self.last_error = None
        self.bind_ok = True
        self.bind_result = {'result': 0, 'description': 'success'}
        self.pages = {}
        self.entries = {}
        self.socket = FakeTlsSocket(tls_certificate(*FakeConnection.peer))
        FakeConnection.instances.append(self)
        self.extend = type('E', (), {'standard': type('S', (), {'who_am_i': staticmethod(lambda: 'u:LAB\\enroller')})()})()

    def open(self):
        self.calls.append('open')
        self.closed = False

    def start_tls(self):
        self.calls.append('start_tls')
        return True

    def bind(self):
        self.calls.append('bind')
        self.result = self.bind_result
        return self.bind_ok

    def unbind(self):
        self.calls.append('unbind')
        self.closed = True

    def search(self, search_base, search_filter, search_scope, attributes, controls=None, paged_size=None, paged_cookie=None):
        self.calls.append(('search', search_base, search_filter, search_scope, tuple(attributes), controls, paged_size, paged_cookie))
        if search_base == '':
            self.response = [{'type': 'searchResEntry', 'dn': '', 'raw_attributes': {
                'defaultNamingContext': [BASE.encode()], 'configurationNamingContext': [CONFIG.encode()],
                'rootDomainNamingContext': [BASE.encode()], 'dnsHostName': [b'dc1.lab.adcs.test']}}]
            self.result = {'result': 0, 'description': 'success'}
            return True
        key = (search_base, paged_cookie)
        if key in self.pages:
            entries, next_cookie = self.pages[key]
            self.response = [{'type': 'searchResEntry', 'dn': dn, 'raw_attributes': attrs} for dn, attrs in entries]
            self.response.append({'type': 'searchResRef', 'uri': ['ldap://elsewhere']})
            controls_out = {_ldap_search.PAGED_RESULTS_OID: {'value': {'size': 0, 'cookie': next_cookie}}} if paged_size else {}
            self.result = {'result': 0, 'description': 'success', 'controls': controls_out}
            return True
        if search_base in self.entries:
            self.response = [{'type': 'searchResEntry', 'dn': search_base, 'raw_attributes': self.entries[search_base]}]
            self.result = {'result': 0, 'description': 'success'}
            return True
        self.response = []
        self.result = {'result': 32, 'description': 'noSuchObject', 'message': ''}
        return False


class FakeServer(object):
    def __init__(self, host, **kwargs):
        self.host = host
        self.kwargs = kwargs


def make(**settings):
    settings.setdefault('domain', 'lab.adcs.test')
    settings.setdefault('domain_controller', 'dc1.lab.adcs.test')
    return _ldap.AdConnection(_ldap.LdapSettings(**settings), connection_factory=FakeConnection, server_factory=FakeServer)


class FakeGssapi(object):
    class NameType(object):
        kerberos_principal = 'krb5-principal'

    created = []

    class Name(object):
        def __init__(self, value, name_type):
            self.value = value
            self.name_type = name_type

    class Credentials(object):
        def __init__(self, name=None, usage=None, store=None):
            FakeGssapi.created.append({'name': name.value if name else None, 'usage': usage, 'store': store})


# ------------------------------------------------------------------------------------------------------------
# DC discovery
# ------------------------------------------------------------------------------------------------------------

def discovered(target='web01.lab.adcs.test', **settings):
    resolver = FakeResolver([SRV(0, 100, 636, target + '.')])
    settings.setdefault('username', 'u')
    settings.setdefault('password', 'p')
    return _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', **settings),
                              connection_factory=FakeConnection, server_factory=FakeServer, resolver=resolver)
