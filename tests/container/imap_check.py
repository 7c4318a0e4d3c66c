#!/usr/bin/env python3
"""Client side of the container test, run inside the pod's network namespace
(nsenter -n): the gateway container's ports are on that namespace's loopback only.

  imap_check.py wait PORT...        wait until every PORT accepts connections (60 s)
  imap_check.py http PORT PATH      GET http://127.0.0.1:PORT/PATH, print the status code
  imap_check.py imap PORT CA USER PASSWORD
      log in over IMAPS (the certificate checked against CA and for 127.0.0.1),
      APPEND a message to INBOX, FETCH it back and compare; print "imap ok UID"

Exits non-zero with a message on any failure.
"""
import imaplib
import socket
import ssl
import sys
import time
import urllib.request


def wait(ports):
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    sys.exit(f"port {port} still refuses connections after 60 s: {error}")
                time.sleep(0.2)
    print("listening:", " ".join(str(port) for port in ports))


def http(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            print(response.status)
    except urllib.error.HTTPError as error:
        print(error.code)


def imap(port, ca, user, password):
    # Verified like a mail client would: the chain up to CA, and the address connected
    # to (the test's certificate names 127.0.0.1 among its subjectAltNames).
    context = ssl.create_default_context(cafile=ca)
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=30)
    version = client.sock.version()
    typ, _ = client.login(user, password)
    assert typ == "OK", typ
    body = (b"From: container-test@example.org\r\nTo: " + user.encode() +
            b"@example.org\r\nSubject: from the container test\r\n\r\n"
            b"Appended through the gateway container.\r\n")
    typ, data = client.append("INBOX", r"(\Seen)", None, body)
    assert typ == "OK", (typ, data)
    typ, data = client.select("INBOX")
    assert typ == "OK", (typ, data)
    typ, data = client.uid("SEARCH", None, "SUBJECT", '"from the container test"')
    assert typ == "OK" and data[0], (typ, data)
    uid = data[0].split()[-1].decode()
    typ, data = client.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    fetched = data[0][1]
    if fetched != body:
        sys.exit(f"fetched message differs from the appended one:\n{fetched!r}\n{body!r}")
    if b"\\Seen" not in data[0][0]:
        sys.exit(f"flags not kept: {data[0][0]!r}")
    client.logout()
    print(f"imap ok {uid} over {version}")


def main(argv):
    if len(argv) >= 2 and argv[0] == "wait":
        wait([int(port) for port in argv[1:]])
    elif len(argv) == 3 and argv[0] == "http":
        http(int(argv[1]), argv[2])
    elif len(argv) == 5 and argv[0] == "imap":
        imap(int(argv[1]), argv[2], argv[3], argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
