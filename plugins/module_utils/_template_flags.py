# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MS-CRTD decoding tables (data only): flag names of the template flag attributes, key usage bits, key specs
and friendly names of OIDs found in templates. ``_templates`` decodes with them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# ---------------------------------------------------------------------------------------------------------
# Flag tables (MS-CRTD 2.4, 2.26, 2.27, 2.28). Ordered by bit value.
# ---------------------------------------------------------------------------------------------------------

# MS-CRTD 2.4 flags attribute (general enrollment flags)
GENERAL_FLAGS = (
    (0x00000002, 'CT_FLAG_ADD_EMAIL'),
    (0x00000008, 'CT_FLAG_PUBLISH_TO_DS'),
    (0x00000010, 'CT_FLAG_EXPORTABLE_KEY'),
    (0x00000020, 'CT_FLAG_AUTO_ENROLLMENT'),
    (0x00000040, 'CT_FLAG_MACHINE_TYPE'),
    (0x00000080, 'CT_FLAG_IS_CA'),
    (0x00000200, 'CT_FLAG_ADD_TEMPLATE_NAME'),
    (0x00000800, 'CT_FLAG_IS_CROSS_CA'),
    (0x00001000, 'CT_FLAG_DONOTPERSISTINDB'),
    (0x00010000, 'CT_FLAG_IS_DEFAULT'),
    (0x00020000, 'CT_FLAG_IS_MODIFIED'),
)

# MS-CRTD 2.26 msPKI-Enrollment-Flag
ENROLLMENT_FLAGS = (
    (0x00000001, 'CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS'),
    (0x00000002, 'CT_FLAG_PEND_ALL_REQUESTS'),
    (0x00000004, 'CT_FLAG_PUBLISH_TO_KRA_CONTAINER'),
    (0x00000008, 'CT_FLAG_PUBLISH_TO_DS'),
    (0x00000010, 'CT_FLAG_AUTO_ENROLLMENT_CHECK_USER_DS_CERTIFICATE'),
    (0x00000020, 'CT_FLAG_AUTO_ENROLLMENT'),
    (0x00000040, 'CT_FLAG_PREVIOUS_APPROVAL_VALIDATE_REENROLLMENT'),
    (0x00000100, 'CT_FLAG_USER_INTERACTION_REQUIRED'),
    (0x00000400, 'CT_FLAG_REMOVE_INVALID_CERTIFICATE_FROM_PERSONAL_STORE'),
    (0x00000800, 'CT_FLAG_ALLOW_ENROLL_ON_BEHALF_OF'),
    (0x00001000, 'CT_FLAG_ADD_OCSP_NOCHECK'),
    (0x00002000, 'CT_FLAG_ENABLE_KEY_REUSE_ON_NT_TOKEN_KEYSET_STORAGE_FULL'),
    (0x00004000, 'CT_FLAG_NOREVOCATIONINFOINISSUEDCERTS'),
    (0x00008000, 'CT_FLAG_INCLUDE_BASIC_CONSTRAINTS_FOR_EE_CERTS'),
    (0x00010000, 'CT_FLAG_ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT'),
    (0x00020000, 'CT_FLAG_ISSUANCE_POLICIES_FROM_REQUEST'),
    (0x00040000, 'CT_FLAG_SKIP_AUTO_RENEWAL'),
    (0x00080000, 'CT_FLAG_NO_SECURITY_EXTENSION'),
)

