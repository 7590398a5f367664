"""What the lab Active Directory is seeded with: the objects an AD CS forest holds and Samba provisioning lacks.

Pure data plus small encoders, so the seeding code (``ad.py``), the tests and the docs read one source.
Attribute values follow what a Windows Server 2022 Enterprise CA writes for the built-in templates (MS-CRTD).
"""

import hashlib
import os
import re
import struct

REALM = "LAB.ADCS.TEST"
DNS_DOMAIN = "lab.adcs.test"
NETBIOS_DOMAIN = "LAB"
BASE_DN = "DC=lab,DC=adcs,DC=test"
CONFIG_DN = "CN=Configuration," + BASE_DN
PKS_DN = "CN=Public Key Services,CN=Services," + CONFIG_DN
TEMPLATES_DN = "CN=Certificate Templates," + PKS_DN
OID_DN = "CN=OID," + PKS_DN
ENROLLMENT_SERVICES_DN = "CN=Enrollment Services," + PKS_DN
CERTIFICATION_AUTHORITIES_DN = "CN=Certification Authorities," + PKS_DN
AIA_DN = "CN=AIA," + PKS_DN
CDP_DN = "CN=CDP," + PKS_DN
NTAUTH_DN = "CN=NTAuthCertificates," + PKS_DN

CA_NAME = "LAB-CA"
# The lab CA's host: every name below derives from this DNS label (ADCS_LAB_CA_HOST overrides it, for a test run of
# the whole lab under another name). Windows derives the NetBIOS computer name from the host label: upper case, the
# first 15 characters (MAX_COMPUTERNAME_LENGTH; GetComputerNameEx/DnsHostnameToComputerName truncate longer labels).
CA_HOST_SHORT = os.environ.get("ADCS_LAB_CA_HOST") or "pki-issuing-ca01"
if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", CA_HOST_SHORT):
    raise ValueError("the lab CA host name must be one DNS label (letters, digits, inner hyphens), not %r"
                     % CA_HOST_SHORT)


def netbios_name(host_label):
    """The NetBIOS computer name Windows derives from a DNS host label: upper case, at most 15 characters."""
    return host_label.split(".")[0].upper()[:15]


CA_NETBIOS = netbios_name(CA_HOST_SHORT)
CA_HOST = CA_HOST_SHORT + "." + DNS_DOMAIN
CA_ACCOUNT = CA_NETBIOS + "$"  # sAMAccountName of the CA's computer account (CN = the NetBIOS name)
CA_KEYTAB = CA_HOST_SHORT + ".keytab"  # in the state dir, as the seeder exports it
CA_CDP_CONTAINER = "CN=%s,%s" % (CA_NETBIOS, CDP_DN)  # AD CS's CN=%2 (ServerShortName: the NetBIOS name)
CA_AIA_FILE = "%s_%s.crt" % (CA_HOST, CA_NAME)  # AD CS's %1_%3%4.crt under CertEnroll/
CA_DNS_RECORD = "DC=%s" % CA_HOST_SHORT  # the CA host's dnsNode in the domain's DNS zone
CA_ADDRESS = "127.0.0.12"
DC_HOST = "dc1." + DNS_DOMAIN
DC_ADDRESS = "127.0.0.11"

# The forest's enterprise OID arc (msPKI-Cert-Template-OID of CN=OID); a Windows forest picks random numbers once.
FOREST_OID = "1.3.6.1.4.1.311.21.8.4387012.9204411.1839203.7710432.12283102.23"

ADMIN_PASSWORD = "Adm1n!Passw0rd"

# Extended rights (schema rightsGuid values).
ENROLL_GUID = "0e10c968-78fb-11d2-90d4-00c04f79dc55"
AUTOENROLL_GUID = "a05b8cc2-17bc-4802-a710-e7c15ab866a2"

