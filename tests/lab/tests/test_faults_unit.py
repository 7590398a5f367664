"""adcslab.faults (file format, API, CLI, matching and counting) and adcslab.wcce.faultinject helpers, no network."""

import datetime
import json
import os
import sys
from types import SimpleNamespace as NS

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import wcce_helpers as H
from adcslab import faults as F
from adcslab.wcce import faultinject as FI


def test_absent_file_means_no_faults(tmp_path):
    state = F.FaultState(str(tmp_path))
    assert state.active() == {}
    assert state.take("delay_seconds", "ICertRequestD", 3) is None


def test_set_merge_replace_and_clear(tmp_path):
    d = str(tmp_path)
    F.set_faults(d, delay_seconds=2, times=1)
    F.set_faults(d, hresult="0x80070005", method="Request")
    faults = F.load_faults(d)
    assert faults["delay_seconds"]["value"] == 2.0 and faults["delay_seconds"]["times"] == 1
    assert faults["hresult"] == dict(faults["hresult"], value=0x80070005, method="Request")
    old_id = faults["hresult"]["id"]
    F.set_faults(d, hresult=0x80094012)
    assert F.load_faults(d)["hresult"]["id"] != old_id and "method" not in F.load_faults(d)["hresult"]
    F.set_faults(d, delay_seconds=0)
    assert "delay_seconds" not in F.load_faults(d)
    F.clear_faults(d, "hresult")
    assert not os.path.exists(os.path.join(d, "faults.json"))


@pytest.mark.parametrize("kwargs", [{}, {"bogus": 1}, {"delay_seconds": -1}, {"hresult": "x"},
                                    {"delay_seconds": 1, "times": 0}, {"wrong_key": "maybe"}])
def test_bad_knobs_are_refused(tmp_path, kwargs):
    with pytest.raises(F.FaultError):
        F.set_faults(str(tmp_path), **kwargs)


def test_times_counts_per_setting_and_resets_when_set_again(tmp_path):
    d = str(tmp_path)
    state = F.FaultState(d)
    F.set_faults(d, hresult=5, times=2)
    assert [state.take("hresult", "ICertPassage", 0) is not None for _ in range(3)] == [True, True, False]
    assert json.load(open(os.path.join(d, F.STATUS_FILE)))["applied"] == {F.load_faults(d)["hresult"]["id"]: 2}
    F.set_faults(d, hresult=5, times=1)
    assert state.take("hresult", "ICertPassage", 0) is not None
    assert state.take("hresult", "ICertPassage", 0) is None


def test_scopes(tmp_path):
    d = str(tmp_path)
    state = F.FaultState(d)
    F.set_faults(d, delay_seconds=1, hresult=5, disposition=5, wrong_key=True, slow_activation_seconds=1)
    assert state.peek("delay_seconds", "ICertRequestD2", 7) is not None
    assert state.peek("delay_seconds", "IRemoteSCMActivator", 4) is None        # not MS-WCCE by default
    assert state.peek("hresult", "IRemUnknown2", 3) is None
    assert state.peek("disposition", "ICertRequestD", 4) is None                # GetCACert is no request
    assert state.peek("disposition", "ICertPassage", 0) is not None
    assert state.peek("wrong_key", "ICertRequestD2", 6) is not None
    assert state.peek("slow_activation_seconds", "IRemoteSCMActivator", 4) is not None
    assert state.peek("slow_activation_seconds", "ICertRequestD", 3) is None
    F.set_faults(d, delay_seconds=1, method="ServerAlive2")
    assert state.peek("delay_seconds", "IObjectExporter", 5) is not None       # widened by method=
    assert state.peek("delay_seconds", "ICertRequestD", 3) is None
    F.set_faults(d, hresult=5, method="RemoteCreateInstance")
    assert state.peek("hresult", "IRemoteSCMActivator", 4) is not None
    F.set_faults(d, hresult=5, opnum=7)
    assert state.peek("hresult", "ICertRequestD2", 7) is not None
    assert state.peek("hresult", "ICertRequestD2", 6) is None
    F.set_faults(d, refuse_connections=True, port=4242)
    assert state.peek("refuse_connections", port=4242) is not None
    assert state.peek("refuse_connections", port=135) is None


def test_changes_are_seen_without_restart(tmp_path):
    d = str(tmp_path)
    state = F.FaultState(d)
    for value in range(1, 6):  # quick successive writes (same size, maybe the same mtime tick and inode)
        F.set_faults(d, disposition=value)
        assert state.peek("disposition", "ICertPassage", 0)["value"] == value
    F.clear_faults(d)
    assert state.peek("disposition", "ICertPassage", 0) is None


def test_cli_round_trip(tmp_path, capsys):
    d = str(tmp_path)
    assert F.main(["--state-dir", d, "set", "disposition=0x80094012", "method=Request", "times=2",
                   "message=nope"]) == 0
    assert "disposition=0x80094012 [times=2, method=Request, message=nope] (applied 0, 2 left)" in \
        capsys.readouterr().out
    assert F.main(["--state-dir", d, "set", "delay_seconds"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert F.main(["--state-dir", d, "clear"]) == 0
    assert "no faults set" in capsys.readouterr().out


def _csr(key, extensions=True):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.lab.adcs.test")]))
    if extensions:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("web.lab.adcs.test")]), False)
        builder = builder.add_attribute(x509.ObjectIdentifier("1.2.840.113549.1.9.7"), b"challenge")
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize("keygen", [lambda: rsa.generate_private_key(65537, 2048),
                                    lambda: ec.generate_private_key(ec.SECP256R1())], ids=["rsa", "ec"])
