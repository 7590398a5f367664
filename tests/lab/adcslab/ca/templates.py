"""Certificate templates as the lab CA sees them.

The fields mirror the AD attributes of a pKICertificateTemplate object (and use their flag values) so that an
LDAP-backed ``TemplateSource`` can fill the same ``Template`` from the lab directory later:

| field              | AD attribute                          |
|--------------------|---------------------------------------|
| name               | cn                                    |
| display_name       | displayName                           |
| oid                | msPKI-Cert-Template-OID               |
| schema_version     | msPKI-Template-Schema-Version         |
| major_version      | revision                              |
| minor_version      | msPKI-Template-Minor-Revision         |
| ekus               | pKIExtendedKeyUsage                   |
| application_policies | msPKI-Certificate-Application-Policy |
| key_usage          | pKIKeyUsage (first byte / second byte as in the KeyUsage bit string) |
| validity_days      | pKIExpirationPeriod                   |
| name_flag          | msPKI-Certificate-Name-Flag           |
| enrollment_flag    | msPKI-Enrollment-Flag                 |
| private_key_flag   | msPKI-Private-Key-Flag                |
| min_key_size       | msPKI-Minimal-Key-Size                |
| ra_signature       | msPKI-RA-Signature                    |
| issuance_policies  | msPKI-Certificate-Policy              |
| critical_extensions | pKICriticalExtensions                |
| security_descriptor | nTSecurityDescriptor (DACL)          |
| asymmetric_algorithm | msPKI-RA-Application-Policies property msPKI-Asymmetric-Algorithm (schema v3/v4 CNG) |
| hash_algorithm     | msPKI-RA-Application-Policies property msPKI-Hash-Algorithm (schema v3/v4 CNG) |

``key_refusal(template, public_key)`` is the CA's key check: the key must be of the template's algorithm (CNG
templates) and at least ``min_key_size`` bits (every template; a legacy CSP template compares any key's bit length,
so an EC key is refused there with CERTSRV_E_KEY_LENGTH).
"""

import datetime
import logging
import struct
from dataclasses import dataclass, field
from typing import List, Optional

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import errors

log = logging.getLogger("adcslab.ca.templates")

# msPKI-Certificate-Name-Flag (MS-CRTD 2.28)
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 0x00000001
CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME = 0x00000008
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME = 0x00010000
CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS = 0x00400000
CT_FLAG_SUBJECT_ALT_REQUIRE_SPN = 0x00800000
CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID = 0x01000000
CT_FLAG_SUBJECT_ALT_REQUIRE_UPN = 0x02000000
CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL = 0x04000000
CT_FLAG_SUBJECT_ALT_REQUIRE_DNS = 0x08000000
CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN = 0x10000000
CT_FLAG_SUBJECT_REQUIRE_EMAIL = 0x20000000
CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME = 0x40000000
CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH = 0x80000000

# msPKI-Enrollment-Flag (MS-CRTD 2.26)
CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS = 0x00000001
CT_FLAG_PEND_ALL_REQUESTS = 0x00000002
CT_FLAG_PUBLISH_TO_DS = 0x00000008
CT_FLAG_AUTO_ENROLLMENT = 0x00000020
CT_FLAG_NO_SECURITY_EXTENSION = 0x00080000

# msPKI-Private-Key-Flag (MS-CRTD 2.27)
CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL = 0x00000001
CT_FLAG_EXPORTABLE_KEY = 0x00000010
CT_FLAG_USE_LEGACY_PROVIDER = 0x00000100

# pKIKeyUsage bits (KeyUsage BIT STRING, first byte)
KU_DIGITAL_SIGNATURE = 0x80
KU_NON_REPUDIATION = 0x40
KU_KEY_ENCIPHERMENT = 0x20
KU_DATA_ENCIPHERMENT = 0x10
KU_KEY_AGREEMENT = 0x08
KU_KEY_CERT_SIGN = 0x04
KU_CRL_SIGN = 0x02

EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
EKU_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
EKU_EFS = "1.3.6.1.4.1.311.10.3.4"

