"""The alter_subject / alter_san fault knobs: parsed and refused like the other knobs, and applied inside the CA
(the certificate, the request DB and the reply carry the altered names). No network."""

import ipaddress

import pytest
from cryptography import x509

from adcslab import faults as F
from adcslab.ca import CertificationAuthority, Requester
from adcslab.ca import testing as T
from adcslab.wcce import faultinject as FI

ENROLLER = Requester(user="enroller", domain="LAB", sid="S-1-5-21-1111-2222-3333-1104",
                     group_sids=["S-1-5-21-1111-2222-3333-513"], authn_type=10, transport="dcom")


@pytest.mark.parametrize("kwargs, message", [
    ({"alter_subject": ""}, "alter_subject: empty subject"),
    ({"alter_subject": "no equals sign"}, "alter_subject: not an RFC 4514 name"),
    ({"alter_san": "ftp:x"}, "alter_san: expected type:value with type in dns, ip, email, upn, uri, got 'ftp:x'"),
    ({"alter_san": "ip:not-an-ip"}, "alter_san: not an IP address: 'not-an-ip'"),
    ({"alter_san": " , "}, "alter_san: no subject alternative name given"),
])
def test_bad_values_are_refused(tmp_path, kwargs, message):
    with pytest.raises(F.FaultError) as info:
        F.set_faults(str(tmp_path), **kwargs)
    assert str(info.value).startswith(message), str(info.value)


def _issue(ca, key, cn):
    response = ca.submit(0x100, "CertificateTemplate:WebServer", T.make_csr(key, cn, dns_names=[cn]), ENROLLER)
    assert response.disposition == 3, response.disposition_message
    return response, x509.load_der_x509_certificate(response.cert_der)


def test_the_ca_issues_with_the_altered_names_times_limited(tmp_path):
    state = str(tmp_path)
    ca = CertificationAuthority.open(state)
    try:
        injector = FI.FaultInjector(state)
        ca.alter_names = injector.alter_names
        key = T.rsa_key(2048)
        F.set_faults(state, alter_subject="CN=victim.lab.adcs.test",
                     alter_san="dns:victim.lab.adcs.test, ip:192.0.2.66, upn:victim@lab.adcs.test", times=1)
        response, cert = _issue(ca, key, "web01.lab.adcs.test")
        assert cert.subject.rfc4514_string() == "CN=victim.lab.adcs.test"
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["victim.lab.adcs.test"]
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.66")]
        assert [o.type_id.dotted_string for o in sans.get_values_for_type(x509.OtherName)] == \
            ["1.3.6.1.4.1.311.20.2.3"]
        assert ca.get_request(response.request_id)["subject"] == "CN=victim.lab.adcs.test"
        # times=1: spent, the next certificate has the requested names again
        _, cert = _issue(ca, key, "web02.lab.adcs.test")
        assert cert.subject.rfc4514_string() == "CN=web02.lab.adcs.test"
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ["web02.lab.adcs.test"]
        # only one of them
        F.clear_faults(state)
        F.set_faults(state, alter_san="dns:other.lab.adcs.test")
        _, cert = _issue(ca, key, "web03.lab.adcs.test")
        assert cert.subject.rfc4514_string() == "CN=web03.lab.adcs.test"
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ["other.lab.adcs.test"]
    finally:
        ca.close()


def test_cli_shows_the_knobs(tmp_path, capsys):
    assert F.main(["--state-dir", str(tmp_path), "set", "alter_subject=CN=victim", "times=2"]) == 0
    assert "alter_subject=CN=victim [times=2] (applied 0, 2 left)" in capsys.readouterr().out
