"""The renewal policy of the lab CA: what a renewal request (MS-WCCE 3.2.1.4.2.1.4.2, a CMS signed by the key of a
certificate of this CA) changes in request processing, as the Windows policy module does.

- ``names_from_old_certificate``: only a template with CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME (0x00000008,
  msPKI-Certificate-Name-Flag, MS-CRTD 2.28, MS-WCCE 3.1.2.4.2.2.2.10) renews with the renewed certificate's
  subject and subject alternative names; without it the names come from the request (enrollee-supplies templates)
  or from the directory, as for a new request.
- ``check_same_key``: a template with CT_FLAG_REQUIRE_SAME_KEY_RENEWAL (0x00000080, msPKI-Private-Key-Flag,
  MS-CRTD 2.27) refuses a renewal whose request carries another key than the renewed certificate with
  CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY 0x80094816 (MS-WCCE 3.2.2.6.2.1.4.5.7). A new request on the same template is
  not a renewal and is not concerned.
"""

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import errors
from .errors import CAError

CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME = 0x00000008   # msPKI-Certificate-Name-Flag
CT_FLAG_REQUIRE_SAME_KEY_RENEWAL = 0x00000080                 # msPKI-Private-Key-Flag


def names_from_old_certificate(template, renewal):
    """(subject, sans) of the renewed certificate when the template says the old certificate supplies them, else
    None (the names are built as for a new request)."""
    if renewal is None or not template.name_flag & CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME:
        return None
    try:
        sans = list(renewal.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    return renewal.subject, sans


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_same_key(template, csr, renewal, error_class=CAError):
    """Raise ``error_class(CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY)`` when a same-key-renewal template gets a renewal
    with a new key."""
    if renewal is None or not template.private_key_flag & CT_FLAG_REQUIRE_SAME_KEY_RENEWAL:
        return
    if _spki(csr.public_key()) != _spki(renewal.public_key()):
        raise error_class(errors.CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY)
