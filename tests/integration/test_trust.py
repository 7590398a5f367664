"""The trust role builds an OS trust store that holds only independently verified CA roots, with `ansible-playbook`
against the lab: a certificate the lab CA issued verifies with `openssl verify` against that store, one from an
unknown CA does not; a CA:FALSE certificate is refused; a rogue root appended to a chain file on the host is not
installed; issuing CAs never become anchors."""

import datetime
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.lab

PEM = serialization.Encoding.PEM
PLAY = '''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The trust role
      ansible.builtin.include_role:
        name: adcs.enrollment.trust
    - name: Publish the results
      ansible.builtin.debug:
        msg:
          installed: "{{ trust_installed }}"
          intermediates: "{{ trust_installed_intermediates }}"
          refused: "{{ trust_refused }}"
'''


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def fp(cert):
    return ':'.join('%02X' % b for b in cert.fingerprint(hashes.SHA256()))


def connection(lab):
    acct = lab['accounts']['enroller']
    return {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password']}


def ca_pair(name, ca=True):
    """A self-made root (CA or not) and a leaf it signed: the 'unknown CA'."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    root = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'x.test')]))
            .issuer_name(subject).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return root, leaf


def run_role(ansible, tmp_path, **role_vars):
    store = tmp_path / 'anchors'
    play = tmp_path / 'play.yml'
    play.write_text(PLAY)
    base = {'trust_store_dir': str(store), 'trust_update_command': 'openssl rehash %s' % store}
    base.update(role_vars)
    rc, out = ansible.playbook(str(play), base)
    return rc, out, str(store)


def task(out, name):
    for play in out['plays']:
        for item in play['tasks']:
            if item['task']['name'] in (name, 'adcs.enrollment.trust : ' + name):
                return item['hosts']['localhost']
    return None


def openssl_verify(store, cert_path, untrusted=None):
    argv = ['openssl', 'verify', '-CApath', store]
    if untrusted:
        argv += ['-untrusted', untrusted]
    proc = subprocess.run(argv + [cert_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def lab_leaf(lab, ansible, tmp_path_factory):
    """A certificate the lab CA issues now, with its chain file (issuing CA + root)."""
    tmp = tmp_path_factory.mktemp('trust-leaf')
    acct = lab['accounts']['enroller']
    args = {'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password'],
            'template': 'WebServer', 'common_name': 'trust.lab.adcs.test',
            'private_key_path': str(tmp / 'leaf.key'), 'certificate_path': str(tmp / 'leaf.crt'),
            'chain_path': str(tmp / 'chain.crt')}
    rc, result = ansible.module('adcs.enrollment.wcce_request', args)
    assert rc == 0 and result['disposition'] == 'issued', result
    return tmp


def test_from_ad_installs_the_root_only_and_lab_certificates_verify(lab, ansible, tmp_path, lab_leaf):
    rc, out, store = run_role(ansible, tmp_path, trust_from_ad=True, trust_connection=connection(lab))
    assert rc == 0, json.dumps(out)[-3000:]
    root = x509.load_pem_x509_certificate(read(lab['ca']['root_cert']))
    issuing = x509.load_pem_x509_certificate(read(lab['ca']['cert']))
    published = task(out, 'Publish the results')['msg']
    assert published['installed'] == [os.path.join(store, 'adcs-LAB-Root-CA-%s.crt'
                                                   % fp(root).replace(':', '').lower()[:16])]
    assert published['intermediates'] == [] and published['refused'] == []
    anchors = [n for n in os.listdir(store) if n.endswith('.crt')]
    assert len(anchors) == 1 and x509.load_pem_x509_certificate(read(os.path.join(store, anchors[0]))) == root
    # the issuing CA is never an anchor; the role says it was not installed
    note = task(out, 'Issuing CA certificates not installed (no intermediate store)')
    assert note['msg'] == ('Not installed: issuing CAs are never trust anchors and there is no intermediate store '
                           '(set trust_intermediate_dir to have one): %s' % issuing.subject.rfc4514_string())
    # what the lab CA issues verifies against the store (the server sends the issuing CA, as in TLS) ...
    rc, text = openssl_verify(store, str(lab_leaf / 'leaf.crt'), untrusted=lab['ca']['cert'])
    assert rc == 0 and text.strip().endswith(': OK'), text
    # ... and a certificate from an unknown CA does not, even handed its own root as an intermediate
    unknown_root, unknown_leaf = ca_pair('LAB Root CA')
    (tmp_path / 'u.crt').write_bytes(unknown_leaf.public_bytes(PEM))
    (tmp_path / 'u-root.crt').write_bytes(unknown_root.public_bytes(PEM))
    rc, text = openssl_verify(store, str(tmp_path / 'u.crt'), untrusted=str(tmp_path / 'u-root.crt'))
    assert rc != 0 and 'self-signed certificate in certificate chain' in text, text
    # the store the old role built (the issuing CA as the only anchor) does not verify the lab's certificates
    old = tmp_path / 'old'
    old.mkdir()
    (old / 'LAB-CA.crt').write_bytes(issuing.public_bytes(PEM))
    subprocess.run(['openssl', 'rehash', str(old)], check=True)
    rc, text = openssl_verify(str(old), str(lab_leaf / 'leaf.crt'))
    assert rc != 0, text


def test_intermediate_store_gets_the_issuing_ca_and_a_second_run_changes_nothing(lab, ansible, tmp_path, lab_leaf):
    inter = tmp_path / 'intermediates'
    for run in (1, 2):
        rc, out, store = run_role(ansible, tmp_path, trust_from_ad=True, trust_connection=connection(lab),
                                  trust_ca_names=['LAB-CA'], trust_intermediate_dir=str(inter))
        assert rc == 0, json.dumps(out)[-3000:]
        published = task(out, 'Publish the results')['msg']
        assert len(published['installed']) == 1 and len(published['intermediates']) == 1, published
    assert out['stats']['localhost']['changed'] == 0, out['stats']
    names = os.listdir(str(inter))
    assert names == [os.path.basename(published['intermediates'][0])]
    assert x509.load_pem_x509_certificate(read(str(inter / names[0]))) == \
        x509.load_pem_x509_certificate(read(lab['ca']['cert']))
    rc, text = openssl_verify(store, str(lab_leaf / 'leaf.crt'), untrusted=str(inter / names[0]))
    assert rc == 0, text


def test_a_ca_false_certificate_is_refused(lab, ansible, tmp_path):
    not_ca = ca_pair('Not A CA', ca=False)[0]
    rc, out, store = run_role(ansible, tmp_path, trust_certificates=[
        {'name': 'bad', 'content': not_ca.public_bytes(PEM).decode('ascii')}])
    assert rc != 0
    failed = task(out, 'Sort the CA certificates on the controller')
    assert failed['failed'] is True
    assert failed['msg'] == ('trust certificate "bad": "CN=Not A CA" (SHA-256 %s): not a CA certificate '
                             '(basicConstraints CA:TRUE is missing); it is never installed into a trust store.'
                             % fp(not_ca))
    assert not os.path.exists(store) or not os.listdir(store)


def test_a_rogue_root_appended_to_a_host_chain_file_is_not_installed(lab, ansible, tmp_path, lab_leaf):
    rogue = ca_pair('LAB Root CA')[0]
    chain = tmp_path / 'web-chain.crt'
    chain.write_bytes(read(str(lab_leaf / 'chain.crt')) + rogue.public_bytes(PEM))
    pinned = {'ca_fingerprint': [fp(x509.load_pem_x509_certificate(read(lab['ca']['root_cert'])))]}
    rc, out, store = run_role(ansible, tmp_path, trust_connection=pinned,
                              trust_certificates=[{'name': 'web', 'remote_src': str(chain)}])
    assert rc == 0, json.dumps(out)[-3000:]
    published = task(out, 'Publish the results')['msg']
    assert len(published['installed']) == 1
    assert x509.load_pem_x509_certificate(read(published['installed'][0])) == \
        x509.load_pem_x509_certificate(read(lab['ca']['root_cert']))
    assert published['refused'] == [{
        'name': 'web', 'file': 'web-%s.crt' % fp(rogue).replace(':', '').lower()[:16],
        'subject': 'CN=LAB Root CA', 'sha256_fingerprint': fp(rogue), 'fingerprint_sha256': fp(rogue),
        'not_after': rogue.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ'), 'source': 'host',
        'ca_cert_index': None, 'ca_key_index': None,
        'reason': 'not among the independently verified anchors (ca_fingerprint)'}]
    sort = task(out, 'Sort the CA certificates on the controller')
    assert ('Not installed: web "CN=LAB Root CA" (SHA-256 %s): not among the independently verified anchors '
            '(ca_fingerprint)' % fp(rogue)) in sort['warnings']
    assert all(x509.load_pem_x509_certificate(read(os.path.join(store, n))) != rogue
               for n in os.listdir(store) if n.endswith('.crt'))


def test_host_files_need_an_independent_anchor(lab, ansible, tmp_path, lab_leaf):
    rc, out, store = run_role(ansible, tmp_path, trust_certificates=[
        {'name': 'web', 'remote_src': str(lab_leaf / 'chain.crt')}])
    assert rc != 0
    failed = task(out, 'Sort the CA certificates on the controller')
    assert failed['msg'].startswith('CA certificates from files on the managed host are installed only when they '
                                    'are among independently verified anchors, and none is configured: Active '
                                    'Directory is not used (neither domain nor domain_controller is set), and '
                                    'neither ca_bundle nor ca_fingerprint is set. What to do: Set ca_fingerprint')


def test_from_ad_needs_verified_tls(lab, ansible, tmp_path):
    conn = dict(connection(lab), validate_certs=False)
    rc, out, store = run_role(ansible, tmp_path, trust_from_ad=True, trust_connection=conn)
    assert rc != 0
    failed = task(out, 'Sort the CA certificates on the controller')
    assert failed['msg'] == ("Reading the CA certificates from Active Directory needs a verified connection: "
                             "validate_certs=false: the domain controller's TLS certificate is not verified. What to "
                             "do: Use ldap_scheme=ldaps or starttls with validate_certs=true (and ca_bundle when the "
                             "system trust store does not know the CA of the domain controller).")
