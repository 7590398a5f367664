"""The lab CA backend: what sits behind the MS-WCCE / MS-ICPR wire handlers.

``CertificationAuthority.open(state_dir)`` loads (or creates) the PKI, the request database, the configuration
and the CA exchange certificate; ``submit``/``retrieve``/``get_ca_cert``/``get_property``/``property_info`` are
called by the wire layer; ``approve``/``deny``/``revoke``/``publish_crls`` are for the admin CLI.

Processing follows MS-WCCE 3.2.1.4.2.1 (request processing), 3.2.1.4.2.1.4.6 (serial numbers), 3.2.1.4.2.2
(GetCACert) and 3.2.1.4.3.2 (GetCAProperty).
"""

import contextlib
import datetime
import ipaddress
import json
import logging
import os
import secrets
import struct
import threading
import uuid
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from .. import pki as lab_pki
from .. import seed as lab_seed
from . import access
from . import archival
from . import castore
from . import db as dbmod
from . import errors
from . import extensions as ext
from . import renewal as renewal_policy
from . import templates as tpl
from .directory import DirectoryAccount, DirectoryConfig, DirectoryError, LabDirectory
from .errors import CAError
from .reqparse import parse_request
from .templates import (CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL, BuiltinTemplateSource, LdapTemplateSource,
                        TemplateSource)

log = logging.getLogger("adcslab.ca")

# Request disposition values returned on the wire (MS-WCCE 3.2.1.4.2.1, CR_DISP_*)
CR_DISP_INCOMPLETE = 0
CR_DISP_ERROR = 1
CR_DISP_DENIED = 2
CR_DISP_ISSUED = 3
CR_DISP_ISSUED_OUT_OF_BAND = 4
CR_DISP_UNDER_SUBMISSION = 5
CR_DISP_REVOKED = 6

# dwFlags bits other than the request type
CR_IN_FULLRESPONSE = 0x00040000
CR_IN_CRLS = 0x00080000
CR_IN_MACHINE = 0x00100000

# GetCAProperty
PROPTYPE_LONG = 1
PROPTYPE_DATE = 2
PROPTYPE_BINARY = 3
PROPTYPE_STRING = 4
PROPFLAGS_INDEXED = 0x00010000  # certsrv.h LONG flags
CATRANSPROP_INDEXED = 0x0001  # the same bit in CATRANSPROP.propFlags (USHORT, MS-WCCE 2.2.2.3)

CR_PROP_FILEVERSION = 0x01
CR_PROP_PRODUCTVERSION = 0x02
CR_PROP_EXITCOUNT = 0x03
CR_PROP_EXITDESCRIPTION = 0x04
CR_PROP_POLICYDESCRIPTION = 0x05
CR_PROP_CANAME = 0x06
CR_PROP_SANITIZEDCANAME = 0x07
CR_PROP_SHAREDFOLDER = 0x08
CR_PROP_PARENTCA = 0x09
CR_PROP_CATYPE = 0x0A
CR_PROP_CASIGCERTCOUNT = 0x0B
CR_PROP_CASIGCERT = 0x0C
CR_PROP_CASIGCERTCHAIN = 0x0D
CR_PROP_CAXCHGCERTCOUNT = 0x0E
CR_PROP_CAXCHGCERT = 0x0F
CR_PROP_CAXCHGCERTCHAIN = 0x10
CR_PROP_BASECRL = 0x11
CR_PROP_DELTACRL = 0x12
CR_PROP_CACERTSTATE = 0x13
CR_PROP_CRLSTATE = 0x14
CR_PROP_CAPROPIDMAX = 0x15
CR_PROP_DNSNAME = 0x16
CR_PROP_ROLESEPARATIONENABLED = 0x17
CR_PROP_KRACERTUSEDCOUNT = 0x18
CR_PROP_KRACERTCOUNT = 0x19
CR_PROP_KRACERT = 0x1A
CR_PROP_KRACERTSTATE = 0x1B
CR_PROP_ADVANCEDSERVER = 0x1C
CR_PROP_TEMPLATES = 0x1D
CR_PROP_BASECRLPUBLISHSTATUS = 0x1E
CR_PROP_DELTACRLPUBLISHSTATUS = 0x1F
CR_PROP_CASIGCERTCRLCHAIN = 0x20
CR_PROP_CAXCHGCERTCRLCHAIN = 0x21
CR_PROP_CACERTSTATUSCODE = 0x22
CR_PROP_CACERTVERSION = 0x27
CR_PROP_SANITIZEDCASHORTNAME = 0x28
CR_PROP_CERTCDPURLS = 0x29
CR_PROP_CERTAIAURLS = 0x2A
CR_PROP_CERTAIAOCSPURLS = 0x2B

CA_DISP_VALID = 0x03
ENUM_ENTERPRISE_SUBCA = 1
CPF_BASE = 0x1
CPF_DELTA = 0x2
CPF_COMPLETE = 0x4

# GetCACert fchain values (MS-WCCE 3.2.1.4.2.2.x)
GETCERT_CASIGCERT = 0x00000000
GETCERT_CAXCHGCERT = 0x00000001
GETCERT_CHAIN = 0x80000000
GETCERT_CRLS = 0x00800000
GETCERT_CURRENTCRL = 0x6363726C        # "ccrl"
GETCERT_FILEVERSION = 0x66696C65       # "file"
GETCERT_CAINFO = 0x696E666F            # "info"
GETCERT_CANAME = 0x6E616D65            # "name"
GETCERT_PARENTCONFIG = 0x70617265      # "pare"
GETCERT_POLICYVERSION = 0x706F6C69     # "poli"
GETCERT_PRODUCTVERSION = 0x70726F64    # "prod"
GETCERT_SANITIZEDCANAME = 0x73616E69   # "sani"
GETCERT_SHAREDFOLDER = 0x73686172      # "shar"
GETCERT_CATYPE = 0x74797065            # "type"
GETCERT_CACERTBYINDEX = 0x6374         # "ct" << 16 | index
GETCERT_CRLBYINDEX = 0x636C            # "cl" << 16 | index
GETCERT_EXITVERSIONBYINDEX = 0x6578    # "ex" << 16 | index
GETCERT_CACERTSTATEBYINDEX = 0x7374    # "st" << 16 | index
GETCERT_CRLSTATEBYINDEX = 0x736C       # "sl" << 16 | index

CRL_REASONS = {
    0: x509.ReasonFlags.unspecified, 1: x509.ReasonFlags.key_compromise, 2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed, 4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation, 6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl, 9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}

FILE_VERSION = "10.0:20348.1"
PRODUCT_VERSION = "10.0:20348.1"
POLICY_DESCRIPTION = "Windows default"
EXIT_DESCRIPTION = "Windows default"
CLOCK_SKEW = datetime.timedelta(minutes=10)

DEFAULT_CONFIG = {
    "ca_name": lab_pki.CA_NAME,
    "dns_name": lab_pki.CA_HOST,
    "server_short_name": lab_pki.seed.CA_NETBIOS,
    "dns_domain": "lab.adcs.test",
    "base_dn": "DC=lab,DC=adcs,DC=test",
    "editf_attributesubjectaltname2": False,
    "templates": None,  # None = every template the template source knows, else a list of names
    "base_crl_period_hours": 24 * 7,
    "delta_crl_period_hours": 24,
    "crl_overlap_hours": 1,
    "xchg_validity_days": 7,
    "key_archival": True,  # accept CMC requests with an archived key (the lab CA acts as if a KRA is configured)
    "validity_period_years": 2,  # ValidityPeriod/ValidityPeriodUnits: issued certificates never outlive this
    "publish_crls_to_directory": True,  # write base/delta CRLs to the CDP object in AD when a directory is in use
    "retrieve_requester_only": True,  # status inspection only by the requester (or an administrator)
}


@dataclass
class Requester:
    user: str
    domain: str = ""
    sid: str = ""
    group_sids: List[str] = field(default_factory=list)
    authn_type: int = 0
    transport: str = "dcom"

    @property
    def display(self):
        return "%s\\%s" % (self.domain, self.user) if self.domain else self.user


@dataclass
class CAResponse:
    disposition: int
    status_hresult: int
    request_id: int
    disposition_message: str
    cert_der: Optional[bytes] = None
    chain_pkcs7: Optional[bytes] = None
    full_response: Optional[bytes] = None
    call_status: int = 0  # the HRESULT of the call itself (a refusal before the request is processed)


def _error_message(prefix, hresult):
    return "%s  %s 0x%08x (%d %s)" % (prefix, errors.hresult_text(hresult), hresult & 0xFFFFFFFF,
                                      errors.signed32(hresult), errors.hresult_name(hresult))


def _policy_message(hresult, detail=None):
    return "Denied by Policy Module  0x%08x, %s" % (hresult & 0xFFFFFFFF, detail or errors.hresult_text(hresult))


def _utf16z(text):
    return (text + "\0").encode("utf-16-le")


def parse_attributes(attributes):
    """``name:value`` lines (``\\n`` or ``\\r\\n``) -> list of (name, value). Names keep their case."""
    result = []
    if not attributes:
        return result
    for line in attributes.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.strip().rstrip("\0")
        if not line or ":" not in line:
            continue
        name, value = line.split(":", 1)
        result.append((name.strip(), value.strip()))
    return result


def _attr(pairs, name):
    for key, value in pairs:
        if key.lower() == name.lower():
            return value
    return None