# Well-known SIDs / RIDs.
AUTHENTICATED_USERS = "S-1-5-11"
RID_DOMAIN_ADMINS = 512
RID_DOMAIN_USERS = 513
RID_DOMAIN_COMPUTERS = 515
RID_ENTERPRISE_ADMINS = 519

ENROLLERS_GROUP = "ADCS-Enrollers"

# Test accounts: every password meets Samba's default complexity policy.
ACCOUNTS = [
    {"sam": "enroller", "password": "Enr0ller!Pass", "kind": "user", "mail": "enroller@lab.adcs.test",
     "given_name": "Erin", "surname": "Enroller", "groups": [],
     "description": "may enroll on WebServer, User, EFS and the WebServer variants"},
    {"sam": "denied", "password": "D3nied!Pass", "kind": "user", "mail": "denied@lab.adcs.test",
     "given_name": "Dee", "surname": "Denied", "groups": [],
     "description": "explicitly denied Enroll on every template"},
    {"sam": "groupmember", "password": "Gr0upM3mber!Pass", "kind": "user", "mail": "groupmember@lab.adcs.test",
     "given_name": "Grace", "surname": "Member", "groups": [ENROLLERS_GROUP],
     "description": "may enroll on WebServer through the ADCS-Enrollers group only"},
    {"sam": "LABHOST01$", "password": "H0st01!MachinePass", "kind": "computer", "host": "labhost01",
     "groups": [], "description": "computer account for Machine template and Kerberos tests"},
    # The lab CA's own machine account: its service principal names are what Kerberos clients ask tickets for,
    # and its keytab is what the lab CA accepts them with. AD CS machines are members of Cert Publishers.
    {"sam": CA_ACCOUNT, "password": "Ca1!MachineAccountPass", "kind": "computer", "host": CA_HOST_SHORT,
     "groups": ["Cert Publishers"], "spn_services": ["HOST", "RPCSS"],
     "description": "the lab CA's computer account"},
]

# Flag values (MS-CRTD 2.4, 2.26, 2.27, 2.28).
CT_FLAG_PEND_ALL_REQUESTS = 0x2
CT_FLAG_PUBLISH_TO_DS = 0x8
CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS = 0x1
CT_FLAG_AUTO_ENROLLMENT = 0x20
CT_FLAG_EXPORTABLE_KEY = 0x10
CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT = 0x1
CT_FLAG_SUBJECT_ALT_REQUIRE_DNS = 0x08000000
CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN = 0x10000000
CT_FLAG_SUBJECT_ALT_REQUIRE_UPN = 0x02000000
CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL = 0x04000000
CT_FLAG_SUBJECT_REQUIRE_EMAIL = 0x20000000
CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH = 0x80000000

EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
EKU_EMAIL = "1.3.6.1.5.5.7.3.4"
EKU_EFS = "1.3.6.1.4.1.311.10.3.4"

KU_DIGITAL_SIGNATURE = 0x80
KU_KEY_ENCIPHERMENT = 0x20

RSA_SCHANNEL_CSPS = ["1,Microsoft RSA SChannel Cryptographic Provider",
                     "2,Microsoft DH SChannel Cryptographic Provider"]
BASE_CSPS = ["1,Microsoft Enhanced Cryptographic Provider v1.0",
             "2,Microsoft Base Cryptographic Provider v1.0"]
# Schema v3/v4 (CNG) templates name a key storage provider; the algorithm is in msPKI-RA-Application-Policies.
KSP_CSPS = ["1,Microsoft Software Key Storage Provider"]

# msPKI-Private-Key-Flag version fields (MS-CRTD 2.27): server version in bits 16-19, client version in 24-27.
# v3 templates: Windows Server 2008 CA / Vista clients (2, 2); v4: Server 2012 / Windows 8 (4, 4).
PRIVATE_KEY_VERSIONS_V3 = 0x02020000
PRIVATE_KEY_VERSIONS_V4 = 0x04040000

