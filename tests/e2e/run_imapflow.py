"""Starts the mailbox service and a gateway, creates a user, and runs the imapflow
suite (node:test) against them. Usage: run_imapflow.py DIR, where DIR holds
imapflow_test.mjs and node_modules (installed with npm ci from package-lock.json).
Exits with node's status; node's TAP output (ending in "# pass N" / "# fail M") is
passed through."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    directory = sys.argv[1]
    system = harness.System("imapflow")
    try:
        system.start_service()
        gateway = system.start_gateway()
        user, password = system.new_user("flow")
        env = dict(os.environ, IMAPS_PORT=str(gateway.imaps_port), IMAP_PORT=str(gateway.imap_port),
                   IMAP_USER=user, IMAP_PASSWORD=password, CA_FILE=system.cert)
        result = subprocess.run(["node", "--test", "--test-reporter=tap", "imapflow_test.mjs"],
                                cwd=directory, env=env, timeout=300)
        if not gateway.alive():
            print("imap-gateway died during the imapflow suite:\n" + gateway.log()[-3000:])
            return 1
        return result.returncode
    finally:
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
