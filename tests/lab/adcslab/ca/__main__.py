"""Lab CA administration: ``python -m adcslab.ca --state-dir DIR COMMAND``.

Commands: ``list [--pending]``, ``show ID``, ``approve ID``, ``deny ID``, ``revoke SERIAL [--reason N]``,
``publish-crl [--delta]``, ``set-editf-san on|off``, ``renew-ca [--new-key] [--no-dspublish]`` (renew the CA's own
certificate with the same key or a new key, as ``certutil -renewCert [ReuseKeys]``; restart the CA server after).
Works on the same state directory as the running server (SQLite in WAL mode); configuration changes take effect when
the server is restarted.
"""

import argparse
import json
import sys

from .authority import CertificationAuthority
from .db import DB_DISP_PENDING
from .errors import CAError

DISPOSITIONS = {8: "active", 9: "pending", 20: "issued", 21: "revoked", 30: "error", 31: "denied"}


def _row_summary(row):
    return {
        "request_id": row["request_id"], "requester": row["requester_name"], "template": row["template"],
        "disposition": DISPOSITIONS.get(row["disposition"], row["disposition"]),
        "status": "0x%08x" % (row["status_hresult"] or 0), "message": row["disposition_message"],
        "serial": row["serial"], "subject": row["subject"], "submitted_at": row["submitted_at"],
        "revoked_at": row["revoked_at"], "revocation_reason": row["revocation_reason"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adcslab.ca", description="Lab CA administration")
    parser.add_argument("--state-dir", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--pending", action="store_true")
    sub.add_parser("show").add_argument("request_id", type=int)
    sub.add_parser("approve").add_argument("request_id", type=int)
    sub.add_parser("deny").add_argument("request_id", type=int)
    revoke = sub.add_parser("revoke")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", type=int, default=0)
    publish = sub.add_parser("publish-crl")
    publish.add_argument("--delta", action="store_true")
    sub.add_parser("set-editf-san").add_argument("state", choices=["on", "off"])
    renew = sub.add_parser("renew-ca")
    renew.add_argument("--new-key", action="store_true", help="a new key pair (default: reuse the current key)")
    renew.add_argument("--no-dspublish", action="store_true",
                       help="do not add the new CA certificate to the enrollment service, AIA and NTAuth objects")
    args = parser.parse_args(argv)

    ca = CertificationAuthority.open(args.state_dir)
    try:
        if args.command == "list":
            rows = ca.list_requests(DB_DISP_PENDING if args.pending else None)
            print(json.dumps([_row_summary(row) for row in rows], indent=2))
        elif args.command == "show":
            row = ca.get_request(args.request_id)
            if row is None:
                print("no request %d" % args.request_id, file=sys.stderr)
                return 1
            print(json.dumps(_row_summary(row), indent=2))
        elif args.command == "approve":
            response = ca.approve(args.request_id)
            print("request %d: %s" % (response.request_id, response.disposition_message))
            return 0 if response.disposition == 3 else 1
        elif args.command == "deny":
            ca.deny(args.request_id)
            print("request %d denied" % args.request_id)
        elif args.command == "revoke":
            ca.revoke(args.serial, args.reason)
            print("revoked %s" % args.serial)
        elif args.command == "publish-crl":
            ca.publish_crls(delta_only=args.delta)
            print("published %s" % ("delta CRL" if args.delta else "base and delta CRLs"))
        elif args.command == "renew-ca":
            entry = ca.renew_ca(new_key=args.new_key, dspublish=not args.no_dspublish)
            print(json.dumps({"cert_index": entry.cert_index, "key_index": entry.key_index,
                              "certificate": ca.ca_cert_file_name(entry.cert_index),
                              "crl": ca.crl_file_name(False, entry.key_index),
                              "subject": entry.cert.subject.rfc4514_string(),
                              "not_after": entry.cert.not_valid_after_utc.isoformat(),
                              "note": "restart the CA server to issue from the new certificate"}, indent=2))
        elif args.command == "set-editf-san":
            ca.config["editf_attributesubjectaltname2"] = args.state == "on"
            ca.save_config()
            print("EDITF_ATTRIBUTESUBJECTALTNAME2 %s (restart the CA server to apply)" % args.state)
        return 0
    except CAError as error:
        print("error: 0x%08x %s" % (error.hresult, error.message), file=sys.stderr)
        return 1
    finally:
        ca.close()


if __name__ == "__main__":
    sys.exit(main())