# The lab forest's enterprise OID root (msPKI-Enterprise-Oid style: 1.3.6.1.4.1.311.21.8 + 6 random arcs).
LAB_FOREST_OID = "1.3.6.1.4.1.311.21.8.4725110.6419327.12853271.9431872.8761021.204"


@dataclass(frozen=True)
class Template:
    name: str
    display_name: str
    oid: str
    schema_version: int
    major_version: int
    minor_version: int
    ekus: List[str]
    key_usage: int
    validity_days: int
    name_flag: int
    enrollment_flag: int
    private_key_flag: int = 0
    min_key_size: int = 2048
    ra_signature: int = 0
    application_policies: List[str] = field(default_factory=list)
    validity_seconds: int = 0  # exact pKIExpirationPeriod; 0 = validity_days
    critical_extensions: tuple = ("2.5.29.15",)  # pKICriticalExtensions
    security_descriptor: Optional[bytes] = None  # nTSecurityDescriptor (self-relative); None = no access check
    dn: Optional[str] = None
    issuance_policies: List[str] = field(default_factory=list)  # msPKI-Certificate-Policy
    asymmetric_algorithm: Optional[str] = None  # CNG templates: msPKI-Asymmetric-Algorithm (None: legacy CSP)
    hash_algorithm: Optional[str] = None  # CNG templates: msPKI-Hash-Algorithm

    @property
    def validity(self):
        return datetime.timedelta(seconds=self.validity_seconds or self.validity_days * 86400)

    @property
    def enrollee_supplies_subject(self):
        return bool(self.name_flag & CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT)

    @property
    def pend_all_requests(self):
        return bool(self.enrollment_flag & CT_FLAG_PEND_ALL_REQUESTS)

    @property
    def no_security_extension(self):
        return bool(self.enrollment_flag & CT_FLAG_NO_SECURITY_EXTENSION)


# msPKI-Asymmetric-Algorithm values (MS-WCCE 3.1.2.4.2.2.2.5) -> (key class, curve name or None). ECDH keys are EC
# keys on the same curves; DH and DSA keys are not accepted by this lab (cryptography parses no such CSR key here).
ALGORITHM_KEYS = {
    "RSA": ("rsa", None),
    "ECDSA_P256": ("ec", "secp256r1"), "ECDSA_P384": ("ec", "secp384r1"), "ECDSA_P521": ("ec", "secp521r1"),
    "ECDH_P256": ("ec", "secp256r1"), "ECDH_P384": ("ec", "secp384r1"), "ECDH_P521": ("ec", "secp521r1"),
}


def cng_properties(values, schema_version, private_key_flag):
    """The Name`Type`Value` properties of msPKI-RA-Application-Policies (MS-CRTD 2.23.2) as {name: value}: only for
    schema v3, or v4 without CT_FLAG_USE_LEGACY_PROVIDER; other templates hold OIDs there (2.23.1) -> {}."""
    if schema_version < 3 or (schema_version == 4 and private_key_flag & CT_FLAG_USE_LEGACY_PROVIDER):
        return {}
    properties = {}
    for value in values or []:
        parts = value.split("`")
        if parts and parts[-1] == "":
            parts = parts[:-1]
        for i in range(0, len(parts) - 2, 3):
            properties[parts[i]] = parts[i + 2]
    return properties