# msPKI-Key-Usage property of a CNG template (NCRYPT_ALLOW_*_FLAG): signing only, or every usage.
NCRYPT_ALLOW_SIGNING = 0x2
NCRYPT_ALLOW_ALL_USAGES = 0x00FFFFFF


def cng_properties(algorithm, hash_name, key_usage):
    """msPKI-RA-Application-Policies of a schema v3 (or v4 non-legacy) template: Name`Type`Value` triplets
    (MS-CRTD 2.23.2), in the order Windows writes them (sorted by name)."""
    triplets = [("msPKI-Asymmetric-Algorithm", "PZPWSTR", algorithm), ("msPKI-Hash-Algorithm", "PZPWSTR", hash_name),
                ("msPKI-Key-Usage", "DWORD", str(key_usage)), ("msPKI-Symmetric-Algorithm", "PZPWSTR", "3DES"),
                ("msPKI-Symmetric-Key-Length", "DWORD", "168")]
    return "".join("%s`%s`%s`" % triplet for triplet in triplets)


def period(days=0, hours=0):
    """pKIExpirationPeriod / pKIOverlapPeriod encoding: a negative FILETIME interval (100 ns units), 8 bytes LE."""
    ticks = (days * 86400 + hours * 3600) * 10_000_000
    return struct.pack("<q", -ticks)


def int32(value):
    """AD stores these flags as signed 32-bit INTEGER syntax."""
    return value - (1 << 32) if value & 0x80000000 else value


def key_usage(bits):
    """pKIKeyUsage: the KeyUsage bit string's bytes (first byte = bits 0-7), two bytes as Windows writes."""
    return bytes([bits & 0xFF, (bits >> 8) & 0xFF])


# Who may do what on a template. Principals: a RID of the domain ("rid:513"), a well-known SID ("sid:S-1-5-11"),
# or a lab account/group name ("name:enroller").
_ADMINS_FULL = [("allow", "full", "rid:%d" % RID_DOMAIN_ADMINS), ("allow", "full", "rid:%d" % RID_ENTERPRISE_ADMINS),
                ("allow", "enroll", "rid:%d" % RID_DOMAIN_ADMINS), ("allow", "enroll", "rid:%d" % RID_ENTERPRISE_ADMINS),
                ("allow", "read", "sid:" + AUTHENTICATED_USERS)]
_DENIED = [("deny", "enroll", "name:denied")]



def _cng_web_server(cn, display_name, schema, oid_suffix, algorithm, hash_name, min_key):
    """A Web Server template on a key storage provider (schema v3/v4, CNG): the key algorithm and the hash are the
    msPKI-RA-Application-Policies properties. ECDSA keys only sign: key usage digitalSignature (no
    keyEncipherment), key spec AT_SIGNATURE, msPKI-Key-Usage signing, as the Certificate Templates console writes
    for an ECDSA template; RSA keeps digitalSignature + keyEncipherment and every usage."""
    ecdsa = algorithm.startswith("ECDSA")
    return {
        "cn": cn, "displayName": display_name, "schema": schema, "oid_suffix": oid_suffix, "revision": 100,
        "minor": 2, "flags": 0x20241, "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, "enrollment_flag": 0,
        "private_key_flag": PRIVATE_KEY_VERSIONS_V4 if schema == 4 else PRIVATE_KEY_VERSIONS_V3,
        "ekus": [EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | (0 if ecdsa else KU_KEY_ENCIPHERMENT),
        "validity_days": 730, "overlap_days": 42, "min_key": min_key, "key_spec": 2 if ecdsa else 1,
        "csps": KSP_CSPS,
        "cng": cng_properties(algorithm, hash_name, NCRYPT_ALLOW_SIGNING if ecdsa else NCRYPT_ALLOW_ALL_USAGES),
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP)],
    }