def _parse_san_attribute(value):
    """``dns=a&upn=b&email=c&url=d&ipaddress=e&guid=f&dn=...`` -> list of x509.GeneralName.

    Only the names of MS-WCCE 3.2.1.4.2.1.2 (dns, email, upn, dn, url, ipaddress, guid) make a name, as on
    Windows; others (``ip=``, ``uri=``, ``rfc822name=``) are ignored."""
    names = []
    for part in value.split("&"):
        if "=" not in part:
            continue
        kind, item = part.split("=", 1)
        kind = kind.strip().lower()
        item = item.strip()
        if not item:
            continue
        if kind == "dns":
            names.append(x509.DNSName(item))
        elif kind == "upn":
            names.append(_upn_name(item))
        elif kind == "email":
            names.append(x509.RFC822Name(item))
        elif kind == "url":
            names.append(x509.UniformResourceIdentifier(item))
        elif kind == "ipaddress":
            names.append(x509.IPAddress(ipaddress.ip_address(item)))
        elif kind == "guid":
            names.append(x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.25.1"),
                                        b"\x04\x10" + uuid.UUID(item).bytes_le))
        elif kind == "dn":
            names.append(x509.DirectoryName(x509.Name.from_rfc4514_string(item)))
    return names


def _upn_name(upn):
    raw = upn.encode("utf-8")
    if len(raw) < 128:
        value = b"\x0c" + bytes([len(raw)]) + raw
    else:
        value = b"\x0c\x82" + len(raw).to_bytes(2, "big") + raw
    return x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), value)