def key_refusal(template, public_key):
    """The HRESULT the CA's policy module refuses ``public_key`` with for ``template``, or None when it fits.

    CNG template (asymmetric_algorithm set): a key of another algorithm or curve -> NTE_BAD_ALGID (the spec names
    the algorithm a client must use, MS-WCCE 3.1.2.4.2.2.2.5; Windows' own code for the CA side is not published:
    see docs/windows-fidelity.md); then, for every template, fewer bits than msPKI-Minimal-Key-Size ->
    CERTSRV_E_KEY_LENGTH (any key's bit length: an EC key on a legacy RSA template is refused this way)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        have, bits = ("rsa", None), public_key.key_size
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        have, bits = ("ec", public_key.curve.name), public_key.key_size
    else:
        have, bits = (type(public_key).__name__, None), 0
    if template.asymmetric_algorithm:
        wanted = ALGORITHM_KEYS.get(template.asymmetric_algorithm.upper())
        if wanted is None or wanted != have:
            return errors.NTE_BAD_ALGID
    if template.min_key_size and bits < template.min_key_size:
        return errors.CERTSRV_E_KEY_LENGTH
    return None


class TemplateSource:
    """Where the CA reads templates from. ``get`` takes a template name (cn) or its OID."""

    kind = "custom"

    def get(self, name) -> Optional[Template]:
        raise NotImplementedError

    def all(self) -> List[Template]:
        raise NotImplementedError

    def published(self, ca_name) -> Optional[List[str]]:
        """Template names the CA's enrollment service lists (certificateTemplates); None = no restriction."""
        return None


_DIRECTORY_NAME = CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH | CT_FLAG_SUBJECT_ALT_REQUIRE_UPN

BUILTIN_TEMPLATES = [
    Template(name="User", display_name="User", oid=LAB_FOREST_OID + ".1.1", schema_version=1, major_version=3,
             minor_version=1, ekus=[EKU_EFS, EKU_EMAIL_PROTECTION, EKU_CLIENT_AUTH],
             key_usage=KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, validity_days=365,
             name_flag=_DIRECTORY_NAME,
             enrollment_flag=CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS | CT_FLAG_PUBLISH_TO_DS | CT_FLAG_AUTO_ENROLLMENT,
             private_key_flag=CT_FLAG_EXPORTABLE_KEY),
    Template(name="Machine", display_name="Computer", oid=LAB_FOREST_OID + ".1.14", schema_version=1,
             major_version=5, minor_version=1, ekus=[EKU_CLIENT_AUTH, EKU_SERVER_AUTH],
             key_usage=KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, validity_days=365,
             name_flag=CT_FLAG_SUBJECT_ALT_REQUIRE_DNS | CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN,
             enrollment_flag=CT_FLAG_AUTO_ENROLLMENT),
    Template(name="WebServer", display_name="Web Server", oid=LAB_FOREST_OID + ".1.16", schema_version=1,
             major_version=4, minor_version=1, ekus=[EKU_SERVER_AUTH],
             key_usage=KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, validity_days=730,
             name_flag=CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, enrollment_flag=0),
    Template(name="EFS", display_name="Basic EFS", oid=LAB_FOREST_OID + ".1.6", schema_version=1, major_version=3,
             minor_version=1, ekus=[EKU_EFS], key_usage=KU_KEY_ENCIPHERMENT, validity_days=365,
             name_flag=_DIRECTORY_NAME,
             enrollment_flag=CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS | CT_FLAG_PUBLISH_TO_DS | CT_FLAG_AUTO_ENROLLMENT,
             private_key_flag=CT_FLAG_EXPORTABLE_KEY),
    Template(name="WebServerApproval", display_name="Web Server (CA manager approval)",
             oid=LAB_FOREST_OID + ".2.101", schema_version=2, major_version=100, minor_version=2,
             ekus=[EKU_SERVER_AUTH], application_policies=[EKU_SERVER_AUTH],
             key_usage=KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, validity_days=730,
             name_flag=CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, enrollment_flag=CT_FLAG_PEND_ALL_REQUESTS),
    Template(name="WebServer4096", display_name="Web Server (4096-bit key)", oid=LAB_FOREST_OID + ".2.102",
             schema_version=2, major_version=100, minor_version=2, ekus=[EKU_SERVER_AUTH],
             application_policies=[EKU_SERVER_AUTH], key_usage=KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
             validity_days=730, name_flag=CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, enrollment_flag=0, min_key_size=4096),
]


class BuiltinTemplateSource(TemplateSource):
    """The fixed table above: used only when no directory is configured (unit tests). No access checks."""

    kind = "builtin"

    def __init__(self, templates=None):
        self._templates = list(templates if templates is not None else BUILTIN_TEMPLATES)

    def get(self, name):
        if not name:
            return None
        wanted = name.strip().lower()
        for template in self._templates:
            if template.name.lower() == wanted or template.oid == wanted:
                return template
        return None

    def all(self):
        return list(self._templates)


