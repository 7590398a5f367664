"""Lab PKI: a two-tier hierarchy (LAB Root CA -> LAB-CA) and TLS certificates for the lab hosts.

Everything lives under ``<state_dir>/pki/`` and is created once; later calls load what is there.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adcslab import seed

ROOT_NAME = "LAB Root CA"
CA_NAME = "LAB-CA"
DOMAIN_DN_PARTS = ("test", "adcs", "lab")  # DC=lab,DC=adcs,DC=test, most significant last in RDN order below
DC_HOST = "dc1.lab.adcs.test"
DC_ADDRESS = "127.0.0.11"
CA_HOST = seed.CA_HOST
CA_ADDRESS = "127.0.0.12"


@dataclass
class Pki:
    directory: str
    root_cert: x509.Certificate
    root_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    root_cert_path: str
    ca_cert_path: str
    ca_key_path: str
    bundle_path: str  # root + issuing CA, PEM
    dc_tls_cert_path: str
    dc_tls_key_path: str
    ca_tls_cert_path: str
    ca_tls_key_path: str


def _name(common_name, with_domain=True):
    rdns = []
    if with_domain:
        for dc in DOMAIN_DN_PARTS:
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, dc)]))
    rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    return x509.Name(rdns)


def _write_key(path, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path, cert):
    with open(path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))


def _load_key(path):
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), None)


def _load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _ca_certificate(subject, issuer, public_key, signing_key, issuer_cert, days, path_length):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _tls_certificate(host, address, ca_cert, ca_key, days=825, extra_dns=()):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(host)] + [x509.DNSName(name) for name in extra_dns]
            + [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_pki(state_dir):
    """Create (once) and load the lab PKI under ``<state_dir>/pki``."""
    directory = os.path.join(os.path.abspath(state_dir), "pki")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths = {
        "root_cert": os.path.join(directory, "root-ca.pem"),
        "root_key": os.path.join(directory, "root-ca.key"),
        "ca_cert": os.path.join(directory, "lab-ca.pem"),
        "ca_key": os.path.join(directory, "lab-ca.key"),
        "bundle": os.path.join(directory, "ca-bundle.pem"),
        "dc_cert": os.path.join(directory, "dc1-tls.pem"),
        "dc_key": os.path.join(directory, "dc1-tls.key"),
        "catls_cert": os.path.join(directory, "%s-tls.pem" % seed.CA_HOST_SHORT),
        "catls_key": os.path.join(directory, "%s-tls.key" % seed.CA_HOST_SHORT),
    }
    if not os.path.exists(paths["bundle"]):
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        root_cert = _ca_certificate(_name(ROOT_NAME), _name(ROOT_NAME), root_key.public_key(), root_key, None,
                                    days=3650 * 2, path_length=1)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        ca_cert = _ca_certificate(_name(CA_NAME), root_cert.subject, ca_key.public_key(), root_key, root_cert,
                                  days=3650, path_length=0)
        # like a Windows DC certificate from the Kerberos Authentication template: the DC's name, then the domain's
        # DNS name and NetBIOS name (CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS), which the collection requires of a DC
        # found through DNS SRV
        dc_cert, dc_key = _tls_certificate(DC_HOST, DC_ADDRESS, ca_cert, ca_key,
                                           extra_dns=(seed.DNS_DOMAIN, seed.NETBIOS_DOMAIN))
        catls_cert, catls_key = _tls_certificate(CA_HOST, CA_ADDRESS, ca_cert, ca_key)
        _write_key(paths["root_key"], root_key)
        _write_cert(paths["root_cert"], root_cert)
        _write_key(paths["ca_key"], ca_key)
        _write_cert(paths["ca_cert"], ca_cert)
        _write_key(paths["dc_key"], dc_key)
        _write_cert(paths["dc_cert"], dc_cert)
        _write_key(paths["catls_key"], catls_key)
        _write_cert(paths["catls_cert"], catls_cert)
        # The bundle is written last: its presence means the PKI is complete.
        with open(paths["bundle"] + ".tmp", "wb") as handle:
            handle.write(root_cert.public_bytes(serialization.Encoding.PEM))
            handle.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        os.replace(paths["bundle"] + ".tmp", paths["bundle"])
    return Pki(
        directory=directory,
        root_cert=_load_cert(paths["root_cert"]),
        root_key=_load_key(paths["root_key"]),
        ca_cert=_load_cert(paths["ca_cert"]),
        ca_key=_load_key(paths["ca_key"]),
        root_cert_path=paths["root_cert"],
        ca_cert_path=paths["ca_cert"],
        ca_key_path=paths["ca_key"],
        bundle_path=paths["bundle"],
        dc_tls_cert_path=paths["dc_cert"],
        dc_tls_key_path=paths["dc_key"],
        ca_tls_cert_path=paths["catls_cert"],
        ca_tls_key_path=paths["catls_key"],
    )