TEMPLATES = [
    {
        "cn": "WebServer", "displayName": "Web Server", "schema": 1, "oid_suffix": "1.16", "revision": 4,
        "minor": 1, "flags": 0x10241, "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, "enrollment_flag": 0,
        "private_key_flag": 0, "ekus": [EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 730, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP)],
    },
    {
        "cn": "Machine", "displayName": "Computer", "schema": 1, "oid_suffix": "1.14", "revision": 5,
        "minor": 1, "flags": 0x20261,
        "name_flag": CT_FLAG_SUBJECT_ALT_REQUIRE_DNS | CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN,
        "enrollment_flag": CT_FLAG_AUTO_ENROLLMENT, "private_key_flag": 0,
        "ekus": [EKU_CLIENT_AUTH, EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 365, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _ADMINS_FULL + [("allow", "enroll", "rid:%d" % RID_DOMAIN_COMPUTERS),
                               ("allow", "autoenroll", "rid:%d" % RID_DOMAIN_COMPUTERS)],
    },
    {
        "cn": "User", "displayName": "User", "schema": 1, "oid_suffix": "1.1", "revision": 3, "minor": 1,
        "flags": 0x1023A,
        "name_flag": (CT_FLAG_SUBJECT_ALT_REQUIRE_UPN | CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL
                      | CT_FLAG_SUBJECT_REQUIRE_EMAIL | CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH),
        "enrollment_flag": CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS | CT_FLAG_PUBLISH_TO_DS | CT_FLAG_AUTO_ENROLLMENT,
        "private_key_flag": CT_FLAG_EXPORTABLE_KEY, "ekus": [EKU_EFS, EKU_EMAIL, EKU_CLIENT_AUTH],
        "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, "validity_days": 365, "overlap_days": 42,
        "min_key": 2048, "key_spec": 1, "csps": BASE_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "rid:%d" % RID_DOMAIN_USERS),
                                         ("allow", "autoenroll", "rid:%d" % RID_DOMAIN_USERS)],
    },
    {
        "cn": "EFS", "displayName": "Basic EFS", "schema": 1, "oid_suffix": "1.6", "revision": 3, "minor": 1,
        "flags": 0x1023A,
        "name_flag": CT_FLAG_SUBJECT_ALT_REQUIRE_UPN | CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH,
        "enrollment_flag": CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS | CT_FLAG_PUBLISH_TO_DS | CT_FLAG_AUTO_ENROLLMENT,
        "private_key_flag": CT_FLAG_EXPORTABLE_KEY, "ekus": [EKU_EFS], "key_usage": KU_KEY_ENCIPHERMENT,
        "validity_days": 365, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": BASE_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "rid:%d" % RID_DOMAIN_USERS)],
    },
    {
        "cn": "WebServerApproval", "displayName": "Web Server (CA manager approval)", "schema": 2,
        "oid_suffix": "5283517.8329421", "revision": 100, "minor": 2, "flags": 0x20241,
        "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, "enrollment_flag": CT_FLAG_PEND_ALL_REQUESTS,
        "private_key_flag": 0, "ekus": [EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 730, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP)],
    },
    {
        "cn": "WebServer4096", "displayName": "Web Server (4096-bit keys)", "schema": 2,
        "oid_suffix": "9170223.4412876", "revision": 100, "minor": 2, "flags": 0x20241,
        "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, "enrollment_flag": 0, "private_key_flag": 0,
        "ekus": [EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 730, "overlap_days": 42, "min_key": 4096, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP)],
    },
    {
        "cn": "ShortLived", "displayName": "Short-lived Web Server (2 days, renew within 1 day)", "schema": 2,
        "oid_suffix": "7719301.2284467", "revision": 100, "minor": 2, "flags": 0x20241,
        "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT, "enrollment_flag": 0, "private_key_flag": 0,
        "ekus": [EKU_SERVER_AUTH, EKU_CLIENT_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 2, "overlap_days": 1, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP),
                                         ("allow", "enroll", "rid:%d" % RID_DOMAIN_COMPUTERS)],
    },
    {
        # Renewals keep the old certificate's names (CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME 0x8) and must
        # keep its key (msPKI-Private-Key-Flag CT_FLAG_REQUIRE_SAME_KEY_RENEWAL 0x80): a new key gets 0x80094816.
        "cn": "WebServerSameKey", "displayName": "Web Server (renewal with the same key and the old names)",
        "schema": 2, "oid_suffix": "6630817.3307719", "revision": 100, "minor": 2, "flags": 0x20241,
        "name_flag": CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT | 0x8, "enrollment_flag": 0, "private_key_flag": 0x80,
        "ekus": [EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
        "validity_days": 730, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
        "acl": _DENIED + _ADMINS_FULL + [("allow", "enroll", "name:enroller"),
                                         ("allow", "enroll", "name:" + ENROLLERS_GROUP)],
    },
    # CNG templates: a Windows template names one asymmetric algorithm, so P-256 and P-384 are two templates.
    _cng_web_server("WebServerECC", "Web Server (ECDSA P-256)", 3, "6120447.3318209", "ECDSA_P256", "SHA256", 256),
    _cng_web_server("WebServerECC384", "Web Server (ECDSA P-384)", 4, "4471930.8802113", "ECDSA_P384", "SHA384", 384),
    _cng_web_server("WebServerKSP", "Web Server (RSA, key storage provider)", 3, "2290716.5530871", "RSA", "SHA256",
                    3072),
]