# --------------------------------------------------------------------------------------------------------------
# Templates from the lab AD

def _int32(value, default=0):
    if value is None or value == "":
        return default
    number = int(value)
    return number & 0xFFFFFFFF


def period_seconds(raw):
    """pKIExpirationPeriod: a negative FILETIME interval (100 ns units), 8 bytes little-endian -> seconds."""
    if not raw or len(raw) != 8:
        return 0
    ticks = struct.unpack("<q", raw)[0]
    return abs(ticks) // 10_000_000


def template_from_entry(entry):
    """A Template from a raw pKICertificateTemplate LDAP entry (``LabDirectory.template_entries``)."""
    from .directory import LabDirectory as D

    def text(name):
        return D._text(entry, name)

    def texts(name):
        return D._texts(entry, name)

    raw = D._raw(entry, "pKIKeyUsage")
    ku_bytes = raw[0] if raw else b""
    key_usage = (ku_bytes[0] if len(ku_bytes) > 0 else 0) | ((ku_bytes[1] if len(ku_bytes) > 1 else 0) << 8)
    seconds = period_seconds((D._raw(entry, "pKIExpirationPeriod") or [b""])[0])
    sd = D._raw(entry, "nTSecurityDescriptor")
    schema = _int32(text("msPKI-Template-Schema-Version"), 1) or 1
    private_key_flag = _int32(text("msPKI-Private-Key-Flag"))
    cng = cng_properties(texts("msPKI-RA-Application-Policies"), schema, private_key_flag)
    return Template(
        name=text("cn"), display_name=text("displayName") or text("cn"), oid=text("msPKI-Cert-Template-OID") or "",
        schema_version=schema, major_version=_int32(text("revision")),
        minor_version=_int32(text("msPKI-Template-Minor-Revision")), ekus=texts("pKIExtendedKeyUsage"),
        key_usage=key_usage, validity_days=max(1, seconds // 86400) if seconds else 365,
        name_flag=_int32(text("msPKI-Certificate-Name-Flag")), enrollment_flag=_int32(text("msPKI-Enrollment-Flag")),
        private_key_flag=private_key_flag,
        min_key_size=_int32(text("msPKI-Minimal-Key-Size")), ra_signature=_int32(text("msPKI-RA-Signature")),
        application_policies=texts("msPKI-Certificate-Application-Policy"), validity_seconds=seconds,
        critical_extensions=tuple(texts("pKICriticalExtensions")), security_descriptor=sd[0] if sd else b"",
        dn=entry.get("dn"), issuance_policies=texts("msPKI-Certificate-Policy"),
        asymmetric_algorithm=cng.get("msPKI-Asymmetric-Algorithm") or None,
        hash_algorithm=cng.get("msPKI-Hash-Algorithm") or None)


class LdapTemplateSource(TemplateSource):
    """Templates and the CA's enrollment service read from the lab AD through its cache (``LabDirectory``: a
    template changed over LDAP takes effect on the next request); a template is parsed once per read."""

    kind = "ldap"

    def __init__(self, directory):
        self.directory = directory

    def get(self, name):
        if not name:
            return None
        cached = getattr(self.directory, "cached", None)
        if cached is None:
            return self._read(name)
        # parsed once per directory read (kept and dropped with it: LabDirectory.cached)
        return cached(("template", name.strip().lower()), lambda: self._read(name))

    def _read(self, name):
        entries = self.directory.template_entries(name)
        for entry in entries:
            template = template_from_entry(entry)
            if template.name.lower() == name.strip().lower() or template.oid == name.strip():
                return template
        return None

    def all(self):
        result = []
        for entry in self.directory.template_entries():
            try:
                result.append(template_from_entry(entry))
            except (ValueError, TypeError) as exc:
                log.warning("skipping unreadable template %s: %s", entry.get("dn"), exc)
        return result

    def published(self, ca_name):
        service = self.directory.enrollment_service(ca_name)
        return [] if service is None else service["templates"]