@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_rekey_csr_keeps_everything_but_the_key(keygen, encoding):
    key = keygen()
    csr = _csr(key)
    blob = csr.public_bytes(serialization.Encoding.DER if encoding == "der" else serialization.Encoding.PEM)
    new_der, new_key = FI.rekey_csr(blob)
    new = x509.load_der_x509_csr(new_der)
    assert new.is_signature_valid
    assert new.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == new_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert new.public_key() != csr.public_key() and type(new.public_key()) is type(csr.public_key())
    assert new.subject == csr.subject
    assert list(new.extensions) == list(csr.extensions)
    assert new.attributes.get_attribute_for_oid(x509.ObjectIdentifier("1.2.840.113549.1.9.7")).value == b"challenge"


def test_rogue_reissue_copies_the_certificate_and_the_ca_names_with_other_keys():
    """rogue_ca: same subject, key and extensions, issued by a fresh CA pair that copies the real CAs' names."""
    now = datetime.datetime.now(datetime.timezone.utc)
    delta = datetime.timedelta

    def make(name, key, issuer, signer, ca):
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - delta(days=1)).not_valid_after(now + delta(days=30))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("web.lab.adcs.test")]), critical=False)
                .sign(signer, hashes.SHA256()))

    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _i in range(3))
    root = make("LAB Root CA", root_key, "LAB Root CA", root_key, True)
    ca = make("LAB-CA", ca_key, "LAB Root CA", root_key, True)
    leaf = make("web.lab.adcs.test", leaf_key, "LAB-CA", ca_key, False)
    der = serialization.Encoding.DER
    new_der, chain = FI.rogue_reissue(leaf.public_bytes(der), [ca.public_bytes(der), root.public_bytes(der)])
    new = x509.load_der_x509_certificate(new_der)
    rogue_ca, rogue_root = (x509.load_der_x509_certificate(c) for c in chain)
    assert new.subject == leaf.subject and new.public_key() == leaf.public_key()
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == \
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert (rogue_ca.subject, rogue_root.subject) == (ca.subject, root.subject)
    new.verify_directly_issued_by(rogue_ca)
    rogue_ca.verify_directly_issued_by(rogue_root)
    rogue_root.verify_directly_issued_by(rogue_root)
    assert rogue_root.public_key() != root.public_key() and rogue_ca.public_key() != ca.public_key()
    with pytest.raises(Exception):
        new.verify_directly_issued_by(ca)


def test_rekey_csr_refuses_non_pkcs10():
    with pytest.raises(ValueError):
        FI.rekey_csr(b"\x30\x03\x02\x01\x00")
    with pytest.raises(ValueError):
        FI.rekey_csr("not base64 at all!".encode())


@pytest.mark.parametrize("method,resp_cls,dcom", [
    ("Request", H.RequestResponse, True), ("Request2", H.Request2Response, True),
    ("CertServerRequest", H.CertServerRequestResponse, False), ("GetCACert", H.GetCACertResponse, True),
    ("GetCAProperty", H.GetCAPropertyResponse, True), ("GetCAPropertyInfo", H.GetCAPropertyInfoResponse, True),
    ("Ping", H.PingResponse, True)])
def test_error_replies_decode_with_impacket(method, resp_cls, dcom):
    stub = FI.error_reply(method, 0x80070005, request_id=7)
    resp = resp_cls(stub)
    assert resp["ErrorCode"] == 0x80070005
    assert len(resp.getData()) == len(stub)
    if "pdwDisposition" in resp.fields:
        assert resp["pdwDisposition"] == 0x80070005 and resp["pdwRequestId"] == 7
        assert "Access is denied." in H.text_of(resp["pctbDispositionMessage"])


def test_error_reply_for_activation_decodes_with_impacket():
    from impacket.dcerpc.v5 import dcomrt

    resp = dcomrt.RemoteCreateInstanceResponse(FI.error_reply("RemoteCreateInstance", 0x80070005))
    assert resp["ErrorCode"] == 0x80070005
    assert FI.error_reply("ResolveOxid2", 5) is None


def test_disposition_messages():
    assert FI.disposition_message(5) == "Taken Under Submission"
    assert FI.disposition_message(3) == "Issued"
    assert FI.disposition_message(0x80094012).startswith("Denied by Policy Module  0x80094012, The permissions")


def test_injector_before_call_uses_sleep_and_drop(tmp_path):
    slept = []
    inj = FI.FaultInjector(str(tmp_path), sleep=slept.append)
    ctx = NS(interface=NS(name="ICertPassage"), opnum=0, connection=NS(local_port=1), auth=None)
    assert inj.before_call(ctx) is None and slept == []
    F.set_faults(str(tmp_path), delay_seconds=0.5, drop_connection=True, times=1)
    assert inj.before_call(ctx) == "drop" and slept == [0.5]
    assert inj.before_call(ctx) is None and slept == [0.5]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
