"""Applies the fault knobs of ``adcslab.faults`` (``<state_dir>/faults.json``) to the lab CA's wire.

Where each knob acts:

- ``refuse_connections``: the RPC engine's ``ServerHooks.on_accept`` (new TCP connections are reset).
- ``slow_activation_seconds``, ``delay_seconds``, ``drop_connection`` (``before``): the engine's
  ``ServerHooks.before_call`` (after the request PDU(s) arrived, before the handler runs).
- ``hresult``, ``drop_connection`` (``after``): around the handler (:meth:`FaultInjector.wrap`).
- ``disposition``, ``wrong_key``: in the Request/Request2/CertServerRequest logic (``CertService.do_request``).
- ``rogue_ca``: on the issued outcome of ``CertService.do_request`` (:meth:`FaultInjector.rogue_outcome`).
- ``alter_subject``, ``alter_san``: inside the CA when it builds a certificate (``CertificationAuthority.alter_names``
  is :meth:`FaultInjector.alter_names`, set by ``LabCaService``).

Every fault applied is logged (logger ``adcslab.wcce.faults``, WARNING) to labca.log.
"""

import logging
import socket
import struct
import time

from adcslab.faults import FaultState, method_name, parse_san_list

from .ndr import NdrWriter

LOG = logging.getLogger("adcslab.wcce.faults")

# Dispositions that are not HRESULTs (MS-WCCE 3.2.1.4.2.1) and the texts AD CS shows for them.
DISPOSITION_TEXT = {
    0: "Incomplete",
    1: "Error",
    2: "Denied",
    3: "Issued",
    4: "Issued out of band",
    5: "Taken Under Submission",
    6: "Revoked",
}

_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_SHA256_ECDSA = bytes.fromhex("300a06082a8648ce3d040302")


def _who(ctx):
    auth = getattr(ctx, "auth", None)
    if auth is None:
        return "(anonymous)"
    return "%s\\%s" % (getattr(auth, "domain", ""), getattr(auth, "user", ""))


def _iface_name(ctx):
    iface = getattr(ctx, "interface", None)
    return getattr(iface, "name", None) or getattr(ctx, "interface_name", None) or ""


def _port(ctx):
    return getattr(getattr(ctx, "connection", None), "local_port", None)


def _uses(entry):
    times = entry.get("times")
    return "%d/%s" % (entry.get("applied", 0), times if times is not None else "unlimited")


def hresult_text(hresult):
    try:
        from adcslab.ca import errors
    except Exception:  # pragma: no cover - the backend is part of the lab
        return "Error 0x%08x." % hresult
    return errors.hresult_text(hresult)


def disposition_message(disposition):
    """The message AD CS would send with this disposition."""
    disposition &= 0xFFFFFFFF
    if disposition in DISPOSITION_TEXT:
        return DISPOSITION_TEXT[disposition]
    return "Denied by Policy Module  0x%08x, %s" % (disposition, hresult_text(disposition))


# --------------------------------------------------------------------------------------------------
# replies carrying only an HRESULT (out parameters empty / NULL)
# --------------------------------------------------------------------------------------------------
def error_reply(method, hresult, request_id=0, message=None):
    """The reply stub of ``method`` with every out parameter empty and ``hresult`` as the return value. For the
    Request family, the disposition repeats the HRESULT and the message says it (clients that only read those
    still see the failure). None when the method has no such reply here."""
    w = NdrWriter()
    if method in ("Request", "Request2", "CertServerRequest"):
        if method != "CertServerRequest":
            w.orpcthat()
        text = message or "%s 0x%08x" % (hresult_text(hresult), hresult)
        w.u32(request_id)
        w.u32(hresult)
        w.certtransblob(b"")
        w.certtransblob(b"")
        w.certtransblob((text + "\x00").encode("utf-16-le"))
        w.u32(hresult)
        return w.bytes()
    if method in ("GetCACert", "GetCAProperty"):
        w.orpcthat()
        w.certtransblob(b"")
        w.u32(hresult)
        return w.bytes()
    if method == "GetCAPropertyInfo":
        w.orpcthat()
        w.i32(0)
        w.certtransblob(b"")
        w.u32(hresult)
        return w.bytes()
    if method in ("Ping", "Ping2", "RemRelease"):
        w.orpcthat()
        w.u32(hresult)
        return w.bytes()
    if method in ("RemoteCreateInstance", "RemQueryInterface"):
        w.orpcthat()
        w.pointer(False)
        w.u32(hresult)
        return w.bytes()
    return None


