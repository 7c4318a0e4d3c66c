"""Starts the mailbox service (trusting a test OAuth issuer) and a gateway (with
--oauth), creates a user, and runs the imapflow
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
        # Bearer tokens signed by a key the service trusts, for imapflow's accessToken.
        issuer = harness.OAuthIssuer(system.dir)
        system.start_service(*issuer.service_flags())
        gateway = system.start_gateway("--oauth=true")
        user, password = system.new_user("flow")
        env = dict(os.environ, IMAPS_PORT=str(gateway.imaps_port), IMAP_PORT=str(gateway.imap_port),
                   IMAP_USER=user, IMAP_PASSWORD=password, CA_FILE=system.cert,
                   OAUTH_TOKEN=issuer.token(user),
                   OAUTH_EXPIRED_TOKEN=issuer.token(user, lifetime=-3600))
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
