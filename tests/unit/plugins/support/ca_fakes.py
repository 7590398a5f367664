# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fakes of the enrollment tests: a fake DCOM session and a fake CA client that signs with the unit-test PKI
(wcce_pki), a fake directory, a file writer outside Ansible, and helpers to write keys and certificates."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _csr, _enroller, _keys, _ndr, _staged, _x509
from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import EnrollmentResult

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import csr as support_csr

NOW = wcce_pki.NOW
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def spec(tmp_path, **kw):
    base = {'template': 'WebServer', 'private_key_path': str(tmp_path / 'k.pem'),
            'certificate_path': str(tmp_path / 'c.pem')}
    base.update(kw)
    return _request_spec.normalize_requests(base)[0]


def write_key(path, key, passphrase=None):
    with open(path, 'wb') as f:
        f.write(_keys.private_key_bytes(key, 'pem', passphrase))
    os.chmod(path, 0o600)


def write_cert(path, cert):
    with open(path, 'wb') as f:
        f.write(cert.public_bytes(PEM))


def issue(key, cn='host.lab.adcs.test', days=365, not_before=None, sans=None, template='WebServer', serial=77):
    return wcce_pki.pki().issue(cn, key, days=days, not_before=not_before or NOW - datetime.timedelta(days=1),
                                sans=sans, template_name=template, serial=serial)


def spki(obj):
    return obj.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeSession(object):
    opened = []

    def __init__(self, target, fail=None):
        self.target = target
        self.fail = fail
        self.closed = False

    def open(self):
        if self.fail is not None:
            raise self.fail
        FakeSession.opened.append(self.target.address)

    def close(self):
        self.closed = True


class FakeClient(object):
    """Issues for the key in the request, like a CA; behaviour per template name."""

    def __init__(self, ca):
        self.ca = ca
        self.calls = []
        self.pending = {}
        self.next_id = 100

    def __call__(self, session, name):
        self.name = name
        return self

    def _id(self):
        self.next_id += 1
        return self.next_id

    def _issue(self, public_key_der, rid, csr=None, template='WebServer'):
        pki = wcce_pki.pki()
        pub = serialization.load_der_public_key(public_key_der)
        subject = csr.subject if csr is not None and len(csr.subject) else wcce_pki.name('issued')
        subject = wcce_pki.name(self.ca['alter_subject']) if self.ca.get('alter_subject') else subject
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(pki.ca.subject)
                   .public_key(pub).serial_number(1000 + rid)
                   .not_valid_before(NOW - datetime.timedelta(hours=1))
                   .not_valid_after(NOW + datetime.timedelta(days=365))
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()),
                                  critical=False))
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(_x509.OID_ENROLL_CERTTYPE), _csr.template_name_extension_value(template)),
            critical=False)
        if self.ca.get('alter_sans') is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(self.ca['alter_sans']), critical=False)
        elif csr is not None:
            for ext in csr.extensions:
                if isinstance(ext.value, x509.SubjectAlternativeName):
                    builder = builder.add_extension(ext.value, critical=False)
        if self.ca.get('ekus'):
            builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in self.ca['ekus']]),
                                            critical=False)
        cert = builder.sign(self.ca.get('sign_key', pki.ca_key), hashes.SHA256())
        chain = [c.public_bytes(DER) for c in (pki.ca, pki.root)]
        return EnrollmentResult(3, rid, 0, 'Issued', cert.public_bytes(DER), chain)

    def request(self, template=None, csr_der=None, attributes=None, flags=None, request_id=0):
        self.calls.append(('request', template, flags))
        rid = self._id()
        if flags == _ndr.CR_IN_PKCS7:
            if self.ca.get('no_renewal'):
                return EnrollmentResult(0x8009400E, rid, 0x8009400E, 'Denied: bad renewal', None, [])
            parts = support_csr.parse_renewal_request(csr_der)
            csr = x509.load_der_x509_csr(parts['csr_der'])
        else:
            csr = x509.load_der_x509_csr(csr_der)
        pub = csr.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if template == 'Denied':
            return EnrollmentResult(0x80094012, rid, 0x80094012, 'Denied by Policy Module', None, [])
        if template == 'Manual':
            self.pending[rid] = (pub, csr, template)
            return EnrollmentResult(5, rid, 0, 'Taken Under Submission', None, [])
        if template == 'WrongKey':
            pub = wcce_pki.rsa_key('wrong').public_key().public_bytes(
                DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return self._issue(pub, rid, csr, template)

    def retrieve(self, request_id):
        self.calls.append(('retrieve', request_id))
        if request_id not in self.pending:
            return EnrollmentResult(0x80094002, request_id, 0x80094002, 'No such request', None, [])
        pub, csr, template = self.pending.pop(request_id)
        return self._issue(pub, request_id, csr, template)

    def get_ca_cert(self, fchain=0):
        self.calls.append(('GetCACert', fchain))
        pki = wcce_pki.pki()
        if fchain & _ndr.GETCERT_CHAIN:
            return pkcs7.serialize_certificates([pki.ca, pki.root], DER)
        return pki.ca.public_bytes(DER)


class FakeModule(object):
    """What _staged.ModuleFileWriter uses of an AnsibleModule."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.params = {}

    def load_file_common_arguments(self, params, path=None):
        return {'path': path, 'mode': None, 'owner': None, 'group': None, 'seuser': None, 'serole': None,
                'selevel': None, 'setype': None, 'attributes': None}

    def set_fs_attributes_if_different(self, file_args, changed, diff=None, expand=True):
        return changed


class PlainWriter(_staged.ModuleFileWriter):
    """The module's file writer outside Ansible."""

    def __init__(self, check_mode=False):
        _staged.ModuleFileWriter.__init__(self, FakeModule(check_mode))


def enroller(client, **kw):
    FakeSession.opened = []
    failing = kw.pop('failing', {})
    kw.setdefault('ca_host', 'ca1.lab.adcs.test')
    kw.setdefault('ca_name', 'LAB-CA')
    kw.setdefault('anchors', _anchors.AnchorSource(ca_fingerprint=[_anchors.fingerprint(wcce_pki.pki().root)]))
    kw.setdefault('writer', PlainWriter(kw.get('check_mode', False)))
    return _enroller.Enroller(auth=object(), now=NOW, client_factory=client,
                              session_factory=lambda t: FakeSession(t, failing.get(t.address)), **kw)


class FakeDirectory(object):
    def __init__(self, services):
        self._services = services
        self.error = None

    def services(self):
        return self._services

    def template_renewal_days(self, template):
        return None

    def close(self):
        pass


SERVICES = [
    {'name': 'CA-ONE', 'dns_host_name': '10.9.9.1', 'templates': ['WebServer', 'User']},
    {'name': 'CA-TWO', 'dns_host_name': '10.9.9.2', 'templates': ['WebServer']},
    {'name': 'CA-THREE', 'dns_host_name': '10.9.9.3', 'templates': ['Machine']},
]


def install_fake_ca(monkeypatch):
    """The module's CA sessions and clients replaced by FakeSession/FakeClient (returned: its ``calls``)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_session
    client = FakeClient({})
    FakeSession.opened = []
    monkeypatch.setattr(_ca_session, 'dcom_session', lambda target, auth, timeout: FakeSession(target))
    monkeypatch.setattr(_ca_session, 'cert_request_client', client)
    return client