# --------------------------------------------------------------------------------------------------
# wrong_key: the same PKCS #10 request for a fresh key
# --------------------------------------------------------------------------------------------------
def _der_tlv(data, pos):
    """(tag, content_start, end) of the DER element at pos."""
    if pos + 2 > len(data):
        raise ValueError("DER truncated")
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("DER element overruns the data")
    return tag, pos, pos + length


def _der(tag, content):
    n = len(content)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(raw)]) + raw
    return head + content


def _csr_der(blob):
    """The DER of a PKCS #10 request given as DER, PEM or bare base64; ValueError if it is not one."""
    import base64
    import binascii

    from cryptography import x509

    data = bytes(blob)
    try:
        x509.load_der_x509_csr(data)
        return data
    except ValueError:
        pass
    text = data.decode("ascii", "strict") if all(b < 0x80 for b in data) else ""
    if not text:
        raise ValueError("not a PKCS #10 request")
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")
             if ln.strip() and not ln.strip().startswith("-----")]
    try:
        der = base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a PKCS #10 request")
    x509.load_der_x509_csr(der)
    return der


def rekey_csr(blob):
    """Re-sign the PKCS #10 request ``blob`` for a freshly generated key of the same kind and size (subject,
    extensions and attributes unchanged). Returns (new_der, new_private_key). ValueError when ``blob`` is not a
    PKCS #10 request (CMS/CMC wrapped requests carry a signature over the inner request: not rewritten)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    der = _csr_der(blob)
    old_key = x509.load_der_x509_csr(der).public_key()
    if isinstance(old_key, ec.EllipticCurvePublicKey):
        key = ec.generate_private_key(old_key.curve)
        alg = _SHA256_ECDSA
    else:
        size = old_key.key_size if isinstance(old_key, rsa.RSAPublicKey) else 2048
        key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        alg = _SHA256_RSA
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    tag, start, end = _der_tlv(der, 0)                 # CertificationRequest
    tag_cri, cri_start, cri_end = _der_tlv(der, start)  # CertificationRequestInfo
    if tag != 0x30 or tag_cri != 0x30:
        raise ValueError("not a PKCS #10 request")
    _, _, version_end = _der_tlv(der, cri_start)
    _, _, subject_end = _der_tlv(der, version_end)
    tag_spki, _, spki_end = _der_tlv(der, subject_end)
    if tag_spki != 0x30:
        raise ValueError("PKCS #10 request without a SubjectPublicKeyInfo")
    cri = _der(0x30, der[cri_start:subject_end] + spki + der[spki_end:cri_end])
    if alg is _SHA256_RSA:
        signature = key.sign(cri, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(cri, ec.ECDSA(hashes.SHA256()))
    new = _der(0x30, cri + alg + _der(0x03, b"\x00" + signature))
    csr = x509.load_der_x509_csr(new)
    if not csr.is_signature_valid:
        raise ValueError("re-signed request does not verify")
    return new, key


# --------------------------------------------------------------------------------------------------
# rogue_ca: the issued certificate re-issued by a throwaway CA pair that copies the real CAs' names
# --------------------------------------------------------------------------------------------------
def rogue_reissue(cert_der, chain_der_list):
    """(certificate DER, [rogue issuing CA, rogue root] as DER): ``cert_der`` re-signed by a fresh issuing CA under
    a fresh self-signed root; the two take the names of the real issuing CA and root (``chain_der_list``) when
    known, so only their keys and fingerprints differ."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    leaf = x509.load_der_x509_certificate(cert_der)
    real = [x509.load_der_x509_certificate(d) for d in chain_der_list or []]
    issuing_name = leaf.issuer
    root_names = [c.subject for c in real if c.subject == c.issuer]
    root_name = root_names[0] if root_names else x509.Name.from_rfc4514_string("CN=Rogue Root CA")
    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def ca_cert(subject, key, issuer, signer, signer_pub):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False)
                .sign(signer, hashes.SHA256()))

    root = ca_cert(root_name, root_key, root_name, root_key, root_key.public_key())
    issuing = ca_cert(issuing_name, ca_key, root_name, root_key, root_key.public_key())
    builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(issuing_name)
               .public_key(leaf.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(leaf.not_valid_before_utc).not_valid_after(leaf.not_valid_after_utc))
    for ext in leaf.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(ext.value, critical=ext.critical)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                    critical=False)
    new = builder.sign(ca_key, hashes.SHA256())
    der = serialization.Encoding.DER
    return new.public_bytes(der), [issuing.public_bytes(der), root.public_bytes(der)]


