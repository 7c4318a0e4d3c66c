"""A small raw-socket IMAP driver for exact protocol exchanges.

It speaks plain TCP, implicit TLS (IMAPS) and STARTTLS, sends exactly the bytes a
test gives it, and reads server responses line by line. A response line that ends
in a literal announcement {n} is joined with the n octets that follow and the rest
of the line, so one call returns one whole response. Every read has a timeout: a
test that waits for something that never comes fails with TimeoutError instead of
hanging.
"""

import re
import socket
import ssl
import time
import zlib

DEFAULT_TIMEOUT = 10.0

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")


class ConnectionClosed(Exception):
    """The server closed the connection while a response was expected."""


def tls_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = True
    return context


class RawClient:
    """One IMAP connection. mode: "plain" or "tls" (implicit TLS)."""

    def __init__(self, port, mode="plain", cafile=None, host="127.0.0.1",
                 timeout=DEFAULT_TIMEOUT, read_greeting=True, source=None, preamble=None):
        """source: local address to connect from (any 127.0.0.0/8 address is
        loopback, so a test can be several clients); preamble: bytes written before
        anything else, e.g. a PROXY protocol header, ahead of the TLS handshake."""
        self.host = host
        self.cafile = cafile
        self.timeout = timeout
        self.buffer = b""
        self.transcript = []  # (direction, bytes) for failure messages
        raw = socket.create_connection((host, port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if preamble:
            raw.sendall(preamble)
        if mode == "tls":
            self.sock = tls_context(cafile).wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self._deflate = None  # after compress(): zlib objects of COMPRESS=DEFLATE
        self._inflate = None
        self.greeting = self.read_line() if read_greeting else None
        self._next_tag = 0

    # --- sending -----------------------------------------------------------------
    def send(self, data):
        """Sends `data`; once compress() succeeded, compressed and flushed (RFC 4978
        §4: the peer can decompress each command as soon as it arrives)."""
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def send_raw(self, data):
        """Sends octets on the connection as they are, even under compression."""
        self.transcript.append(("C raw", data))
        self.sock.sendall(data)

    def send_tolerant(self, data):
        """Sends what the server still takes: a server that answers BAD + BYE may
        close the connection while the rest of a command is on its way. Returns
        False if the connection broke during the write."""
        try:
            self.send(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def tag(self):
        self._next_tag += 1
        return "t%d" % self._next_tag

    # --- reading -----------------------------------------------------------------
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response in time; buffered %r; transcript:\n%s"
                               % (self.buffer[:300], self.format_transcript()))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise TimeoutError("no complete response in time; buffered %r; transcript:\n%s"
                               % (self.buffer[:300], self.format_transcript()))
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError) as error:
            raise ConnectionClosed("connection reset: %s" % error)
        if not data:
            raise ConnectionClosed("server closed the connection; buffered %r" % self.buffer)
        if self._inflate is not None:
            data = self._inflate.decompress(data)
        self.transcript.append(("S", data))
        self.buffer += data

    def _read_physical_line(self, deadline):
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end + 2], self.buffer[end + 2:]
                return line
            self._fill(deadline)

    def _read_exactly(self, count, deadline):
        while len(self.buffer) < count:
            self._fill(deadline)
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_line(self, timeout=None):
        """One logical response line (literals included) as bytes without the CRLF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        line = b""
        while True:
            physical = self._read_physical_line(deadline)
            line += physical
            match = _LITERAL_AT_END.search(physical)
            # A continuation request "+ ..." never carries a literal.
            if match is None or line.startswith(b"+ ") or line == b"+\r\n":
                return line[:-2]
            line += self._read_exactly(int(match.group(1)), deadline)

    def read_lines_until(self, predicate, timeout=None):
        """Reads lines until predicate(line) holds; returns all of them."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        lines = []
        while True:
            line = self.read_line(max(0.001, deadline - time.monotonic()))
            lines.append(line)
            if predicate(line):
                return lines

    def read_tagged(self, tag, timeout=None):
        """Reads until the tagged response of `tag`; returns (untagged lines, tagged line)."""
        prefix = tag.encode() + b" "
        lines = self.read_lines_until(lambda line: line.startswith(prefix), timeout)
        return lines[:-1], lines[-1]

    def command(self, text, tag=None, timeout=None):
        """Sends "TAG text\\r\\n", returns (untagged lines, tagged line)."""
        tag = tag or self.tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.read_tagged(tag, timeout)

    def ok(self, text, timeout=None):
        """Runs a command that must succeed; returns its untagged lines."""
        tag = self.tag()
        untagged, tagged = self.command(text, tag=tag, timeout=timeout)
        if not tagged.startswith(tag.encode() + b" OK"):
            raise AssertionError("%s %s -> %r (untagged %r)" % (tag, text, tagged, untagged))
        return untagged

    def expect_continuation(self, timeout=None):
        """Reads lines until a continuation request "+"; untagged lines before it are
        returned too. Fails if a tagged response comes first."""
        lines = self.read_lines_until(
            lambda line: line.startswith(b"+") or not line.startswith(b"*"), timeout)
        if not lines[-1].startswith(b"+"):
            raise AssertionError("expected a continuation request, got %r" % lines)
        return lines

    def expect_silence(self, seconds):
        """Asserts that the server sends nothing for `seconds`."""
        if self.buffer:
            raise AssertionError("unexpected data from server: %r" % self.buffer)
        try:
            self._fill(time.monotonic() + seconds)
        except TimeoutError:
            return
        raise AssertionError("unexpected data from server: %r" % self.buffer)

    def login(self, user, password):
        return self.ok('LOGIN "%s" "%s"' % (user, password))

    # --- TLS ---------------------------------------------------------------------
    def starttls(self, tag=None):
        """STARTTLS, then the TLS handshake. Returns the tagged line."""
        tag = tag or self.tag()
        untagged, tagged = self.command("STARTTLS", tag=tag)
        if not tagged.startswith(tag.encode() + b" OK"):
            raise AssertionError("STARTTLS refused: %r" % tagged)
        self.upgrade()
        return tagged

    def upgrade(self):
        if self.buffer:
            raise AssertionError("bytes after STARTTLS OK before the handshake: %r" % self.buffer)
        self.sock.settimeout(self.timeout)
        self.sock = tls_context(self.cafile).wrap_socket(self.sock, server_hostname=self.host)

    # --- COMPRESS ----------------------------------------------------------------
    def compress(self, tag=None):
        """COMPRESS DEFLATE (RFC 4978); on OK both directions are raw deflate from the
        octet after the OK's CRLF. Returns the tagged line (compression stays off
        unless it is OK)."""
        tag = tag or self.tag()
        _, tagged = self.command("COMPRESS DEFLATE", tag=tag)
        if tagged.startswith(tag.encode() + b" OK"):
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._inflate = zlib.decompressobj(-15)
            rest, self.buffer = self.buffer, b""
            self.buffer = self._inflate.decompress(rest)
        return tagged

    # --- misc --------------------------------------------------------------------
    def alive(self):
        """True if a NOOP on this connection still completes with OK."""
        try:
            tag = self.tag()
            _, tagged = self.command("NOOP", tag=tag)
            return tagged.startswith(tag.encode() + b" OK")
        except (ConnectionClosed, TimeoutError, OSError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def format_transcript(self, limit=4000):
        text = "".join("%s: %r\n" % (direction, data[:500]) for direction, data in self.transcript)
        return text[-limit:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