class CertificationAuthority:
    """One enterprise subordinate CA ("LAB-CA"). Thread-safe."""

    def __init__(self, state_dir, template_source=None):
        self.state_dir = os.path.abspath(state_dir)
        self.directory = os.path.join(self.state_dir, "ca")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.pki = lab_pki.ensure_pki(self.state_dir)
        self.config_path = os.path.join(self.directory, "config.json")
        self.config = self._load_config()
        self.ad: Optional[LabDirectory] = None
        self.templates: TemplateSource = self._template_source(template_source)
        self.db = dbmod.RequestDB(os.path.join(self.directory, "requests.db"))
        self._lock = threading.RLock()
        # the CA's signing certificates by index (renew-ca adds some); the last one issues (MS-CSRA 3.1.1.11)
        self.store = castore.CAStore(self.state_dir, self.pki)
        self.ca_cert = self.store.current.cert
        self.ca_key = self.store.current.key
        self.root_cert = self.pki.root_cert
        self.cert_enroll_dir = os.path.join(self.directory, "CertEnroll")
        os.makedirs(self.cert_enroll_dir, exist_ok=True)
        self._xchg_cert = None
        self._xchg_key = None
        # Fault knobs alter_subject / alter_san (set by the lab CA server): (subject, sans) -> (subject, sans).
        self.alter_names = None
        self._ensure_xchg()
        self._ensure_crls()
        self._export_ca_cert()
        self._sync_cdp()

    @classmethod
    def open(cls, state_dir, template_source=None):
        """Open the CA of ``state_dir``. ``template_source``: None/"auto" = the lab AD over LDAPS when a directory is
        configured for the state dir (lab.json, or a seeded lab's accounts.json), else the built-in table;
        "ldap" = the lab AD (error when none is configured); "builtin" = the built-in table (no directory at all:
        no access checks, subjects from the requester's name); or a TemplateSource instance."""
        return cls(state_dir, template_source)

    def _template_source(self, choice):
        if isinstance(choice, TemplateSource):
            self.ad = getattr(choice, "directory", None)
            return choice
        if choice in (None, "auto", "ldap"):
            config = DirectoryConfig.discover(self.state_dir)
            if config is not None:
                self.ad = LabDirectory(config)
                self.config["dns_domain"] = config.dns_domain
                self.config["base_dn"] = config.base_dn
                return LdapTemplateSource(self.ad)
            if choice == "ldap":
                raise CAError(errors.ERROR_DS_SERVER_DOWN, "No lab directory is configured for %s (no lab.json)."
                              % self.state_dir)
            return BuiltinTemplateSource()
        if choice == "builtin":
            return BuiltinTemplateSource()
        raise ValueError("unknown template source %r" % (choice,))

    @property
    def template_source_kind(self):
        return getattr(self.templates, "kind", "custom")

    def close(self):
        self.db.close()
        if self.ad is not None:
            self.ad.close()

    # -- configuration --------------------------------------------------------------------------------------------
    def _load_config(self):
        config = dict(DEFAULT_CONFIG)
        stored = {}
        if os.path.exists(self.config_path):
            with open(self.config_path, "r", encoding="utf-8") as handle:
                stored = json.load(handle)
        config.update(stored)
        if not config.get("high_serial"):
            # Config_High_Serial_Number (MS-WCCE 3.2.1.4.2.1.4.6.2): a per-CA byte 1..0x7f.
            config["high_serial"] = secrets.randbelow(0x7F) + 1
        if config != stored:
            tmp = self.config_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(config, handle, indent=2, sort_keys=True)
            os.replace(tmp, self.config_path)
        return config

    def save_config(self):
        with self._lock:
            tmp = self.config_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(self.config, handle, indent=2, sort_keys=True)
            os.replace(tmp, self.config_path)

    @property
    def name(self):
        return self.config["ca_name"]

    @property
    def dns_name(self):
        return self.config["dns_name"]

    @property
    def config_dn(self):
        return "CN=Configuration," + self.config["base_dn"]

    # -- published URLs (AD CS defaults) ------------------------------------------------------------------------
    def crl_file_name(self, delta=False, key_index=None):
        """%3%8%9.crl: the CA name, the CRL name suffix "(n)" of the key index (none for key 0), "+" for a delta."""
        key_index = self.store.current.key_index if key_index is None else key_index
        return "%s%s%s.crl" % (self.name, castore.suffix(key_index), "+" if delta else "")

    def ca_cert_file_name(self, cert_index=None):
        """%1_%3%4.crt: the certificate name suffix "(n)" of the CA certificate index (none for index 0)."""
        cert_index = self.store.current.cert_index if cert_index is None else cert_index
        return "%s_%s%s.crt" % (self.dns_name, self.name, castore.suffix(cert_index))

    @property
    def server_short_name(self):
        return self.config["server_short_name"].upper()

    def cdp_urls(self, delta=False, key_index=None):
        """AD CS's default CDP URLs: ldap:///CN=%7%8,CN=%2,CN=CDP,...%10 and http://%1/CertEnroll/%3%8%9.crl, where
        %8 is the CRL name suffix of the key index and %10 names certificateRevocationList for the base CRL and
        deltaRevocationList for the delta CRL."""
        key_index = self.store.current.key_index if key_index is None else key_index
        return [
            "ldap:///CN=%s%s,CN=%s,CN=CDP,CN=Public Key Services,CN=Services,%s?%s?base?"
            "objectClass=cRLDistributionPoint" % (self.name, castore.suffix(key_index), self.server_short_name,
                                                  self.config_dn,
                                                  "deltaRevocationList" if delta else "certificateRevocationList"),
            "http://%s/CertEnroll/%s" % (self.dns_name, self.crl_file_name(delta, key_index)),
        ]

    def aia_urls(self, cert_index=None):
        """ldap:///CN=%7,CN=AIA,...%11 (one object holds every CA certificate) and http://%1/CertEnroll/%1_%3%4.crt."""
        return [
            "ldap:///CN=%s,CN=AIA,CN=Public Key Services,CN=Services,%s?cACertificate?base?"
            "objectClass=certificationAuthority" % (self.name, self.config_dn),
            "http://%s/CertEnroll/%s" % (self.dns_name, self.ca_cert_file_name(cert_index)),
        ]

    def _export_ca_cert(self):
        for entry in self.store.entries:
            path = os.path.join(self.cert_enroll_dir, self.ca_cert_file_name(entry.cert_index))
            data = entry.cert.public_bytes(serialization.Encoding.DER)
            if not os.path.exists(path) or open(path, "rb").read() != data:
                with open(path + ".tmp", "wb") as handle:
                    handle.write(data)
                os.replace(path + ".tmp", path)

    # -- enabled templates ----------------------------------------------------------------------------------------
    def _allowed_names(self):
        """Lower-case names the CA issues (enrollment service certificateTemplates, then config.json "templates"),
        or None for every template the source knows."""
        allowed = None
        published = self.templates.published(self.name)
        if published is not None:
            allowed = {n.lower() for n in published}
        names = self.config.get("templates")
        if names is not None:
            wanted = {n.lower() for n in names}
            allowed = wanted if allowed is None else allowed & wanted
        return allowed

    def enabled_templates(self):
        allowed = self._allowed_names()
        return [t for t in self.templates.all() if allowed is None or t.name.lower() in allowed]

    def _find_enabled_template(self, name):
        template = self.templates.get(name)
        if template is None:
            return None
        allowed = self._allowed_names()
        if allowed is None or template.name.lower() in allowed:
            return template
        return None

    def _directory_request(self):
        """One request's directory reads share one check of AD's change number (directory.DirectoryCache)."""
        scope = getattr(self.ad, "request", None)   # a custom template source's directory may have none
        return scope() if scope is not None else contextlib.nullcontext()

    # -- serial numbers (MS-WCCE 3.2.1.4.2.1.4.6.2, Config_High_Serial_Number) ------------------------------------
    def _serial_number(self, request_id):
        random_part = secrets.token_bytes(8)
        high_serial = bytes([self.config["high_serial"] & 0xFF])
        low_to_high = bytearray(struct.pack("<I", request_id & 0xFFFFFFFF) + struct.pack("<H", 0) + random_part
                                + struct.pack("<I", request_id & 0xFFFFFFFF) + high_serial)
        high = low_to_high[18] & 0x7F
        if high == 0:
            high = 0x61
        elif high & 0xF0 == 0:
            high ^= 0x10
        low_to_high[18] = high
        return int.from_bytes(bytes(low_to_high), "little")

    # -- request processing ------------------------------------------------------------------------------------
    def submit(self, flags, attributes, request, requester, serial_number=""):
        """ICertRequestD(2)::Request(2) with a request blob. Never raises: failures are in the response."""
        flags = int(flags) & 0xFFFFFFFF
        try:
            if not request:
                if serial_number:
                    return self._retrieve_by_serial(serial_number, requester, flags)
                return CAResponse(disposition=errors.E_INVALIDARG, status_hresult=errors.E_INVALIDARG, request_id=0,
                                  disposition_message=_error_message("Error Parsing Request", errors.E_INVALIDARG))
            with self._directory_request():
                return self._check_ca_access(requester) or self._submit(flags, attributes or "", bytes(request),
                                                                        requester)
        except Exception:  # never let an exception reach the wire
            log.exception("unexpected error while processing a request")
            hresult = 0x8000FFFF  # E_UNEXPECTED
            return CAResponse(disposition=hresult, status_hresult=hresult, request_id=0,
                              disposition_message="Unexpected error  0x8000ffff (E_UNEXPECTED)")

    def _submit(self, flags, attributes, request, requester):
        pairs = parse_attributes(attributes)
        request_id = self.db.new_request(requester.display, requester.sid or "", json.dumps(asdict(requester)),
                                         requester.transport, flags, attributes, request)
        try:
            parsed = parse_request(request, flags & 0xFF00)
        except CAError as error:
            if error.hresult in (errors.NTE_BAD_SIGNATURE, errors.CRYPT_E_NO_SIGNER):
                message = _error_message("Error Verifying Request Signature or Signing Certificate", error.hresult)
            else:
                message = _error_message("Error Parsing Request", error.hresult)
            return self._fail(request_id, flags, error.hresult, message, dbmod.DB_DISP_ERROR, None)
        self.db.update(request_id, request_type=parsed.kind, subject=parsed.csr.subject.rfc4514_string())
        if parsed.archived_key:
            try:
                self._check_archived_key(parsed)
            except CAError as error:
                return self._fail(request_id, flags, error.hresult,
                                  _error_message("Error Archiving Private Key", error.hresult),
                                  dbmod.DB_DISP_ERROR, parsed.body_part_id)
            self.db.update(request_id, archived_key=parsed.archived_key)
        # A renewal (MS-WCCE 3.2.1.4.2.1.4.2): CMS/CMC whose PKCS#10 (or signer) carries szOID_RENEWAL_CERTIFICATE.
        try:
            renewal = self._check_renewal(parsed)
        except CAError as error:
            return self._fail(request_id, flags, error.hresult,
                              _error_message("Error Verifying Request Signature or Signing Certificate",
                                             error.hresult) if not getattr(error, "policy_message", None)
                              else error.policy_message, dbmod.DB_DISP_ERROR, parsed.body_part_id)
        if renewal is not None:
            self.db.update(request_id, old_certificate=renewal.public_bytes(serialization.Encoding.DER))
        # Name/value pairs inside the request count as request attributes; the attribute string wins.
        all_pairs = pairs + [pair for pair in parsed.name_value_pairs if _attr(pairs, pair[0]) is None]
        try:
            template = self._policy_template(parsed, all_pairs, request_id, renewal)
            self.db.update(request_id, template=template.name, template_oid=template.oid)
            account = self._account(requester)
            self._check_enroll_right(template, account)
            self._policy_checks(parsed, template)
            renewal_policy.check_same_key(template, parsed.csr, renewal, _PolicyError)
            # Build the subject now so that a missing directory attribute refuses the request before it pends.
            self._subject_and_sans(parsed, template, all_pairs, account, renewal)
        except CAError as error:
            return self._fail(request_id, flags, error.hresult, _denial(error), dbmod.DB_DISP_DENIED,
                              parsed.body_part_id)
        if template.pend_all_requests:
            self.db.update(request_id, disposition=dbmod.DB_DISP_PENDING, disposition_message="Taken Under Submission",
                           status_hresult=0)
            return self._pending_response(request_id, flags, parsed.body_part_id)
        return self._issue(request_id, flags, parsed, template, all_pairs, requester, account=account)

    def _policy_template(self, parsed, pairs, request_id=None, renewal=None):
        name = _attr(pairs, "CertificateTemplate")
        if not name:
            name = _template_from_extensions(parsed.csr)
        if not name and renewal is not None:
            name = _template_from_certificate(renewal)
        if not name:
            raise _PolicyError(errors.CERTSRV_E_NO_CERT_TYPE)
        if request_id is not None:
            self.db.update(request_id, template=name)  # what was asked for, even when it is refused
        try:
            template = self._find_enabled_template(name)
        except DirectoryError as exc:
            raise _directory_error(exc)
        if template is None:
            raise _PolicyError(errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE,
                               "The request was for a certificate template that is not supported by the Active "
                               "Directory Certificate Services policy: %s." % name)
        return template

    # -- the requester's account (directory) and rights ---------------------------------------------------------
    def _account(self, requester):
        """The requester's account: read from the lab AD (with tokenGroups) when a directory is in use, else made
        up from the Requester (built-in template mode)."""
        sam = requester.user or ""
        if self.ad is None:
            computer = sam.endswith("$")
            domain = self.config["dns_domain"]
            return DirectoryAccount(
                dn=None, sam=sam, sid=requester.sid or "", token_groups=list(requester.group_sids or []),
                upn=None if computer else "%s@%s" % (sam, domain),
                dns_host_name="%s.%s" % (sam[:-1].lower(), domain) if computer else None, cn=sam.rstrip("$"),
                is_computer=computer)
        try:
            account = self.ad.account(sam=sam, sid=requester.sid or None)
        except DirectoryError as exc:
            raise _directory_error(exc)
        if account is None:
            raise _PolicyError(errors.ERROR_NO_SUCH_USER, "The requester %s was not found in the directory."
                               % requester.display)
        return account

    def _resolve_principal(self, principal, domain_sid):
        """SID of a seed-style principal ("rid:512", "sid:S-1-5-11", "name:groupmember") or None."""
        kind, _, value = principal.partition(":")
        if kind == "rid":
            return "%s-%s" % (domain_sid, value) if domain_sid else None
        if kind == "sid":
            return value
        if self.ad is None:
            return None
        found = self.ad.account(sam=value)
        return found.sid if found is not None else None

    def ca_access_status(self, requester):
        """0 when ``requester`` holds Request Certificates on the CA, else CERTSRV_E_ENROLL_DENIED: the status of
        GetCACert/GetCAProperty/GetCAPropertyInfo calls, which a Windows CA checks as it checks Request."""
        refused = self._check_ca_access(requester)
        return refused.call_status if refused is not None else 0

    def _check_ca_access(self, requester):
        """The CA's own security (config "ca_security", Windows' registry; default seed.CA_SECURITY): a requester
        without Request Certificates gets CERTSRV_E_ENROLL_DENIED for the call, with no request row."""
        acl = self.config.get("ca_security") or lab_seed.CA_SECURITY
        try:
            account = self._account(requester)
        except CAError:
            return None  # an unknown requester is refused by the policy module, with a request row
        except DirectoryError as exc:
            log.warning("directory error: %s", exc)
            return None
        domain_sid = account.sid.rsplit("-", 1)[0] if (account.sid or "").startswith("S-1-5-21-") else None
        try:
            entries = access.ca_access_entries(acl, lambda p: self._resolve_principal(p, domain_sid))
        except DirectoryError as exc:
            log.warning("directory error: %s", exc)
            return None
        token = [account.sid] + list(account.token_groups) + access.WELL_KNOWN_TOKEN_SIDS
        if access.ca_allows(entries, token):
            return None
        hresult = errors.CERTSRV_E_ENROLL_DENIED
        log.warning("%s has no Request Certificates permission on the CA: 0x%08x", requester.display, hresult)
        return CAResponse(disposition=hresult, status_hresult=hresult, request_id=0, call_status=hresult,
                          disposition_message="%s 0x%08x (%d %s)" % (
                              errors.hresult_text(hresult), hresult, errors.signed32(hresult),
                              errors.hresult_name(hresult)))

    def _check_enroll_right(self, template, account):
        """Enroll extended right on the template's DACL for the account SID, its tokenGroups and the well-known
        SIDs of a network logon (MS-WCCE 3.2.2.6.2.1.4.x); built-in templates carry no descriptor (no check)."""
        if template.security_descriptor is None:
            return
        token = [account.sid] + list(account.token_groups) + access.WELL_KNOWN_TOKEN_SIDS
        try:
            allowed = bool(template.security_descriptor) and access.check_extended_right(
                template.security_descriptor, token, access.ENROLL_GUID)
        except (ValueError, struct.error):
            allowed = False
        if not allowed:
            raise _PolicyError(errors.CERTSRV_E_TEMPLATE_DENIED)

    def _policy_checks(self, parsed, template):
        refusal = tpl.key_refusal(template, parsed.csr.public_key())
        if refusal is not None:
            raise _PolicyError(refusal)
        if template.private_key_flag & CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL and not parsed.archived_key:
            raise _PolicyError(errors.CERTSRV_E_ARCHIVED_KEY_REQUIRED)
        if template.ra_signature > 0:
            # Enrollment-agent (RA) co-signatures are not implemented: such templates are refused as AD CS refuses
            # a request that lacks them.
            raise _PolicyError(errors.CERTSRV_E_SIGNATURE_COUNT)

    # -- renewal ------------------------------------------------------------------------------------------------
    def _check_renewal(self, parsed):
        """Return the certificate being renewed (verified) or None for a new request. Raises CAError:
        CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE when the attribute is not a certificate or is not the certificate whose
        key signed the request; CERT_E_CHAINING when it does not chain to this CA (as Windows answers a certificate
        it cannot chain); CRYPT_E_REVOKED / CERT_E_EXPIRED for a revoked or
        expired one. (A bad signature was already refused with NTE_BAD_SIGNATURE while parsing.)"""
        if parsed.kind == "pkcs10":
            return None  # renewal needs the CMS/CMC signature by the old key (MS-WCCE 3.2.1.4.2.1.4.2)
        if parsed.renewal_cert is None and not parsed.renewal_attribute_bad:
            return None
        if parsed.renewal_attribute_bad or parsed.renewal_cert is None:
            raise CAError(errors.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE)
        old = parsed.renewal_cert
        signer = parsed.signer_cert
        if signer is None or signer.public_bytes(serialization.Encoding.DER) != old.public_bytes(
                serialization.Encoding.DER):
            raise CAError(errors.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE,
                          "The renewal certificate is not the certificate that signed the request.")
        if self.store.issuer_of(old) is None:
            # as Windows: the old certificate must chain (CertGetCertificateChain) before it counts; any of the CA's
            # signing certificates will do (one issued before a CA renewal still chains)
            raise CAError(errors.CERT_E_CHAINING, "The certificate to renew does not chain to this CA.")
        row = self.db.get_by_serial("%x" % old.serial_number)
        if row is None or row["certificate"] != old.public_bytes(serialization.Encoding.DER):
            raise CAError(errors.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE,
                          "The certificate to renew is not in this CA's database.")
        if row["disposition"] == dbmod.DB_DISP_REVOKED:
            raise CAError(errors.CRYPT_E_REVOKED)
        now = dbmod.utcnow()
        if not old.not_valid_before_utc <= now <= old.not_valid_after_utc:
            raise CAError(errors.CERT_E_EXPIRED)
        return old

    def _check_archived_key(self, parsed):
        """Decrypt and check an archived private key (CMC + szOID_ARCHIVED_KEY_ATTR); raises CAError."""
        if not self.config.get("key_archival"):
            raise CAError(errors.CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED)
        blob = archival.decrypt_archived_key(parsed.archived_key, self.xchg_key)
        archival.check_archived_key(blob, parsed.csr.public_key())

    def _fail(self, request_id, flags, hresult, message, db_disposition, body_part_id):
        self.db.update(request_id, disposition=db_disposition, status_hresult=hresult, disposition_message=message,
                       resolved_at=dbmod.iso(dbmod.utcnow()))
        full = None
        if flags & CR_IN_FULLRESPONSE:
            full = ext.cmc_full_response(ext.CMC_STATUS_FAILED, body_part_id or 1, self.ca_cert, self.ca_key,
                                         [self.ca_cert, self.root_cert], status_string=message,
                                         fail_info=ext.CMC_FAIL_BAD_REQUEST)
        return CAResponse(disposition=hresult, status_hresult=hresult, request_id=request_id,
                          disposition_message=message, full_response=full)

    def _pending_response(self, request_id, flags, body_part_id):
        full = None
        if flags & CR_IN_FULLRESPONSE:
            full = ext.cmc_full_response(ext.CMC_STATUS_PENDING, body_part_id or 1, self.ca_cert, self.ca_key,
                                         [self.ca_cert, self.root_cert], status_string="Taken Under Submission",
                                         pend_token=struct.pack("<I", request_id), pend_time=dbmod.utcnow())
        return CAResponse(disposition=CR_DISP_UNDER_SUBMISSION, status_hresult=0, request_id=request_id,
                          disposition_message="Taken Under Submission", full_response=full)

    # -- subject and subject alternative names (MS-WCCE 3.2.2.6.2.1.4.5 / MS-CRTD 2.28) ----------------------------
    def _subject_from_account(self, template, account):
        flag = template.name_flag
        rdns = []
        if flag & tpl.CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH:
            if account.dn:
                # The DN's RDNs, most significant (DC=test) first in the encoded Name, as AD CS builds it
                # (from_rfc4514_string already returns them in that order).
                rdns.extend(x509.Name.from_rfc4514_string(account.dn).rdns)
            else:
                rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                               account.cn or account.sam)]))
        elif flag & tpl.CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME:
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                           account.cn or account.sam)]))
        elif flag & tpl.CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN:
            if not account.dns_host_name:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_DNS_REQUIRED)
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                           account.dns_host_name)]))
        if flag & tpl.CT_FLAG_SUBJECT_REQUIRE_EMAIL:
            if not account.mail:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_EMAIL_REQUIRED)
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, account.mail)]))
        return x509.Name(rdns)

    def _sans_from_account(self, template, account):
        flag = template.name_flag
        sans = []
        if flag & tpl.CT_FLAG_SUBJECT_ALT_REQUIRE_UPN:
            upn = account.upn
            if not upn and not account.is_computer and account.sam:
                upn = "%s@%s" % (account.sam, self.config["dns_domain"])  # the implicit UPN
            if not upn:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_UPN_REQUIRED)
            sans.append(_upn_name(upn))
        if flag & tpl.CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL:
            if not account.mail:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_EMAIL_REQUIRED)
            sans.append(x509.RFC822Name(account.mail))
        if flag & tpl.CT_FLAG_SUBJECT_ALT_REQUIRE_DNS:
            if not account.dns_host_name:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_DNS_REQUIRED)
            sans.append(x509.DNSName(account.dns_host_name))
        if flag & tpl.CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS:
            sans.append(x509.DNSName(self.config["dns_domain"]))
        if flag & tpl.CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID:
            if not account.object_guid:
                raise _PolicyError(errors.CERTSRV_E_SUBJECT_DIRECTORY_GUID_REQUIRED)
            sans.append(x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.25.1"),
                                       b"\x04\x10" + bytes(account.object_guid)))
        return sans

    def _subject_and_sans(self, parsed, template, pairs, account, renewal=None):
        csr = parsed.csr
        sans = []
        old_names = renewal_policy.names_from_old_certificate(template, renewal)
        if old_names is not None:
            subject, sans = old_names   # CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME only (renewal.py)
        elif template.enrollee_supplies_subject:
            subject = csr.subject
            try:
                sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                sans = []
            except ValueError:
                raise _PolicyError(errors.CERTSRV_E_BAD_REQUESTSUBJECT)
            if not subject.rdns and not sans:
                raise _PolicyError(errors.CERTSRV_E_BAD_REQUESTSUBJECT)
        else:
            subject = self._subject_from_account(template, account)
            sans = self._sans_from_account(template, account)
        if self.config.get("editf_attributesubjectaltname2"):
            san_value = _attr(pairs, "SAN")
            if san_value:
                try:
                    extra = _parse_san_attribute(san_value)
                except ValueError:
                    raise _PolicyError(errors.CERTSRV_E_BAD_REQUESTSUBJECT)
                if extra:
                    sans = extra
        if not subject.rdns and not sans:
            raise _PolicyError(errors.CERTSRV_E_BAD_REQUESTSUBJECT)
        return subject, sans

    def _issue(self, request_id, flags, parsed, template, pairs, requester, approved=False, account=None):
        try:
            renewal = self._check_renewal(parsed)
            if account is None:
                account = self._account(requester)
            subject, sans = self._subject_and_sans(parsed, template, pairs, account, renewal)
        except CAError as error:
            return self._fail(request_id, flags, error.hresult, _denial(error), dbmod.DB_DISP_DENIED,
                              parsed.body_part_id)
        if self.alter_names is not None:
            subject, sans = self.alter_names(subject, sans)
        cert = self._build_certificate(request_id, parsed.csr, template, subject, sans, account, renewal)
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        serial_hex = "%x" % cert.serial_number
        self.db.update(request_id, disposition=dbmod.DB_DISP_ISSUED, status_hresult=0,
                       disposition_message="Issued", serial=serial_hex, certificate=cert_der,
                       subject=cert.subject.rfc4514_string(), not_before=dbmod.iso(cert.not_valid_before_utc),
                       not_after=dbmod.iso(cert.not_valid_after_utc), resolved_at=dbmod.iso(dbmod.utcnow()))
        return self._issued_response(request_id, flags, cert, parsed.body_part_id)

    def _issued_response(self, request_id, flags, cert, body_part_id, disposition=CR_DISP_ISSUED,
                         message="Issued"):
        chain = [cert, self.ca_cert, self.root_cert]
        chain_pkcs7 = pkcs7.serialize_certificates(chain, serialization.Encoding.DER)
        if flags & CR_IN_FULLRESPONSE:
            full = ext.cmc_full_response(ext.CMC_STATUS_SUCCESS, body_part_id or 1, self.ca_cert, self.ca_key,
                                         chain, status_string=message)
        else:
            full = chain_pkcs7
        return CAResponse(disposition=disposition, status_hresult=0, request_id=request_id,
                          disposition_message=message, cert_der=cert.public_bytes(serialization.Encoding.DER),
                          chain_pkcs7=chain_pkcs7, full_response=full)

    def _not_after(self, now, template):
        years = int(self.config.get("validity_period_years") or 0)
        limits = [now + template.validity, self.ca_cert.not_valid_after_utc]
        if years > 0:
            try:
                limits.append(now.replace(year=now.year + years))
            except ValueError:  # 29 February
                limits.append(now.replace(year=now.year + years, day=28))
        return min(limits)

    def _build_certificate(self, request_id, csr, template, subject, sans, account, renewal=None):
        now = dbmod.utcnow()
        not_before = now - CLOCK_SKEW
        not_after = self._not_after(now, template)
        public_key = csr.public_key()
        critical = set(template.critical_extensions or ())
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(self.ca_cert.subject)
                   .public_key(public_key)
                   .serial_number(self._serial_number(request_id))
                   .not_valid_before(not_before)
                   .not_valid_after(not_after))
        if template.schema_version <= 1:
            builder = builder.add_extension(ext.template_name_ext(template.name), critical=False)
        else:
            builder = builder.add_extension(
                ext.template_info_ext(template.oid, template.major_version, template.minor_version), critical=False)
        ekus = template.ekus or (template.application_policies if template.schema_version >= 2 else [])
        if ekus:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid) for oid in ekus]), critical="2.5.29.37" in critical)
        if template.enrollment_flag & tpl.CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS:
            builder = builder.add_extension(ext.smime_capabilities_ext(), critical=False)
        if template.schema_version >= 2 and (template.application_policies or template.ekus):
            builder = builder.add_extension(
                ext.application_policies_ext(template.application_policies or template.ekus), critical=False)
        if template.issuance_policies:
            builder = builder.add_extension(x509.CertificatePolicies([
                x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in template.issuance_policies]),
                critical=False)
        if template.key_usage:
            ku = template.key_usage
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=bool(ku & 0x80), content_commitment=bool(ku & 0x40),
                key_encipherment=bool(ku & 0x20), data_encipherment=bool(ku & 0x10), key_agreement=bool(ku & 0x08),
                key_cert_sign=bool(ku & 0x04), crl_sign=bool(ku & 0x02),
                encipher_only=bool(ku & 0x08) and bool(ku & 0x01), decipher_only=bool(ku & 0x08) and bool(ku & 0x8000)),
                critical="2.5.29.15" in critical or not template.critical_extensions)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(url) for url in self.cdp_urls()], relative_name=None,
            reasons=None, crl_issuer=None)]), critical=False)
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))
            for url in self.aia_urls()]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not subject.rdns)
        security_ext = None
        if not template.no_security_extension:
            if renewal is not None:
                for extension in renewal.extensions:
                    if extension.oid.dotted_string == ext.OID_NTDS_CA_SECURITY_EXT:
                        security_ext = x509.UnrecognizedExtension(extension.oid, extension.value.value)
            elif account is not None and account.sid and not template.enrollee_supplies_subject:
                security_ext = ext.ntds_security_ext(account.sid)
        if security_ext is not None:
            builder = builder.add_extension(security_ext, critical=False)
        return builder.sign(self.ca_key, hashes.SHA256())

    # -- retrieval ---------------------------------------------------------------------------------------------
    def retrieve(self, request_id, requester, flags=0):
        """Request with pdwRequestId set and an empty request blob (MS-WCCE 3.2.1.4.2.1.2)."""
        try:
            row = self.db.get(int(request_id))
            if row is None:
                # MS-WCCE 3.2.1.4.2.1.3 / 3.2.1.4.3.1.2: a failed lookup returns CERTSRV_E_PROPERTY_EMPTY.
                hresult = errors.CERTSRV_E_PROPERTY_EMPTY
                return CAResponse(disposition=hresult, status_hresult=hresult, request_id=int(request_id),
                                  disposition_message=_error_message("Error Retrieving Request", hresult))
            if not self._may_retrieve(row, requester):
                hresult = errors.E_ACCESSDENIED
                return CAResponse(disposition=hresult, status_hresult=hresult, request_id=int(request_id),
                                  disposition_message=_error_message("Error Retrieving Request", hresult))
            return self._response_for_row(row, flags)
        except Exception:
            log.exception("unexpected error while retrieving request %r", request_id)
            return CAResponse(disposition=0x8000FFFF, status_hresult=0x8000FFFF, request_id=0,
                              disposition_message="Unexpected error  0x8000ffff (E_UNEXPECTED)")

    def _may_retrieve(self, row, requester):
        """Status inspection of someone else's request: refused with E_ACCESSDENIED unless the caller is the
        requester or an administrator (BUILTIN\\Administrators, Domain Admins, Enterprise Admins). MS-WCCE
        3.2.1.4.2.1.3 / 3.2.1.4.3.1.2 do not list this check; it is how the lab models the Windows CA, and
        config.json "retrieve_requester_only": false turns it off. Requests stored without a SID, or a caller
        without one, are matched by name."""
        if requester is None or not self.config.get("retrieve_requester_only", True):
            return True
        groups = [g.upper() for g in (requester.group_sids or [])]
        if "S-1-5-32-544" in groups or any(g.endswith("-512") or g.endswith("-519") for g in groups):
            return True
        stored_sid = (row["requester_sid"] or "").upper()
        if stored_sid and requester.sid:
            return stored_sid == requester.sid.upper()
        return (row["requester_name"] or "").lower() == requester.display.lower()

    def _retrieve_by_serial(self, serial_number, requester, flags):
        row = self.db.get_by_serial(serial_number.strip().replace(" ", "").lower().lstrip("0") or "0")
        if row is not None and not self._may_retrieve(row, requester):
            hresult = errors.E_ACCESSDENIED
            return CAResponse(disposition=hresult, status_hresult=hresult, request_id=0,
                              disposition_message=_error_message("Error Retrieving Request", hresult))
        if row is None:
            hresult = errors.CERTSRV_E_PROPERTY_EMPTY
            return CAResponse(disposition=hresult, status_hresult=hresult, request_id=0,
                              disposition_message=_error_message("Error Retrieving Request", hresult))
        return self._response_for_row(row, flags)

    def _response_for_row(self, row, flags):
        disposition = row["disposition"]
        request_id = row["request_id"]
        if disposition in (dbmod.DB_DISP_ISSUED, dbmod.DB_DISP_REVOKED):
            cert = x509.load_der_x509_certificate(row["certificate"])
            if disposition == dbmod.DB_DISP_REVOKED:
                return self._issued_response(request_id, flags, cert, 1, disposition=CR_DISP_REVOKED,
                                             message="Revoked")
            return self._issued_response(request_id, flags, cert, 1)
        if disposition in (dbmod.DB_DISP_PENDING, dbmod.DB_DISP_ACTIVE):
            return self._pending_response(request_id, flags, 1)
        hresult = row["status_hresult"] or errors.CERTSRV_E_BAD_REQUESTSTATUS
        return CAResponse(disposition=hresult, status_hresult=hresult, request_id=request_id,
                          disposition_message=row["disposition_message"] or _error_message("Denied", hresult))

    # -- administration ---------------------------------------------------------------------------------------
    def get_request(self, request_id):
        return self.db.get(int(request_id))

    def list_requests(self, disposition=None):
        return self.db.list(disposition)

    def approve(self, request_id):
        """Issue a pending request (certutil -resubmit). Returns the CAResponse of the issuance."""
        with self._lock:
            row = self.db.get(int(request_id))
            if row is None:
                raise CAError(errors.CERTSRV_E_NO_REQUEST)
            if row["disposition"] != dbmod.DB_DISP_PENDING:
                raise CAError(errors.CERTSRV_E_BAD_REQUESTSTATUS)
            requester = Requester(**json.loads(row["requester_json"]))
            parsed = parse_request(row["request_blob"], row["flags"] & 0xFF00)
            try:
                template = self.templates.get(row["template_oid"] or row["template"]) \
                    or self.templates.get(row["template"])
            except DirectoryError as exc:
                raise _directory_error(exc)
            if template is None:
                raise CAError(errors.CERTSRV_E_UNSUPPORTED_CERT_TYPE)
            pairs = parse_attributes(row["attributes"])
            pairs += [pair for pair in parsed.name_value_pairs if _attr(pairs, pair[0]) is None]
            return self._issue(row["request_id"], 0, parsed, template, pairs, requester, approved=True)

    def deny(self, request_id, by="LAB\\Administrator"):
        """Deny a pending request (certutil -deny). The message reads "Denied by <by>" as AD CS writes it
        (MS-CSRA 3.1.4.1.4); the status is CERTSRV_E_ADMIN_DENIED_REQUEST."""
        with self._lock:
            row = self.db.get(int(request_id))
            if row is None:
                raise CAError(errors.CERTSRV_E_NO_REQUEST)
            if row["disposition"] != dbmod.DB_DISP_PENDING:
                raise CAError(errors.CERTSRV_E_BAD_REQUESTSTATUS)
            hresult = errors.CERTSRV_E_ADMIN_DENIED_REQUEST
            self.db.update(row["request_id"], disposition=dbmod.DB_DISP_DENIED, status_hresult=hresult,
                           disposition_message="Denied by %s  %s 0x%08x (%d %s)" % (
                               by, errors.hresult_text(hresult), hresult, errors.signed32(hresult),
                               errors.hresult_name(hresult)),
                           resolved_at=dbmod.iso(dbmod.utcnow()))

    def revoke(self, serial, reason=0):
        """Revoke an issued certificate by serial (hex, any case, spaces allowed) and publish a delta CRL."""
        if reason not in CRL_REASONS:
            raise CAError(errors.E_INVALIDARG, "Unknown revocation reason %r." % reason)
        serial_hex = ("%x" % serial) if isinstance(serial, int) else \
            (serial.strip().replace(" ", "").lower().lstrip("0") or "0")
        with self._lock:
            row = self.db.get_by_serial(serial_hex)
            if row is None:
                raise CAError(errors.CERTSRV_E_NO_REQUEST, "No certificate with serial number %s." % serial_hex)
            if row["disposition"] != dbmod.DB_DISP_ISSUED:
                raise CAError(errors.CERTSRV_E_BAD_REQUESTSTATUS)
            self.db.update(row["request_id"], disposition=dbmod.DB_DISP_REVOKED, revoked_at=dbmod.iso(dbmod.utcnow()),
                           revocation_reason=reason, disposition_message="Revoked")
            self.publish_crls(delta_only=True)

    # -- exchange certificate ------------------------------------------------------------------------------------
    def _ensure_xchg(self):
        cert_path = os.path.join(self.directory, "xchg.pem")
        key_path = os.path.join(self.directory, "xchg.key")
        now = dbmod.utcnow()
        if os.path.exists(cert_path) and os.path.exists(key_path):
            with open(cert_path, "rb") as handle:
                cert = x509.load_pem_x509_certificate(handle.read())
            if cert.not_valid_after_utc - now > datetime.timedelta(hours=12):
                with open(key_path, "rb") as handle:
                    self._xchg_key = serialization.load_pem_private_key(handle.read(), None)
                self._xchg_cert = cert
                return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        request_id = 0  # not in the request table; serial still follows the AD CS layout
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name + "-Xchg")]))
                .issuer_name(self.ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(self._serial_number(request_id))
                .not_valid_before(now - CLOCK_SKEW)
                .not_valid_after(min(now + datetime.timedelta(days=self.config["xchg_validity_days"]),
                                     self.ca_cert.not_valid_after_utc))
                .add_extension(ext.template_name_ext("CAExchange"), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(ext.OID_KP_CA_EXCHANGE)]),
                               critical=False)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
                .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(url) for url in self.cdp_urls()], relative_name=None,
                    reasons=None, crl_issuer=None)]), critical=False)
                .add_extension(x509.AuthorityInformationAccess([
                    x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                           x509.UniformResourceIdentifier(url)) for url in self.aia_urls()]),
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        lab_pki._write_key(key_path, key)
        lab_pki._write_cert(cert_path, cert)
        self._xchg_cert = cert
        self._xchg_key = key

    @property
    def xchg_cert(self):
        with self._lock:
            self._ensure_xchg()
            return self._xchg_cert

    @property
    def xchg_key(self):
        with self._lock:
            self._ensure_xchg()
            return self._xchg_key

    # -- CRLs: one base and one delta CRL per CA key (CRL_Name_Id = key index, MS-CSRA 3.1.1.4.1) ------------------
    @staticmethod
    def _crl_kind(delta, key_index):
        """The crls table key: "base"/"delta" for key 0 (as before renewals existed), "base(n)"/"delta(n)" else."""
        return ("delta" if delta else "base") + castore.suffix(key_index)

    def _ensure_crls(self):
        with self._lock:
            now = dbmod.utcnow()
            for key_index in self.store.key_indexes():
                base = self.db.get_crl(self._crl_kind(False, key_index))
                if base is None or datetime.datetime.fromisoformat(base["next_update"]) <= now:
                    self._publish_key_crls(key_index, False)
                    continue
                delta = self.db.get_crl(self._crl_kind(True, key_index))
                if delta is None or datetime.datetime.fromisoformat(delta["next_update"]) <= now:
                    self._publish_key_crls(key_index, True)

    def publish_crls(self, delta_only=False):
        """Publish a new base CRL (unless ``delta_only``) and a new delta CRL for every CA key (MS-CSRA 3.1.4.1.6:
        "for each CA Signing_Private_Key"); returns (base_der, delta_der) of the current key."""
        with self._lock:
            result = None
            for key_index in self.store.key_indexes():
                pair = self._publish_key_crls(key_index, delta_only)
                if key_index == self.store.current.key_index:
                    result = pair
            return result

    def _revoked_for_key(self, key_index):
        """Revoked certificates issued under one CA key (their AKI is the key's SKI)."""
        signer = self.store.for_key(key_index).cert
        ski = signer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        out = []
        for item in self.db.revoked():
            try:
                cert = x509.load_der_x509_certificate(item["certificate"])
                aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            except (TypeError, ValueError, x509.ExtensionNotFound):
                aki = None
            if aki == ski or (aki is None and key_index == self.store.current.key_index):
                out.append(item)
        return out

    def _publish_key_crls(self, key_index, delta_only):
        signer = self.store.for_key(key_index)
        now = dbmod.utcnow()
        this_update = now - CLOCK_SKEW
        overlap = datetime.timedelta(hours=self.config["crl_overlap_hours"])
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
        revoked = self._revoked_for_key(key_index)
        base_kind, delta_kind = self._crl_kind(False, key_index), self._crl_kind(True, key_index)
        base_row = self.db.get_crl(base_kind)
        if not delta_only or base_row is None:
            number = self.db.next_counter("crl_number")
            period = datetime.timedelta(hours=self.config["base_crl_period_hours"])
            builder = self._crl_builder(signer, this_update, now + period + overlap, number, aki, revoked)
            builder = builder.add_extension(ext.next_publish_ext(now + period), critical=False)
            builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url) for url in self.cdp_urls(True, key_index)],
                relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
            crl = builder.sign(signer.key, hashes.SHA256())
            self.db.put_crl(base_kind, number, None, this_update, now + period + overlap,
                            crl.public_bytes(serialization.Encoding.DER))
            self._write_crl_file(False, crl, key_index)
            base_row = self.db.get_crl(base_kind)
        base_this_update = datetime.datetime.fromisoformat(base_row["this_update"])
        since_base = [item for item in revoked
                      if datetime.datetime.fromisoformat(item["revoked_at"]) >= base_this_update]
        number = self.db.next_counter("crl_number")
        period = datetime.timedelta(hours=self.config["delta_crl_period_hours"])
        builder = self._crl_builder(signer, this_update, now + period + overlap, number, aki, since_base)
        builder = builder.add_extension(x509.DeltaCRLIndicator(base_row["number"]), critical=True)
        builder = builder.add_extension(ext.next_publish_ext(now + period), critical=False)
        crl = builder.sign(signer.key, hashes.SHA256())
        self.db.put_crl(delta_kind, number, base_row["number"], this_update, now + period + overlap,
                        crl.public_bytes(serialization.Encoding.DER))
        self._write_crl_file(True, crl, key_index)
        delta_der = crl.public_bytes(serialization.Encoding.DER)
        self._publish_to_directory(None if delta_only else base_row["crl"], delta_der, key_index)
        return base_row["crl"], delta_der

    def _cdp_object_name(self, key_index):
        return self.name + castore.suffix(key_index)

    def _publish_to_directory(self, base_der, delta_der, key_index=0):
        """Write the CRLs to the CDP object in AD (CN=<CA><suffix>,CN=<server>,CN=CDP,...). Returns True when
        written; a directory that cannot be reached is logged, not fatal (the HTTP copies are still published)."""
        if self.ad is None or not self.config.get("publish_crls_to_directory", True):
            return False
        try:
            self.ad.publish_crl(self._cdp_object_name(key_index), self.server_short_name, base_der, delta_der)
            return True
        except DirectoryError as exc:
            log.warning("publishing the CRLs to the directory failed: %s", exc)
            return False

    def _sync_cdp(self):
        """At start: make the CDP objects in AD hold the current CRLs (they may have been published while the
        directory was unreachable, or by an older lab CA)."""
        if self.ad is None or not self.config.get("publish_crls_to_directory", True):
            return
        for key_index in self.store.key_indexes():
            name = self._cdp_object_name(key_index)
            try:
                base = self.db.get_crl(self._crl_kind(False, key_index))["crl"]
                delta = self.db.get_crl(self._crl_kind(True, key_index))["crl"]
                stored = self.ad.read_cdp(name, self.server_short_name)
                if stored == (base, delta):
                    continue
                # Never replace newer CRLs (another lab CA instance with the same key may have published them).
                if stored[0] and len(stored[0]) > 1:
                    try:
                        theirs = x509.load_der_x509_crl(stored[0]).last_update_utc
                        if theirs > x509.load_der_x509_crl(base).last_update_utc:
                            continue
                    except ValueError:
                        pass
                self.ad.publish_crl(name, self.server_short_name, base, delta)
            except (DirectoryError, TypeError) as exc:
                log.warning("checking the CDP object in the directory failed: %s", exc)

    def _crl_builder(self, signer, this_update, next_update, number, aki, revoked):
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(signer.cert.subject)
                   .last_update(this_update)
                   .next_update(next_update)
                   .add_extension(aki, critical=False)
                   .add_extension(ext.ca_version_ext(signer.cert_index, signer.key_index), critical=False)
                   .add_extension(x509.CRLNumber(number), critical=False))
        for item in revoked:
            entry = (x509.RevokedCertificateBuilder()
                     .serial_number(int(item["serial"], 16))
                     .revocation_date(datetime.datetime.fromisoformat(item["revoked_at"])))
            reason = item["revocation_reason"] or 0
            if reason:
                entry = entry.add_extension(x509.CRLReason(CRL_REASONS[reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder

    def _write_crl_file(self, delta, crl, key_index=0):
        path = os.path.join(self.cert_enroll_dir, self.crl_file_name(delta, key_index))
        with open(path + ".tmp", "wb") as handle:
            handle.write(crl.public_bytes(serialization.Encoding.DER))
        os.replace(path + ".tmp", path)

    def _crl_index(self, index):
        """The key index (CRL_Name_Id) a CRL property's PropIndex names: its low 16 bits (the high 16 bits name a
        CRL partition, which this CA does not enable: E_INVALIDARG); -1 = the current key."""
        index &= 0xFFFFFFFF
        if index == 0xFFFFFFFF:
            return self.store.current.key_index
        if index >> 16:
            raise CAError(errors.E_INVALIDARG, "CRL partitions are not enabled on this CA.")
        if index >= self.store.count:
            raise CAError(errors.E_INVALIDARG, "Index %d out of range for the CA's CRLs." % index)
        if index not in self.store.key_indexes():
            # a same-key renewal certificate index names no CRL of its own (CR_PROP_CRLSTATE says CA_DISP_ERROR)
            raise CAError(errors.CERTSRV_E_PROPERTY_EMPTY, "No CRL has the CRL name ID %d." % index)
        return index

    def base_crl(self, key_index=None):
        self._ensure_crls()
        key_index = self.store.current.key_index if key_index is None else key_index
        return self.db.get_crl(self._crl_kind(False, key_index))["crl"]

    def delta_crl(self, key_index=None):
        self._ensure_crls()
        key_index = self.store.current.key_index if key_index is None else key_index
        return self.db.get_crl(self._crl_kind(True, key_index))["crl"]

    # -- CA renewal (renew-ca) -------------------------------------------------------------------------------------
    def renew_ca(self, new_key=False, dspublish=True):
        """Renew the CA certificate with the same key or a new one (castore.CAStore.renew), then do what AD CS does
        on restart after a renewal: issue from the new certificate, a new exchange certificate, CRLs for every
        key, the certificate files in CertEnroll and (``dspublish``) the directory objects. Returns the new
        castore.SigningCert."""
        with self._lock:
            entry = self.store.renew(new_key=new_key)
            self.ca_cert, self.ca_key = entry.cert, entry.key
            for name in ("xchg.pem", "xchg.key"):
                path = os.path.join(self.directory, name)
                if os.path.exists(path):
                    os.remove(path)
            self._xchg_cert = self._xchg_key = None
            self._ensure_xchg()
            self._export_ca_cert()
            self.publish_crls()
            if dspublish and self.ad is not None:
                castore.dspublish(self.ad, self.name, [e.cert for e in self.store.entries])
            return entry

    # -- GetCACert ---------------------------------------------------------------------------------------------
    def get_ca_cert(self, fchain):
        """ICertRequestD::GetCACert: the CERTTRANSBLOB content for ``fchain`` (bytes), or CAError."""
        fchain = int(fchain) & 0xFFFFFFFF
        chain = bool(fchain & GETCERT_CHAIN)
        crls = bool(fchain & GETCERT_CRLS)
        base = fchain & ~(GETCERT_CHAIN | GETCERT_CRLS) & 0xFFFFFFFF
        if base == GETCERT_CASIGCERT:  # the current signing certificate (index -1)
            if crls:
                return self._value(CR_PROP_CASIGCERTCRLCHAIN, -1)
            return self._value(CR_PROP_CASIGCERTCHAIN if chain else CR_PROP_CASIGCERT, -1)
        if base == GETCERT_CAXCHGCERT:
            if crls:
                return self._value(CR_PROP_CAXCHGCERTCRLCHAIN, 0)
            return self._value(CR_PROP_CAXCHGCERTCHAIN if chain else CR_PROP_CAXCHGCERT, 0)
        high, index = base >> 16, base & 0xFFFF
        if chain or crls:
            # GETCERT_CACERTBYINDEX | GETCERT_CHAIN [| GETCERT_CRLS] (certutil -cainfo certchain.N / certcrlchain.N)
            if high == GETCERT_CACERTBYINDEX:
                return self._value(CR_PROP_CASIGCERTCRLCHAIN if crls else CR_PROP_CASIGCERTCHAIN, index)
            raise CAError(errors.E_INVALIDARG)
        strings = {
            GETCERT_FILEVERSION: CR_PROP_FILEVERSION, GETCERT_PRODUCTVERSION: CR_PROP_PRODUCTVERSION,
            GETCERT_POLICYVERSION: CR_PROP_POLICYDESCRIPTION, GETCERT_CANAME: CR_PROP_CANAME,
            GETCERT_SANITIZEDCANAME: CR_PROP_SANITIZEDCANAME, GETCERT_SHAREDFOLDER: CR_PROP_SHAREDFOLDER,
            GETCERT_PARENTCONFIG: CR_PROP_PARENTCA,
        }
        if base in strings:
            return _utf16z(self._value(strings[base], 0))
        if base == GETCERT_CATYPE:
            return struct.pack("<i", ENUM_ENTERPRISE_SUBCA)
        if base == GETCERT_CAINFO:
            return self._cainfo()
        if base == GETCERT_CURRENTCRL:
            return self._value(CR_PROP_BASECRL, -1)
        if high == GETCERT_CACERTBYINDEX:
            return self._value(CR_PROP_CASIGCERT, index)
        if high == GETCERT_CRLBYINDEX:
            return self._value(CR_PROP_BASECRL, index)
        if high == GETCERT_CACERTSTATEBYINDEX:
            return self._value(CR_PROP_CACERTSTATE, index)
        if high == GETCERT_CRLSTATEBYINDEX:
            return self._value(CR_PROP_CRLSTATE, index)
        if high == GETCERT_EXITVERSIONBYINDEX:
            if index != 0:
                raise CAError(errors.E_INVALIDARG)
            return _utf16z(FILE_VERSION)
        raise CAError(errors.E_INVALIDARG)

    def _cainfo(self):
        """CAINFO (MS-WCCE 2.2.2.4): ten 32-bit little-endian fields."""
        fields = [40, ENUM_ENTERPRISE_SUBCA, self.store.count, 1, 1, max(_PROPERTIES), 0, 0, 0, 1]
        return struct.pack("<Ii8I", *fields)

    # -- GetCAProperty -----------------------------------------------------------------------------------------
    def property_info(self):
        """[(prop_id, prop_type, flags, display_name)] for GetCAPropertyInfo (CATRANSPROP entries); ``flags`` is
        the 16-bit CATRANSPROP.propFlags value (0x0001 = indexed)."""
        return [(prop_id, prop_type, CATRANSPROP_INDEXED if indexed else 0, display_name)
                for prop_id, (prop_type, indexed, display_name) in sorted(_PROPERTIES.items())]

    def get_property(self, prop_id, prop_index, prop_type):
        """ICertRequestD2::GetCAProperty -> (prop_type, value); value is int (LONG), str (STRING, the wire adds
        UTF-16LE + NUL) or bytes (BINARY, and LONG byte arrays such as CR_PROP_CACERTSTATE). Raises CAError."""
        prop_id = int(prop_id)
        if prop_id not in _PROPERTIES:
            raise CAError(errors.E_INVALIDARG, "Unknown CA property 0x%x." % prop_id)
        declared, _, _ = _PROPERTIES[prop_id]
        if int(prop_type) != declared:
            raise CAError(errors.E_INVALIDARG, "CA property 0x%x has type %d, not %d."
                          % (prop_id, declared, int(prop_type)))
        return declared, self._value(prop_id, int(prop_index))

    def _signing_cert(self, index, prop_id):
        """The signing certificate a PropIndex names (a CA certificate index; -1 = the current one)."""
        entry = self.store.by_index(index & 0xFFFFFFFF)
        if entry is None:
            raise CAError(errors.E_INVALIDARG, "Index %d out of range for CA property 0x%x." % (index, prop_id))
        return entry

    def _value(self, prop_id, index):
        if prop_id in _CERT_INDEXED:
            return self._cert_value(prop_id, self._signing_cert(index, prop_id))
        if prop_id in _CRL_INDEXED:
            return self._crl_value(prop_id, self._crl_index(index))
        indexed = _PROPERTIES[prop_id][1]
        if indexed and index not in (0, -1, 0xFFFFFFFF):
            raise CAError(errors.E_INVALIDARG, "Index %d out of range for CA property 0x%x." % (index, prop_id))
        return self._plain_value(prop_id)

    def _cert_value(self, prop_id, entry):
        """Properties indexed by CA certificate index (MS-WCCE 3.2.1.4.3.2.12, .13, .32, .34, .39, .41, .42)."""
        der = serialization.Encoding.DER
        if prop_id == CR_PROP_CASIGCERT:
            return entry.cert.public_bytes(der)
        if prop_id == CR_PROP_CASIGCERTCHAIN:
            return pkcs7.serialize_certificates([entry.cert, self.root_cert], der)
        if prop_id == CR_PROP_CASIGCERTCRLCHAIN:
            return _pkcs7_with_crls([entry.cert, self.root_cert],
                                    [self.base_crl(entry.key_index), self.delta_crl(entry.key_index)])
        if prop_id == CR_PROP_CACERTVERSION:
            return entry.version
        if prop_id == CR_PROP_CACERTSTATUSCODE:
            return 0
        if prop_id == CR_PROP_CERTCDPURLS:
            return "\n".join(self.cdp_urls(key_index=entry.key_index)) + "\n"
        if prop_id == CR_PROP_CERTAIAURLS:
            return "\n".join(self.aia_urls(entry.cert_index)) + "\n"
        raise CAError(errors.CERTSRV_E_PROPERTY_EMPTY)  # CR_PROP_CERTAIAOCSPURLS: no OCSP URL configured

    def _crl_value(self, prop_id, key_index):
        """Properties indexed by CRL name ID, i.e. key index (MS-WCCE 3.2.1.4.3.2.18, .19 partitioned, .31)."""
        if prop_id == CR_PROP_BASECRL:
            return self.base_crl(key_index)
        if prop_id == CR_PROP_DELTACRL:
            return self.delta_crl(key_index)
        if prop_id == CR_PROP_BASECRLPUBLISHSTATUS:
            return CPF_BASE | CPF_COMPLETE
        return CPF_DELTA | CPF_COMPLETE

    def _plain_value(self, prop_id):
        der = serialization.Encoding.DER
        if prop_id == CR_PROP_FILEVERSION:
            return FILE_VERSION
        if prop_id == CR_PROP_PRODUCTVERSION:
            return PRODUCT_VERSION
        if prop_id == CR_PROP_EXITCOUNT:
            return 1
        if prop_id == CR_PROP_EXITDESCRIPTION:
            return EXIT_DESCRIPTION
        if prop_id == CR_PROP_POLICYDESCRIPTION:
            return POLICY_DESCRIPTION
        if prop_id in (CR_PROP_CANAME, CR_PROP_SANITIZEDCANAME, CR_PROP_SANITIZEDCASHORTNAME):
            return self.name
        if prop_id in (CR_PROP_SHAREDFOLDER, CR_PROP_PARENTCA):
            raise CAError(errors.CERTSRV_E_PROPERTY_EMPTY)
        if prop_id == CR_PROP_CATYPE:
            return ENUM_ENTERPRISE_SUBCA
        if prop_id == CR_PROP_CASIGCERTCOUNT:
            return self.store.count
        if prop_id == CR_PROP_CAXCHGCERTCOUNT:
            return 1
        if prop_id == CR_PROP_CAXCHGCERT:
            return self.xchg_cert.public_bytes(der)
        if prop_id == CR_PROP_CAXCHGCERTCHAIN:
            return pkcs7.serialize_certificates([self.xchg_cert, self.ca_cert, self.root_cert], der)
        if prop_id == CR_PROP_CAXCHGCERTCRLCHAIN:
            return _pkcs7_with_crls([self.xchg_cert, self.ca_cert, self.root_cert], [self.base_crl(), self.delta_crl()])
        if prop_id == CR_PROP_CACERTSTATE:
            return self.store.cert_states(dbmod.utcnow())
        if prop_id == CR_PROP_CRLSTATE:
            return self.store.crl_states(dbmod.utcnow())
        if prop_id == CR_PROP_CAPROPIDMAX:
            return max(_PROPERTIES)
        if prop_id == CR_PROP_DNSNAME:
            return self.dns_name
        if prop_id in (CR_PROP_ROLESEPARATIONENABLED, CR_PROP_KRACERTUSEDCOUNT, CR_PROP_KRACERTCOUNT):
            return 0
        if prop_id in (CR_PROP_KRACERT, CR_PROP_KRACERTSTATE):
            raise CAError(errors.E_INVALIDARG, "No key recovery agent certificates are configured.")
        if prop_id == CR_PROP_ADVANCEDSERVER:
            return 1
        if prop_id == CR_PROP_TEMPLATES:
            try:
                return "".join("%s\n%s\n" % (t.name, t.oid) for t in self.enabled_templates())
            except DirectoryError as exc:
                raise CAError(errors.ERROR_DS_SERVER_DOWN, "The lab directory could not be read: %s" % exc)
        raise CAError(errors.E_INVALIDARG)


# prop_id -> (type, indexed, display name)
_PROPERTIES = {
    CR_PROP_FILEVERSION: (PROPTYPE_STRING, False, "File Version"),
    CR_PROP_PRODUCTVERSION: (PROPTYPE_STRING, False, "Product Version"),
    CR_PROP_EXITCOUNT: (PROPTYPE_LONG, False, "Exit Count"),
    CR_PROP_EXITDESCRIPTION: (PROPTYPE_STRING, True, "Exit Description"),
    CR_PROP_POLICYDESCRIPTION: (PROPTYPE_STRING, False, "Policy Description"),
    CR_PROP_CANAME: (PROPTYPE_STRING, False, "CA Name"),
    CR_PROP_SANITIZEDCANAME: (PROPTYPE_STRING, False, "Sanitized CA Name"),
    CR_PROP_SHAREDFOLDER: (PROPTYPE_STRING, False, "Shared Folder"),
    CR_PROP_PARENTCA: (PROPTYPE_STRING, False, "Parent CA"),
    CR_PROP_CATYPE: (PROPTYPE_LONG, False, "CA Type"),
    CR_PROP_CASIGCERTCOUNT: (PROPTYPE_LONG, False, "CA Signature Certificate Count"),
    CR_PROP_CASIGCERT: (PROPTYPE_BINARY, True, "CA Signature Certificate"),
    CR_PROP_CASIGCERTCHAIN: (PROPTYPE_BINARY, True, "CA Signature Certificate Chain"),
    CR_PROP_CAXCHGCERTCOUNT: (PROPTYPE_LONG, False, "CA Exchange Certificate Count"),
    CR_PROP_CAXCHGCERT: (PROPTYPE_BINARY, True, "CA Exchange Certificate"),
    CR_PROP_CAXCHGCERTCHAIN: (PROPTYPE_BINARY, True, "CA Exchange Certificate Chain"),
    CR_PROP_BASECRL: (PROPTYPE_BINARY, True, "Base CRL"),
    CR_PROP_DELTACRL: (PROPTYPE_BINARY, True, "Delta CRL"),
    CR_PROP_CACERTSTATE: (PROPTYPE_LONG, True, "CA Signature Certificate State"),
    CR_PROP_CRLSTATE: (PROPTYPE_LONG, True, "CA Base CRL State"),
    CR_PROP_CAPROPIDMAX: (PROPTYPE_LONG, False, "Maximum Property ID"),
    CR_PROP_DNSNAME: (PROPTYPE_STRING, False, "DNS Name"),
    CR_PROP_ROLESEPARATIONENABLED: (PROPTYPE_LONG, False, "Role Separation Enabled"),
    CR_PROP_KRACERTUSEDCOUNT: (PROPTYPE_LONG, False, "Key Recovery Agent Certificates Used Count"),
    CR_PROP_KRACERTCOUNT: (PROPTYPE_LONG, False, "Key Recovery Agent Certificate Count"),
    CR_PROP_KRACERT: (PROPTYPE_BINARY, True, "Key Recovery Agent Certificate"),
    CR_PROP_KRACERTSTATE: (PROPTYPE_LONG, True, "Key Recovery Agent Certificate State"),
    CR_PROP_ADVANCEDSERVER: (PROPTYPE_LONG, False, "Advanced Server"),
    CR_PROP_TEMPLATES: (PROPTYPE_STRING, False, "Templates"),
    CR_PROP_BASECRLPUBLISHSTATUS: (PROPTYPE_LONG, True, "Base CRL Publish Status"),
    CR_PROP_DELTACRLPUBLISHSTATUS: (PROPTYPE_LONG, True, "Delta CRL Publish Status"),
    CR_PROP_CASIGCERTCRLCHAIN: (PROPTYPE_BINARY, True, "CA Signature Certificate CRL Chain"),
    CR_PROP_CAXCHGCERTCRLCHAIN: (PROPTYPE_BINARY, True, "CA Exchange Certificate CRL Chain"),
    CR_PROP_CACERTSTATUSCODE: (PROPTYPE_LONG, True, "CA Signature Certificate Status Code"),
    CR_PROP_CACERTVERSION: (PROPTYPE_LONG, True, "CA Signature Certificate Version"),
    CR_PROP_SANITIZEDCASHORTNAME: (PROPTYPE_STRING, False, "Sanitized CA Short Name"),
    CR_PROP_CERTCDPURLS: (PROPTYPE_STRING, True, "Certificate CDP URLs"),
    CR_PROP_CERTAIAURLS: (PROPTYPE_STRING, True, "Certificate AIA URLs"),
    CR_PROP_CERTAIAOCSPURLS: (PROPTYPE_STRING, True, "Certificate AIA OCSP URLs"),
}


# properties whose PropIndex is a CA certificate index, and those whose PropIndex is a CRL name ID (key index)
_CERT_INDEXED = (CR_PROP_CASIGCERT, CR_PROP_CASIGCERTCHAIN, CR_PROP_CASIGCERTCRLCHAIN, CR_PROP_CACERTVERSION,
                 CR_PROP_CACERTSTATUSCODE, CR_PROP_CERTCDPURLS, CR_PROP_CERTAIAURLS, CR_PROP_CERTAIAOCSPURLS)
_CRL_INDEXED = (CR_PROP_BASECRL, CR_PROP_DELTACRL, CR_PROP_BASECRLPUBLISHSTATUS, CR_PROP_DELTACRLPUBLISHSTATUS)


class _PolicyError(CAError):
    """A policy-module denial: the disposition message reads 'Denied by Policy Module ...'."""

    def __init__(self, hresult, detail=None):
        super().__init__(hresult, detail or "")
        self.policy_message = _policy_message(hresult, detail)


def _denial(error):
    return getattr(error, "policy_message", None) or _policy_message(error.hresult)


def _template_from_extensions(csr):
    """Template named by the request's own extensions (szOID_ENROLL_CERTTYPE_EXTENSION / CERTIFICATE_TEMPLATE)."""
    for extension in csr.extensions if _has_extensions(csr) else []:
        oid = extension.oid.dotted_string
        if isinstance(extension.value, x509.MSCertificateTemplate):
            return extension.value.template_id.dotted_string
        raw = getattr(extension.value, "value", None)
        if raw is None:
            continue
        try:
            if oid == ext.OID_TEMPLATE_NAME and raw[:1] == b"\x1e":
                length = raw[1]
                offset = 2
                if length & 0x80:
                    count = length & 0x7F
                    length = int.from_bytes(raw[2:2 + count], "big")
                    offset = 2 + count
                return raw[offset:offset + length].decode("utf-16-be")
        except (ValueError, IndexError, UnicodeDecodeError):
            continue
    return None


def _template_from_certificate(cert):
    """Template named by an issued certificate's template extension (V2 OID first, else the V1 name)."""
    name = None
    for extension in cert.extensions:
        oid = extension.oid.dotted_string
        if isinstance(extension.value, x509.MSCertificateTemplate):
            return extension.value.template_id.dotted_string
        raw = getattr(extension.value, "value", None)
        if oid == ext.OID_TEMPLATE_NAME and raw and raw[:1] == b"\x1e":
            try:
                from pyasn1.codec.der import decoder as der_decoder
                from pyasn1.type import char
                name = str(der_decoder.decode(raw, asn1Spec=char.BMPString())[0])
            except Exception:  # noqa: BLE001 - a malformed extension names nothing
                name = None
    return name


def _directory_error(exc):
    log.warning("directory error: %s", exc)
    return _PolicyError(errors.ERROR_DS_SERVER_DOWN, "The lab directory could not be read: %s" % exc)


def _has_extensions(csr):
    try:
        csr.extensions
        return True
    except ValueError:
        return False


def _pkcs7_with_crls(certs, crls_der):
    """Degenerate SignedData with certificates and CRLs (cryptography has no API for CRLs in PKCS#7)."""
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1_modules import rfc5280, rfc5652

    signed = rfc5652.SignedData()
    signed["version"] = 1
    signed["digestAlgorithms"].clear()
    signed["encapContentInfo"]["eContentType"] = rfc5652.id_data
    for index, cert in enumerate(certs):
        choice = rfc5652.CertificateChoices()
        choice["certificate"], _ = der_decoder.decode(cert.public_bytes(serialization.Encoding.DER),
                                                      asn1Spec=rfc5280.Certificate())
        signed["certificates"].setComponentByPosition(index, choice)
    for index, crl_der in enumerate(crls_der):
        choice = rfc5652.RevocationInfoChoice()
        choice["crl"], _ = der_decoder.decode(crl_der, asn1Spec=rfc5280.CertificateList())
        signed["crls"].setComponentByPosition(index, choice)
    signed["signerInfos"].clear()
    info = rfc5652.ContentInfo()
    info["contentType"] = rfc5652.id_signedData
    info["content"] = der_encoder.encode(signed)
    return der_encoder.encode(info)