# --------------------------------------------------------------------------------------------------
class FaultInjector:
    def __init__(self, state_dir, sleep=time.sleep):
        self.state = FaultState(state_dir, logger=LOG)
        self.sleep = sleep

    # ---- connection acceptance (ServerHooks.on_accept) ------------------------------------------
    def on_accept(self, server, sock, peer):
        """False: the connection is refused (reset)."""
        port = getattr(server, "port", None)
        entry = self.state.take("refuse_connections", port=port)
        if entry is None:
            return True
        LOG.warning("fault refuse_connections: reset connection from %s:%s to port %s (%s)", peer[0], peer[1], port,
                    _uses(entry))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        return False

    # ---- before each call (ServerHooks.before_call) ---------------------------------------------
    def before_call(self, ctx):
        iface, opnum, port = _iface_name(ctx), ctx.opnum, _port(ctx)
        method = method_name(iface, opnum)
        entry = self.state.take("slow_activation_seconds", iface, opnum, port)
        if entry is not None:
            LOG.warning("fault slow_activation_seconds: %s by %s waits %.3gs (%s)", method, _who(ctx),
                        entry["value"], _uses(entry))
            self.sleep(float(entry["value"]))
        entry = self.state.take("delay_seconds", iface, opnum, port)
        if entry is not None:
            LOG.warning("fault delay_seconds: %s %s by %s waits %.3gs (%s)", iface, method, _who(ctx),
                        entry["value"], _uses(entry))
            self.sleep(float(entry["value"]))
        entry = self.state.take("drop_connection", iface, opnum, port, when=lambda e: e.get("value") != "after")
        if entry is not None:
            LOG.warning("fault drop_connection: closing %s during %s %s by %s before processing it (%s)",
                        getattr(ctx, "connection", "?"), iface, method, _who(ctx), _uses(entry))
            return "drop"
        return None

    # ---- around each handler ----------------------------------------------------------------------
    def wrap(self, fn, iface):
        def handler(ctx, stub):
            opnum, port = ctx.opnum, _port(ctx)
            method = method_name(iface, opnum)
            entry = self.state.peek("hresult", iface, opnum, port)
            if entry is not None and error_reply(method, 0) is not None:
                entry = self.state.take("hresult", iface, opnum, port)
                if entry is not None:
                    hresult = int(entry["value"]) & 0xFFFFFFFF
                    LOG.warning("fault hresult: %s %s by %s answered 0x%08x without processing (%s)", iface, method,
                                _who(ctx), hresult, _uses(entry))
                    return error_reply(method, hresult, message=entry.get("message"))
            reply = fn(ctx, stub)
            entry = self.state.take("drop_connection", iface, opnum, port, when=lambda e: e.get("value") == "after")
            if entry is not None:
                LOG.warning("fault drop_connection: %s %s by %s processed, closing %s instead of replying (%s)",
                            iface, method, _who(ctx), getattr(ctx, "connection", "?"), _uses(entry))
                conn = getattr(ctx, "connection", None)
                if conn is not None:
                    try:
                        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except (OSError, AttributeError):
                        pass
                    conn.close()  # the engine's send of the reply then fails and ends the connection quietly
            return reply

        handler.__name__ = getattr(fn, "__name__", "handler")
        return handler

    # ---- Request / Request2 / CertServerRequest -------------------------------------------------
    def request_outcome(self, ctx, iface, method, request_id):
        """A forced disposition for this request, as (request_id, disposition, message), or None."""
        entry = self.state.take("disposition", iface, ctx.opnum, _port(ctx))
        if entry is None:
            return None
        disposition = int(entry["value"]) & 0xFFFFFFFF
        if entry.get("request_id") is not None:
            rid = int(entry["request_id"])
        elif request_id:
            rid = request_id
        else:
            rid = self.state.next_synthetic_request_id()
        message = entry.get("message") or disposition_message(disposition)
        LOG.warning("fault disposition: %s by %s answered disposition 0x%x (request id %d, %r) without the CA (%s)",
                    method, _who(ctx), disposition, rid, message, _uses(entry))
        return rid, disposition, message

    def rogue_outcome(self, ctx, iface, method, outcome):
        """rogue_ca: an issued outcome re-issued by a throwaway CA pair, with that chain; else ``outcome``."""
        if not outcome.cert or self.state.peek("rogue_ca", iface, ctx.opnum, _port(ctx)) is None:
            return outcome
        entry = self.state.take("rogue_ca", iface, ctx.opnum, _port(ctx))
        if entry is None:
            return outcome
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        real_chain = [c.public_bytes(serialization.Encoding.DER)
                      for c in pkcs7.load_der_pkcs7_certificates(outcome.chain)] if outcome.chain else []
        cert_der, chain = rogue_reissue(outcome.cert, real_chain)
        outcome.cert = cert_der
        outcome.chain = pkcs7.serialize_certificates([x509.load_der_x509_certificate(d) for d in chain],
                                                     serialization.Encoding.DER)
        outcome.full_response = b""
        LOG.warning("fault rogue_ca: %s by %s: certificate re-issued by a throwaway CA, root SHA-256 %s (%s)",
                    method, _who(ctx), x509.load_der_x509_certificate(chain[1]).fingerprint(hashes.SHA256()).hex(),
                    _uses(entry))
        return outcome

    def rewrite_request(self, ctx, iface, method, flags, request_blob):
        """wrong_key: the request re-signed for a fresh key, or the request unchanged."""
        port = _port(ctx)
        if self.state.peek("wrong_key", iface, ctx.opnum, port) is None:
            return request_blob
        request_type = flags & 0xFF00
        if request_type not in (0, 0x100):
            LOG.warning("fault wrong_key: %s by %s is not a PKCS #10 request (dwFlags 0x%x): passed unchanged",
                        method, _who(ctx), flags)
            return request_blob
        try:
            new_blob, _key = rekey_csr(request_blob)
        except ValueError as exc:
            LOG.warning("fault wrong_key: %s by %s: request not rewritten (%s)", method, _who(ctx), exc)
            return request_blob
        entry = self.state.take("wrong_key", iface, ctx.opnum, port)
        if entry is None:
            return request_blob
        LOG.warning("fault wrong_key: %s by %s: request re-signed with a fresh key, the certificate will not match "
                    "the requester's key (%s)", method, _who(ctx), _uses(entry))
        return new_blob

    # ---- inside the CA: the names of the certificate being issued ---------------------------------
    def alter_names(self, subject, sans):
        """alter_subject / alter_san: (subject, sans) the CA issues with instead of its policy's."""
        from cryptography import x509

        entry = self.state.take("alter_subject")
        if entry is not None:
            LOG.warning("fault alter_subject: issuing with subject %s instead of %s (%s)", entry["value"],
                        subject.rfc4514_string(), _uses(entry))
            subject = x509.Name.from_rfc4514_string(entry["value"])
        entry = self.state.take("alter_san")
        if entry is not None:
            LOG.warning("fault alter_san: issuing with subject alternative names %s (%s)", entry["value"], _uses(entry))
            sans = [_general_name(kind, value) for kind, value in parse_san_list(entry["value"])]
        return subject, sans


def _general_name(kind, value):
    import ipaddress

    from cryptography import x509

    if kind == "dns":
        return x509.DNSName(value)
    if kind == "ip":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "email":
        return x509.RFC822Name(value)
    if kind == "uri":
        return x509.UniformResourceIdentifier(value)
    from adcslab.ca.authority import _upn_name

    return _upn_name(value)
