"""Key archival (MS-WCCE 3.2.1.4.2.1.4.1.2 / 2.2.2.8.x): decrypt the EnvelopedData a CMC request carries in
the szOID_ARCHIVED_KEY_ATTR unsigned attribute with the CA exchange key, and check the archived private key
belongs to the request's public key."""

import struct

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography < 43
    TripleDES = algorithms.TripleDES
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc5652

from .errors import CAError

from .errors import CERTSRV_E_ARCHIVED_KEY_REQUIRED, CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL  # noqa: F401

_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": (algorithms.AES, 16),
    "2.16.840.1.101.3.4.1.22": (algorithms.AES, 24),
    "2.16.840.1.101.3.4.1.42": (algorithms.AES, 32),
    "1.2.840.113549.3.7": (TripleDES, 24),
}
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
PRIVATEKEYBLOB = 0x07
RSA2_MAGIC = b"RSA2"


def _bad(message):
    return CAError(CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL, message)


def decrypt_archived_key(enveloped_der, xchg_key):
    """Return the decrypted key blob (a CryptoAPI PRIVATEKEYBLOB) or raise CAError."""
    try:
        info, _ = der_decoder.decode(enveloped_der, asn1Spec=rfc5652.ContentInfo())
        if info["contentType"] != rfc5652.id_envelopedData:
            raise _bad("The archived key is not an EnvelopedData.")
        enveloped, _ = der_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.EnvelopedData())
        recipient = enveloped["recipientInfos"][0]
        if recipient.getName() != "ktri":
            raise _bad("Unsupported recipient info in the archived key.")
        ktri = recipient["ktri"]
        key_alg = str(ktri["keyEncryptionAlgorithm"]["algorithm"])
        encrypted_key = bytes(ktri["encryptedKey"])
        content = enveloped["encryptedContentInfo"]
        cipher_oid = str(content["contentEncryptionAlgorithm"]["algorithm"])
        iv = bytes(der_decoder.decode(bytes(content["contentEncryptionAlgorithm"]["parameters"]),
                                      asn1Spec=univ.OctetString())[0])
        ciphertext = bytes(content["encryptedContent"])
    except PyAsn1Error:
        raise _bad("The archived key could not be parsed.")
    if key_alg == OID_RSA_ENCRYPTION:
        key_padding = padding.PKCS1v15()
    elif key_alg == OID_RSAES_OAEP:
        key_padding = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    else:
        raise _bad("Unsupported key encryption algorithm %s." % key_alg)
    if cipher_oid not in _CIPHERS:
        raise _bad("Unsupported content encryption algorithm %s." % cipher_oid)
    try:
        symmetric_key = xchg_key.decrypt(encrypted_key, key_padding)
    except ValueError:
        raise _bad("The archived key was not encrypted to this CA's exchange certificate.")
    algorithm, key_len = _CIPHERS[cipher_oid]
    if len(symmetric_key) != key_len:
        raise _bad("Wrong symmetric key length in the archived key.")
    try:
        decryptor = Cipher(algorithm(symmetric_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(algorithm.block_size).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise _bad("The archived key could not be decrypted.")


def check_archived_key(blob, public_key):
    """Check a PRIVATEKEYBLOB (BLOBHEADER + RSAPUBKEY + modulus ...) matches ``public_key``."""
    if len(blob) < 20 or blob[0] != PRIVATEKEYBLOB or blob[8:12] != RSA2_MAGIC:
        raise _bad("The archived key is not an RSA PRIVATEKEYBLOB.")
    bitlen, pubexp = struct.unpack("<II", blob[12:20])
    modulus = int.from_bytes(blob[20:20 + bitlen // 8], "little")
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise _bad("The archived key does not match the request's public key.")
    numbers = public_key.public_numbers()
    if numbers.n != modulus or numbers.e != pubexp:
        raise _bad("The archived key does not match the request's public key.")
    return True