# MS-CRTD 2.27 msPKI-Private-Key-Flag. Bits 0x3000 are a two-bit attestation field, bits 16-19 and 24-27 carry
# the server and client versions; they are decoded separately (see decode_private_key_flag).
PRIVATE_KEY_FLAGS = (
    (0x00000001, 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL'),
    (0x00000010, 'CT_FLAG_EXPORTABLE_KEY'),
    (0x00000020, 'CT_FLAG_STRONG_KEY_PROTECTION_REQUIRED'),
    (0x00000040, 'CT_FLAG_REQUIRE_ALTERNATE_SIGNATURE_ALGORITHM'),
    (0x00000080, 'CT_FLAG_REQUIRE_SAME_KEY_RENEWAL'),
    (0x00000100, 'CT_FLAG_USE_LEGACY_PROVIDER'),
    (0x00000200, 'CT_FLAG_EK_TRUST_ON_USE'),
    (0x00000400, 'CT_FLAG_EK_VALIDATE_CERT'),
    (0x00000800, 'CT_FLAG_EK_VALIDATE_KEY'),
    (0x00001000, 'CT_FLAG_ATTEST_PREFERRED'),
    (0x00002000, 'CT_FLAG_ATTEST_REQUIRED'),
    (0x00004000, 'CT_FLAG_ATTESTATION_WITHOUT_POLICY'),
    (0x00100000, 'CT_FLAG_HELLO_KSP_KEY'),
    (0x00200000, 'CT_FLAG_HELLO_LOGON_KEY'),
)
PRIVATE_KEY_ATTEST_MASK = 0x00003000
PRIVATE_KEY_SERVER_VERSION_MASK = 0x000F0000
PRIVATE_KEY_SERVER_VERSION_SHIFT = 16
PRIVATE_KEY_CLIENT_VERSION_MASK = 0x0F000000
PRIVATE_KEY_CLIENT_VERSION_SHIFT = 24
PRIVATE_KEY_USE_LEGACY_PROVIDER = 0x00000100

# msPKI-RA-Application-Policies properties of CNG templates (MS-CRTD 2.23.2, MS-WCCE 3.1.2.4.2.2.2.5).
# msPKI-Asymmetric-Algorithm -> (key type, curve, words); DH and DS (DSA) name keys this collection cannot make.
ASYMMETRIC_ALGORITHMS = {
    'RSA': ('rsa', None, 'an RSA key'),
    'ECDSA_P256': ('ecdsa', 'secp256r1', 'an ECDSA P-256 key'),
    'ECDSA_P384': ('ecdsa', 'secp384r1', 'an ECDSA P-384 key'),
    'ECDSA_P521': ('ecdsa', 'secp521r1', 'an ECDSA P-521 key'),
    'ECDH_P256': ('ecdsa', 'secp256r1', 'an EC P-256 key (ECDH)'),
    'ECDH_P384': ('ecdsa', 'secp384r1', 'an EC P-384 key (ECDH)'),
    'ECDH_P521': ('ecdsa', 'secp521r1', 'an EC P-521 key (ECDH)'),
    'DH': (None, None, 'a Diffie-Hellman key'),
    'DS': (None, None, 'a DSA key'),
}
# msPKI-Key-Usage (NCRYPT_ALLOW_*_FLAG of the key property NCRYPT_KEY_USAGE_PROPERTY); 0x00FFFFFF = all usages.
NCRYPT_KEY_USAGES = (
    (0x1, 'decrypt'),
    (0x2, 'signing'),
    (0x4, 'key_agreement'),
)
NCRYPT_ALLOW_ALL_USAGES = 0x00FFFFFF

# MS-CRTD 2.28 msPKI-Certificate-Name-Flag
NAME_FLAGS = (
    (0x00000001, 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'),
    (0x00000008, 'CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME'),
    (0x00010000, 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME'),
    (0x00400000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS'),
    (0x00800000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_SPN'),
    (0x01000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID'),
    (0x02000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN'),
    (0x04000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL'),
    (0x08000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DNS'),
    (0x10000000, 'CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN'),
    (0x20000000, 'CT_FLAG_SUBJECT_REQUIRE_EMAIL'),
    (0x40000000, 'CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME'),
    (0x80000000, 'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH'),
)

# X.509 KeyUsage bits as Windows stores them in pKIKeyUsage (first byte, most significant bit first; decipherOnly
# is bit 7 of the second byte), RFC 5280 4.2.1.3.
KEY_USAGE_BITS = (
    (0, 0x80, 'digital_signature'),
    (0, 0x40, 'non_repudiation'),
    (0, 0x20, 'key_encipherment'),
    (0, 0x10, 'data_encipherment'),
    (0, 0x08, 'key_agreement'),
    (0, 0x04, 'key_cert_sign'),
    (0, 0x02, 'crl_sign'),
    (0, 0x01, 'encipher_only'),
    (1, 0x80, 'decipher_only'),
)

KEY_SPECS = {1: 'AT_KEYEXCHANGE', 2: 'AT_SIGNATURE'}

# Friendly names of EKU / application policy / certificate policy / extension OIDs commonly found in templates.
OID_NAMES = {
    '1.3.6.1.5.5.7.3.1': 'Server Authentication',
    '1.3.6.1.5.5.7.3.2': 'Client Authentication',
    '1.3.6.1.5.5.7.3.3': 'Code Signing',
    '1.3.6.1.5.5.7.3.4': 'Secure Email',
    '1.3.6.1.5.5.7.3.5': 'IP security end system',
    '1.3.6.1.5.5.7.3.6': 'IP security tunnel termination',
    '1.3.6.1.5.5.7.3.7': 'IP security user',
    '1.3.6.1.5.5.7.3.8': 'Time Stamping',
    '1.3.6.1.5.5.7.3.9': 'OCSP Signing',
    '1.3.6.1.5.5.7.3.17': 'IP security IKE intermediate',
    '1.3.6.1.5.5.8.2.2': 'IP security IKE intermediate',
    '1.3.6.1.5.2.3.4': 'PKINIT Client Authentication',
    '1.3.6.1.5.2.3.5': 'KDC Authentication',
    '2.5.29.37.0': 'Any Purpose',
    '1.3.6.1.4.1.311.2.6.1': 'SpcRelaxedPEMarkerCheck',
    '1.3.6.1.4.1.311.2.6.2': 'SpcEncryptedDigestRetryCount',
    '1.3.6.1.4.1.311.10.3.1': 'Microsoft Trust List Signing',
    '1.3.6.1.4.1.311.10.3.2': 'Microsoft Time Stamping',
    '1.3.6.1.4.1.311.10.3.4': 'Encrypting File System',
    '1.3.6.1.4.1.311.10.3.4.1': 'File Recovery',
    '1.3.6.1.4.1.311.10.3.5': 'Windows Hardware Driver Verification',
    '1.3.6.1.4.1.311.10.3.6': 'Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.7': 'OEM Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.8': 'Embedded Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.9': 'Root List Signer',
    '1.3.6.1.4.1.311.10.3.10': 'Qualified Subordination',
    '1.3.6.1.4.1.311.10.3.11': 'Key Recovery',
    '1.3.6.1.4.1.311.10.3.12': 'Document Signing',
    '1.3.6.1.4.1.311.10.3.13': 'Lifetime Signing',
    '1.3.6.1.4.1.311.10.5.1': 'Digital Rights',
    '1.3.6.1.4.1.311.10.6.1': 'Key Pack Licenses',
    '1.3.6.1.4.1.311.10.6.2': 'License Server Verification',
    '1.3.6.1.4.1.311.10.12.1': 'Any Application Policy',
    '1.3.6.1.4.1.311.20.1': 'CTL Usage',
    '1.3.6.1.4.1.311.20.2.1': 'Certificate Request Agent',
    '1.3.6.1.4.1.311.20.2.2': 'Smart Card Logon',
    '1.3.6.1.4.1.311.21.5': 'Private Key Archival',
    '1.3.6.1.4.1.311.21.6': 'Key Recovery Agent',
    '1.3.6.1.4.1.311.21.19': 'Directory Service Email Replication',
    '1.3.6.1.4.1.311.21.32': 'Attestation Identity Key Certificate',
    '1.3.6.1.4.1.311.21.36': 'Endorsement Key Certificate',
    '1.3.6.1.4.1.311.61.1.1': 'Kernel Mode Code Signing',
    '1.3.6.1.4.1.311.64.1.1': 'Domain Name System (DNS) Server Trust',
    '1.3.6.1.4.1.311.80.1': 'Document Encryption',
    '1.3.6.1.4.1.311.54.1.2': 'Remote Desktop Authentication',
    '1.3.6.1.4.1.311.21.8.1.1': 'Platform Certificate',
    '2.23.133.8.1': 'Endorsement Key Certificate',
    '2.23.133.8.2': 'Platform Certificate',
    '2.23.133.8.3': 'Attestation Identity Key Certificate',
    '1.3.6.1.4.1.311.25.2': 'NTDS CA Security',
    # certificate policies
    '2.5.29.32.0': 'All issuance policies',
    '1.3.6.1.4.1.311.21.8.7.2': 'Assurance: low (key attestation, EK trust on use)',
    # extensions (pKICriticalExtensions)
    '2.5.29.14': 'Subject Key Identifier',
    '2.5.29.15': 'Key Usage',
    '2.5.29.17': 'Subject Alternative Name',
    '2.5.29.19': 'Basic Constraints',
    '2.5.29.30': 'Name Constraints',
    '2.5.29.31': 'CRL Distribution Points',
    '2.5.29.32': 'Certificate Policies',
    '2.5.29.35': 'Authority Key Identifier',
    '2.5.29.36': 'Policy Constraints',
    '2.5.29.37': 'Extended Key Usage',
    '1.3.6.1.5.5.7.1.1': 'Authority Information Access',
    '1.3.6.1.4.1.311.20.2': 'Certificate Template Name',
    '1.3.6.1.4.1.311.21.7': 'Certificate Template Information',
    '1.3.6.1.4.1.311.21.10': 'Application Policies',
    '1.3.6.1.4.1.311.21.11': 'Application Policy Mappings',
    '1.3.6.1.4.1.311.21.12': 'Application Policy Constraints',
    '1.2.840.113549.1.9.15': 'S/MIME Capabilities',
}