# Autoenrollment (roles/autoenroll, tests/integration/test_autoenroll.py): schema 2 machine templates, names built
# by the CA from the computer object (CN = dNSHostName, SAN dNSName) as the Machine template does.
def _auto_machine(cn, display, suffix, acl, enrollment_flag=CT_FLAG_AUTO_ENROLLMENT, **extra):
    return dict({"cn": cn, "displayName": display, "schema": 2, "oid_suffix": suffix, "revision": 100, "minor": 2,
                 "flags": 0x20261, "name_flag": CT_FLAG_SUBJECT_ALT_REQUIRE_DNS | CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN,
                 "enrollment_flag": enrollment_flag, "private_key_flag": 0,
                 "ekus": [EKU_CLIENT_AUTH, EKU_SERVER_AUTH], "key_usage": KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
                 "validity_days": 365, "overlap_days": 42, "min_key": 2048, "key_spec": 1, "csps": RSA_SCHANNEL_CSPS,
                 "acl": _ADMINS_FULL + acl}, **extra)


_COMPUTERS_AUTO = [("allow", "enroll", "rid:%d" % RID_DOMAIN_COMPUTERS),
                   ("allow", "autoenroll", "rid:%d" % RID_DOMAIN_COMPUTERS)]
TEMPLATES += [
    _auto_machine("AutoLinuxServer", "Linux Server (autoenrollment)", "6602113.1", _COMPUTERS_AUTO),
    _auto_machine("AutoLinuxServerV2", "Linux Server v2 (supersedes Linux Server)", "6602113.2", _COMPUTERS_AUTO,
                  extra_attrs={"msPKI-Supersede-Templates": ["AutoLinuxServer"]}),
    _auto_machine("AutoApproval", "Linux Server (CA manager approval)", "6602113.3", _COMPUTERS_AUTO,
                  enrollment_flag=CT_FLAG_AUTO_ENROLLMENT | CT_FLAG_PEND_ALL_REQUESTS),
    _auto_machine("AutoRASigned", "Linux Server (one enrollment agent signature)", "6602113.4", _COMPUTERS_AUTO,
                  extra_attrs={"msPKI-RA-Signature": "1"}),
    _auto_machine("AutoDenied", "Linux Server (AutoEnroll denied to LABHOST01)", "6602113.5",
                  [("deny", "autoenroll", "name:LABHOST01$")] + _COMPUTERS_AUTO),
    # Enroll only: the autoenrollment tests grant AutoEnroll on it (and take it back) themselves.
    _auto_machine("AutoGrant", "Linux Server (AutoEnroll granted by the tests)", "6602113.6",
                  [("allow", "enroll", "rid:%d" % RID_DOMAIN_COMPUTERS)]),
]
AUTOENROLL_TEMPLATES = ["AutoLinuxServer", "AutoLinuxServerV2", "AutoApproval", "AutoRASigned", "AutoDenied",
                        "AutoGrant"]

