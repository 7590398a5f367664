"""Command line of the lab: ``python -m adcslab up|down|status|show`` (PYTHONPATH=tests/lab)."""

import argparse
import json
import sys

from adcslab.ad import LabError
from adcslab.lab import Lab


def main(argv=None):
    parser = argparse.ArgumentParser(prog="adcslab", description="The adcs.enrollment lab: Samba AD DC and lab CA.")
    parser.add_argument("--state-dir", help="lab state directory (default tests/lab/state or $ADCS_LAB_STATE)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab (reuses a healthy running lab)")
    up.add_argument("--no-ca", action="store_true", help="only the AD DC")
    sub.add_parser("down", help="stop the lab CA and the AD DC")
    sub.add_parser("seed-templates", help="add this checkout's templates to the running lab (accounts untouched)")
    sub.add_parser("status", help="is the lab running")
    sub.add_parser("show", help="print the connection details (lab.json)")
    ca = sub.add_parser("ca", help="lab CA administration: list, show, approve, deny, revoke, publish-crl, ...")
    ca.add_argument("ca_args", nargs=argparse.REMAINDER)
    faults = sub.add_parser("faults", help="fault knobs of the running lab CA: set key=value ..., clear, show")
    faults.add_argument("fault_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    lab = Lab(args.state_dir)
    try:
        if args.command == "up":
            result = lab.up(with_ca=not args.no_ca)
            print("lab up: %s" % json.dumps(result))
        elif args.command == "seed-templates":
            print("lab templates: %s" % json.dumps(lab.seed_templates()))
        elif args.command == "down":
            print("lab down: %s" % json.dumps(lab.down()))
        elif args.command == "status":
            from adcslab.ad import SambaDC
            from adcslab.lab import _PkiPaths
            import os
            dc = SambaDC(lab.state_dir, _PkiPaths(os.path.join(lab.state_dir, "pki")))
            status = {"dc_pid": dc.pid(), "ca_pid": lab.ca_pid(), "http_pid": lab._process("http").pid()}
            print(json.dumps(status))
            return 0 if status["dc_pid"] else 3
        elif args.command == "ca":
            from adcslab.ca.__main__ import main as ca_main
            return ca_main(["--state-dir", lab.state_dir] + args.ca_args)
        elif args.command == "faults":
            from adcslab.faults import main as faults_main
            return faults_main(["--state-dir", lab.state_dir] + args.fault_args)
        elif args.command == "show":
            with open(lab.lab_json) as handle:
                print(handle.read())
    except (LabError, TimeoutError, OSError) as exc:
        print("adcslab: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