# The CA's own security (Request Certificates = Enroll): Windows' default after CA setup. The lab CA reads it from
# its config.json "ca_security" (the registry on Windows; default this list); the seeder writes the same list into
# the enrollment service object's nTSecurityDescriptor (Enroll extended right), as a Windows CA keeps it in sync.
CA_SECURITY = _ADMINS_FULL + [("allow", "enroll", "sid:" + AUTHENTICATED_USERS)]

# Templates the lab CA publishes (its enrollment service's certificateTemplates).
PUBLISHED_TEMPLATES = ["WebServer", "Machine", "User", "EFS", "WebServerApproval", "WebServer4096", "ShortLived",
                       "WebServerSameKey", "WebServerECC", "WebServerECC384", "WebServerKSP"]
PUBLISHED_TEMPLATES += AUTOENROLL_TEMPLATES


def template_oid(template):
    return FOREST_OID + "." + template["oid_suffix"]


def template_attributes(template):
    """The LDAP attributes of a pKICertificateTemplate object (without nTSecurityDescriptor)."""
    attrs = {
        "objectClass": ["top", "pKICertificateTemplate"],
        "cn": template["cn"],
        "displayName": template["displayName"],
        "flags": str(int32(template["flags"])),
        "revision": str(template["revision"]),
        "pKIDefaultKeySpec": str(template["key_spec"]),
        "pKIKeyUsage": key_usage(template["key_usage"]),
        "pKIMaxIssuingDepth": "0",
        "pKICriticalExtensions": ["2.5.29.15"],
        "pKIExpirationPeriod": period(days=template["validity_days"]),
        "pKIOverlapPeriod": period(days=template["overlap_days"]),
        "pKIExtendedKeyUsage": list(template["ekus"]),
        "pKIDefaultCSPs": list(template["csps"]),
        "msPKI-RA-Signature": "0",
        "msPKI-Enrollment-Flag": str(int32(template["enrollment_flag"])),
        "msPKI-Private-Key-Flag": str(int32(template["private_key_flag"])),
        "msPKI-Certificate-Name-Flag": str(int32(template["name_flag"])),
        "msPKI-Minimal-Key-Size": str(template["min_key"]),
        "msPKI-Template-Schema-Version": str(template["schema"]),
        "msPKI-Template-Minor-Revision": str(template["minor"]),
        "msPKI-Cert-Template-OID": template_oid(template),
    }
    if template["schema"] >= 2:
        # Version 2 templates carry application policies and the RA application policy fields; version 3/4 (CNG)
        # ones the key algorithm properties in msPKI-RA-Application-Policies (MS-CRTD 2.23.2).
        attrs["msPKI-Certificate-Application-Policy"] = list(template["ekus"])
        attrs["msPKI-RA-Application-Policies"] = [template["cng"]] if template.get("cng") else []
    attrs.update(template.get("extra_attrs", {}))  # attributes only some templates set (msPKI-Supersede-Templates, RA)
    return attrs


def oid_object(template):
    """The msPKI-Enterprise-Oid object under CN=OID that registers a template's OID."""
    oid = template_oid(template)
    last = oid.split(".")[-1]
    return {
        "cn": "%s.%s" % (last, hashlib.sha1(oid.encode()).hexdigest()[:32].upper()),
        "attrs": {"objectClass": ["top", "msPKI-Enterprise-Oid"], "displayName": template["displayName"],
                  "flags": "1", "msPKI-Cert-Template-OID": oid},
    }
