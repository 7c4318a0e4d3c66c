#include "gateway/net/stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <tuple>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/error.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "gateway/net/deflate.h"

namespace gateway::net {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// Size of one TLS record buffer (16 KiB plaintext plus header, MAC/tag and padding).
constexpr std::size_t kRecordBuffer = 17 * 1024 + 512;
// What an SSL object holds after a TLS 1.3 handshake with its buffers released (the
// SSL struct, session, AEAD contexts, handshake digest, peer key share), measured by
// idle_memory_test; used only by ApproximateMemory(). OpenSSL 3.0's SSL struct alone
// is 7.6 KB.
#ifdef OPENSSL_IS_BORINGSSL
constexpr std::size_t kIdleSslEstimate = 4 * 1024;
#else
constexpr std::size_t kIdleSslEstimate = 13 * 1024 + 512;
#endif
// The epoll reactor's per-socket state, a pending wait and timer operation, and the
// WaitReadable coroutine frame (idle_memory_test measures ~2.4 KiB for a whole idle
// plain connection including the caller's frames).
constexpr std::size_t kReactorStateEstimate = 1024;
}  // namespace

using Impl = internal::StreamState;

struct internal::StreamState : std::enable_shared_from_this<internal::StreamState> {
  using Clock = Stream::Clock;
  explicit StreamState(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {
    error_code ignored;
    remote = socket.remote_endpoint(ignored);
    local = socket.local_endpoint(ignored);
  }
  ~StreamState() {
    if (ssl != nullptr) {
      SSL_free(ssl);  // also frees the BIO
    }
  }

  // Arms the operation timer; when it fires, the pending socket operation is
  // cancelled and `timed_out` tells the operation why. The handler holds the Impl
  // alive and carries a generation so that a late expiry cannot cancel a later
  // operation.
  void Arm(Clock::time_point deadline) {
    ++generation;
    timed_out = false;
    timer.expires_at(deadline);
    timer.async_wait([self = shared_from_this(), gen = generation](const error_code& ec) {
      if (ec || gen != self->generation) {
        return;
      }
      self->timed_out = true;
      error_code ignored;
      self->socket.cancel(ignored);
    });
  }
  void Disarm() {
    ++generation;
    timer.cancel();
  }

  // Rewrites the operation_aborted of a cancelled socket wait into its cause.
  error_code Cause(error_code ec) const {
    if (ec == asio::error::operation_aborted && timed_out) {
      return asio::error::timed_out;
    }
    if (ec == asio::error::bad_descriptor && !socket.is_open()) {
      return asio::error::operation_aborted;  // Close() while pending
    }
    return ec;
  }

  // Releases the TLS library's record buffers if they hold nothing. OpenSSL's
  // SSL_MODE_RELEASE_BUFFERS already does this on most paths; this catches the rest
  // (e.g. a write buffer kept after a partial write completed). BoringSSL has no such
  // call and needs none.
  void ReleaseTlsBuffers() {
#ifndef OPENSSL_IS_BORINGSSL
    if (ssl != nullptr && !SSL_has_pending(ssl)) {
      SSL_free_buffers(ssl);
    }
#endif
  }

  // Turns a failed SSL_* call (SSL_get_error() not WANT_*) into an error_code.
  error_code TlsError(int ssl_error) {
    error_code ec;
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
      ec = asio::error::eof;  // close_notify received (RFC 8446 §6.1)
    } else if (peer_eof) {
      // OpenSSL 3 reports a missing close_notify as an SSL error, BoringSSL as
      // SSL_ERROR_SYSCALL; either way the peer simply went away.
      ec = MakeErrorCode(NetErrc::kTlsTruncated);
    } else if (ssl_error == SSL_ERROR_SYSCALL && last_errno != 0) {
      ec = error_code(last_errno, boost::system::system_category());
    } else if (uint32_t packed = static_cast<uint32_t>(ERR_peek_error()); packed != 0) {
      ec = error_code(static_cast<int>(packed), TlsCategory());
    } else {
      ec = MakeErrorCode(NetErrc::kTlsFailure);
    }
    ERR_clear_error();
    if (ec != asio::error::eof) {
      broken = true;
    }
    return ec;
  }

  tcp::socket socket;
  asio::steady_timer timer;
  SSL* ssl = nullptr;  // owned; non-null only after a successful handshake
  tcp::endpoint remote;
  tcp::endpoint local;
  uint32_t generation = 0;
  int last_errno = 0;          // set by the BIO on a socket error
  bool timed_out = false;      // the current operation's timer fired
  bool waiting_readable = false;
  bool broken = false;         // a fatal error or Shutdown() happened
  bool peer_eof = false;       // the BIO saw recv() return 0
  // COMPRESS=DEFLATE (RFC 4978), once StartCompression() succeeded.
  std::unique_ptr<DeflateCodec> codec;
  // Compressed output a TryWrite() could not send, and how many leading octets
  // of the plaintext it was made from (the next Write() skips them).
  std::string unsent;
  std::size_t taken_ahead = 0;
  // A compressed WaitReadable() is running, and CancelWait() asked it to end: it
  // also reads the transport between waits, when a cancellation of the socket's
  // wait would find nothing to cancel, so the request is remembered.
  bool compressed_waiting = false;
  bool wait_cancelled = false;
};

namespace {

// A BIO that reads and writes the socket directly, so that no ciphertext is buffered
// in user space outside the TLS library's own (released) record buffers. Never
// blocks: EAGAIN becomes a retry, which SSL_get_error() reports as WANT_READ/WRITE and
// the coroutine turns into an async_wait on the socket.
int BioWrite(BIO* bio, const char* data, int size) {
  auto* impl = static_cast<Impl*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    // MSG_NOSIGNAL: a peer that went away must give EPIPE, not SIGPIPE.
    ssize_t n = ::send(impl->socket.native_handle(), data, static_cast<size_t>(size),
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      return static_cast<int>(n);
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(bio);
    } else {
      impl->last_errno = errno;
    }
    return -1;
  }
}

int BioRead(BIO* bio, char* out, int size) {
  auto* impl = static_cast<Impl*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    ssize_t n = ::recv(impl->socket.native_handle(), out, static_cast<size_t>(size),
                       MSG_DONTWAIT);
    if (n > 0) {
      return static_cast<int>(n);
    }
    if (n == 0) {
      impl->peer_eof = true;
      return 0;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(bio);
    } else {
      impl->last_errno = errno;
    }
    return -1;
  }
}

long BioCtrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered here
    case BIO_CTRL_EOF:
      return static_cast<Impl*>(BIO_get_data(bio))->peer_eof ? 1 : 0;
    default:
      return 0;
  }
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int BioDestroy(BIO*) { return 1; }

const BIO_METHOD* SocketBioMethod() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "gateway socket");
    BIO_meth_set_write(m, &BioWrite);
    BIO_meth_set_read(m, &BioRead);
    BIO_meth_set_ctrl(m, &BioCtrl);
    BIO_meth_set_create(m, &BioCreate);
    BIO_meth_set_destroy(m, &BioDestroy);
    return m;
  }();
  return method;
}

int ClampToInt(std::size_t n) { return static_cast<int>(std::min<std::size_t>(n, 1 << 30)); }


// The operations are free coroutines taking the Impl by shared_ptr (not member
// coroutines capturing `this`): a Stream may be moved between operations, and the
// Impl must outlive a suspended operation even if the Stream is destroyed early.

asio::awaitable<error_code> WaitSocket(Impl& s, tcp::socket::wait_type what) {
  auto [ec] = co_await s.socket.async_wait(what, kAwait);
  co_return s.Cause(ec);
}

// After an SSL_* call returned `r` (<= 0 or -1): when the library only needs the socket
// readable or writable, waits for that and returns no error (the caller retries the
// same call with the same arguments); otherwise returns the TLS error, never empty.
asio::awaitable<error_code> AfterTlsCall(Impl& s, int r) {
  const int err = SSL_get_error(s.ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    co_return co_await WaitSocket(
        s, err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write);
  }
  co_return s.TlsError(err);
}


enum class PeekResult { kData, kWantRead, kWantWrite, kError };

// Lets the TLS library process whatever records have arrived, without consuming
// application data. Records without any (KeyUpdate, NewSessionTicket) give kWantRead.
PeekResult PeekTls(Impl& s, error_code& error) {
  if (SSL_pending(s.ssl) > 0) {
    return PeekResult::kData;
  }
  ERR_clear_error();
  char byte;
  int r = SSL_peek(s.ssl, &byte, 1);
  if (r > 0) {
    return PeekResult::kData;
  }
  int err = SSL_get_error(s.ssl, r);
  if (err == SSL_ERROR_WANT_READ) {
    s.ReleaseTlsBuffers();
    return PeekResult::kWantRead;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    return PeekResult::kWantWrite;
  }
  error = s.TlsError(err);
  return PeekResult::kError;
}

// The idle path: this frame is what a parked connection pays for, so it has a single
// suspension point and few locals.
asio::awaitable<error_code> DoTransportWait(std::shared_ptr<Impl> s,
                                            Stream::Clock::time_point deadline) {
  if (s->broken || !s->socket.is_open()) {
    co_return MakeErrorCode(NetErrc::kStreamBroken);
  }
  s->Arm(deadline);
  s->waiting_readable = true;
  error_code result;
  auto what = tcp::socket::wait_read;
  // A record may already sit in the TLS library's buffer: look before waiting.
  bool wait = s->ssl == nullptr || (SSL_pending(s->ssl) == 0 && !SSL_has_pending(s->ssl));
  for (;;) {
    if (wait) {
      auto [ec] = co_await s->socket.async_wait(what, kAwait);
      if (ec) {
        result = s->Cause(ec);
        break;
      }
      if (s->ssl == nullptr) {
        break;
      }
    }
    wait = true;
    PeekResult peek = PeekTls(*s, result);
    if (peek == PeekResult::kData || peek == PeekResult::kError) {
      break;
    }
    what = peek == PeekResult::kWantRead ? tcp::socket::wait_read : tcp::socket::wait_write;
  }
  s->waiting_readable = false;
  s->Disarm();
  co_return result;
}

asio::awaitable<std::pair<error_code, std::size_t>> DoTransportRead(
    std::shared_ptr<Impl> s, std::span<char> out, Stream::Clock::duration timeout) {
  if (s->broken || !s->socket.is_open()) {
    co_return std::make_pair(MakeErrorCode(NetErrc::kStreamBroken), std::size_t{0});
  }
  if (out.empty()) {
    co_return std::make_pair(make_error_code(asio::error::invalid_argument), std::size_t{0});
  }
  s->Arm(Stream::Clock::now() + timeout);
  error_code result;
  std::size_t got = 0;
  if (s->ssl == nullptr) {
    auto [ec, n] = co_await s->socket.async_read_some(asio::buffer(out.data(), out.size()),
                                                      kAwait);
    result = s->Cause(ec);
    got = n;
  } else {
    for (;;) {
      ERR_clear_error();
      int r = SSL_read(s->ssl, out.data(), ClampToInt(out.size()));
      if (r > 0) {
        got = static_cast<std::size_t>(r);
        break;
      }
      error_code ec = co_await AfterTlsCall(*s, r);
      if (ec) {
        result = ec;
        break;
      }
    }
    s->ReleaseTlsBuffers();
  }
  s->Disarm();
  co_return std::make_pair(result, got);
}

asio::awaitable<error_code> DoTransportWrite(std::shared_ptr<Impl> s, std::string_view data,
                                             Stream::Clock::duration timeout) {
  if (s->broken || !s->socket.is_open()) {
    co_return MakeErrorCode(NetErrc::kStreamBroken);
  }
  if (data.empty()) {
    co_return error_code();
  }
  s->Arm(Stream::Clock::now() + timeout);
  error_code result;
  if (s->ssl == nullptr) {
    auto [ec, n] = co_await asio::async_write(s->socket, asio::buffer(data.data(), data.size()),
                                              kAwait);
    result = s->Cause(ec);
  } else {
    std::size_t done = 0;
    while (done < data.size()) {
      ERR_clear_error();
      // With SSL_MODE_ENABLE_PARTIAL_WRITE each call may write part of the chunk; a
      // retry after WANT_* passes the same unwritten bytes again, as required.
      int r = SSL_write(s->ssl, data.data() + done, ClampToInt(data.size() - done));
      if (r > 0) {
        done += static_cast<std::size_t>(r);
        continue;
      }
      error_code ec = co_await AfterTlsCall(*s, r);
      if (ec) {
        result = ec;
        break;
      }
    }
    s->ReleaseTlsBuffers();
  }
  s->Disarm();
  if (result) {
    // Part of the data may have been sent; the peer's view of the stream is unknown.
    s->broken = true;
  }
  co_return result;
}

// --- COMPRESS=DEFLATE (RFC 4978): the codec sits between the session and the
// transport above; nothing here holds plaintext beyond the codec's own bounds.

// The time left until `deadline`, as a timeout for a transport operation (at least
// a millisecond; at most a day, so that a far deadline cannot overflow).
Stream::Clock::duration Remaining(Stream::Clock::time_point deadline) {
  const auto now = Stream::Clock::now();
  if (deadline - now > std::chrono::hours(24)) {
    return std::chrono::hours(24);
  }
  return std::max<Stream::Clock::duration>(deadline - now, std::chrono::milliseconds(1));
}

// Breaks the stream for a codec failure and says which.
error_code CodecFailure(Impl& s, DeflateCodec::Status status) {
  s.broken = true;
  return MakeErrorCode(status == DeflateCodec::Status::kTooLarge
                           ? NetErrc::kCompressedDataTooLarge
                           : NetErrc::kCompressedDataInvalid);
}

// Reads compressed octets from the transport into the codec.
asio::awaitable<error_code> FillCodec(std::shared_ptr<Impl> s, Stream::Clock::time_point deadline) {
  std::span<char> space = s->codec->InputSpace();
  if (space.empty()) {
    // Input left that inflates to nothing: cannot happen with a working inflater.
    co_return CodecFailure(*s, DeflateCodec::Status::kCorrupt);
  }
  auto [ec, n] = co_await DoTransportRead(s, space, Remaining(deadline));
  if (!ec && n == 0) {
    ec = asio::error::eof;
  }
  if (!ec) {
    s->codec->InputAdded(n);
  }
  co_return ec;
}

// WaitReadable under compression: input that arrives may carry no plaintext (a
// sync flush alone, or the first part of a block), so each arrival is inflated a
// little (Probe) before the wait is over.
asio::awaitable<error_code> DoCompressedWait(std::shared_ptr<Impl> s,
                                             Stream::Clock::time_point deadline) {
  s->compressed_waiting = true;
  s->wait_cancelled = false;
  error_code result;
  for (;;) {
    if (s->broken || !s->socket.is_open()) {
      result = MakeErrorCode(NetErrc::kStreamBroken);
      break;
    }
    DeflateCodec::Result probe = s->codec->Probe();
    if (probe.status == DeflateCodec::Status::kOk) {
      break;
    }
    if (probe.status != DeflateCodec::Status::kNeedInput) {
      result = CodecFailure(*s, probe.status);
      break;
    }
    if (s->wait_cancelled) {
      result = asio::error::operation_aborted;
      break;
    }
    result = co_await DoTransportWait(s, deadline);
    if (!result) {
      result = co_await FillCodec(s, deadline);
    }
    if (result) {
      break;
    }
  }
  s->compressed_waiting = false;
  s->wait_cancelled = false;
  co_return result;
}

asio::awaitable<std::pair<error_code, std::size_t>> DoCompressedRead(
    std::shared_ptr<Impl> s, std::span<char> out, Stream::Clock::duration timeout) {
  if (out.empty()) {
    co_return std::make_pair(make_error_code(asio::error::invalid_argument), std::size_t{0});
  }
  const auto deadline = Stream::Clock::now() + timeout;
  for (;;) {
    if (s->broken || !s->socket.is_open()) {
      co_return std::make_pair(MakeErrorCode(NetErrc::kStreamBroken), std::size_t{0});
    }
    DeflateCodec::Result result = s->codec->Inflate(out);
    if (result.status == DeflateCodec::Status::kOk) {
      co_return std::make_pair(error_code(), result.produced);
    }
    if (result.status != DeflateCodec::Status::kNeedInput) {
      co_return std::make_pair(CodecFailure(*s, result.status), std::size_t{0});
    }
    if (error_code ec = co_await FillCodec(s, deadline); ec) {
      co_return std::make_pair(ec, std::size_t{0});
    }
  }
}

// Input slice compressed per transport write, so a large batch never needs its
// whole compressed form in memory.
constexpr std::size_t kCompressSlice = 16 * 1024;

asio::awaitable<error_code> DoCompressedWrite(std::shared_ptr<Impl> s, std::string_view data,
                                              Stream::Clock::duration timeout) {
  if (s->broken || !s->socket.is_open()) {
    co_return MakeErrorCode(NetErrc::kStreamBroken);
  }
  const auto deadline = Stream::Clock::now() + timeout;
  if (!s->unsent.empty()) {
    // The rest of a TryWrite(): its plaintext is already compressed.
    std::string unsent = std::move(s->unsent);
    s->unsent.clear();
    if (error_code ec = co_await DoTransportWrite(s, unsent, Remaining(deadline)); ec) {
      co_return ec;
    }
  }
  data.remove_prefix(std::min(s->taken_ahead, data.size()));
  s->taken_ahead = 0;
  std::string out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::string_view slice = data.substr(pos, kCompressSlice);
    pos += slice.size();
    out.clear();
    // RFC 4978 §4: flushed at the end of each batch, so no response waits in
    // the compressor.
    if (!s->codec->Compress(slice, /*flush=*/pos == data.size(), out)) {
      s->broken = true;
      co_return MakeErrorCode(NetErrc::kStreamBroken);
    }
    if (error_code ec = co_await DoTransportWrite(s, out, Remaining(deadline)); ec) {
      co_return ec;
    }
  }
  co_return error_code();
}

asio::awaitable<error_code> DoWaitReadable(std::shared_ptr<Impl> s,
                                           Stream::Clock::time_point deadline) {
  if (s->codec != nullptr) {
    return DoCompressedWait(std::move(s), deadline);
  }
  return DoTransportWait(std::move(s), deadline);
}

asio::awaitable<std::pair<error_code, std::size_t>> DoReadSome(std::shared_ptr<Impl> s,
                                                               std::span<char> out,
                                                               Stream::Clock::duration timeout) {
  if (s->codec != nullptr) {
    return DoCompressedRead(std::move(s), out, timeout);
  }
  return DoTransportRead(std::move(s), out, timeout);
}

asio::awaitable<error_code> DoWrite(std::shared_ptr<Impl> s, std::string_view data,
                                    Stream::Clock::duration timeout) {
  if (s->codec != nullptr) {
    return DoCompressedWrite(std::move(s), data, timeout);
  }
  return DoTransportWrite(std::move(s), data, timeout);
}

asio::awaitable<error_code> DoHandshake(std::shared_ptr<Impl> s, std::shared_ptr<SSL_CTX> ctx,
                                        Stream::Clock::duration timeout) {
  if (s->ssl != nullptr) {
    co_return MakeErrorCode(NetErrc::kAlreadyTls);
  }
  if (s->codec != nullptr) {
    // RFC 4978 §3: compression runs inside TLS, never the other way round.
    co_return MakeErrorCode(NetErrc::kCompressionActive);
  }
  if (s->broken || !s->socket.is_open()) {
    co_return MakeErrorCode(NetErrc::kStreamBroken);
  }
  if (ctx == nullptr) {
    co_return make_error_code(asio::error::invalid_argument);
  }
  // The SSL object and the library's handshake buffers (about 40 KiB with OpenSSL 3)
  // are made only once the ClientHello's first bytes have arrived: a connection that
  // never speaks costs the socket, this frame and a timer, not a TLS state.
  s->Arm(Stream::Clock::now() + timeout);
  if (error_code ec = co_await WaitSocket(*s, tcp::socket::wait_read); ec) {
    s->Disarm();
    s->broken = true;
    co_return ec;
  }
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx.get());  // takes its own reference on ctx
  BIO* bio = ssl != nullptr ? BIO_new(SocketBioMethod()) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl);
    s->Disarm();
    s->broken = true;
    co_return s->TlsError(SSL_ERROR_SSL);
  }
  BIO_set_data(bio, s.get());
  SSL_set_bio(ssl, bio, bio);
  SSL_set_accept_state(ssl);
  s->ssl = ssl;  // so that TlsError() and the destructor see it

  // The deadline armed above covers the whole handshake.
  error_code result;
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
      break;
    }
    error_code ec = co_await AfterTlsCall(*s, r);
    if (ec) {
      // A peer that closes during the handshake truncated it.
      result = ec == asio::error::eof ? MakeErrorCode(NetErrc::kTlsTruncated) : ec;
      break;
    }
  }
  s->Disarm();
  if (result) {
    // The half-made SSL object is freed now rather than with the connection.
    s->ssl = nullptr;
    SSL_free(ssl);
    s->broken = true;
  } else {
    s->ReleaseTlsBuffers();
  }
  co_return result;
}

asio::awaitable<std::pair<error_code, std::size_t>> DoPeek(std::shared_ptr<Impl> s,
                                                           std::span<char> out,
                                                           Stream::Clock::time_point deadline) {
  if (s->broken || !s->socket.is_open() || s->ssl != nullptr) {
    co_return std::make_pair(MakeErrorCode(NetErrc::kStreamBroken), std::size_t{0});
  }
  if (out.empty()) {
    co_return std::make_pair(make_error_code(asio::error::invalid_argument), std::size_t{0});
  }
  s->Arm(deadline);
  error_code result;
  std::size_t got = 0;
  for (;;) {
    auto [ec] = co_await s->socket.async_wait(tcp::socket::wait_read, kAwait);
    if (ec) {
      result = s->Cause(ec);
      break;
    }
    ssize_t n = ::recv(s->socket.native_handle(), out.data(), out.size(),
                       MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      got = static_cast<std::size_t>(n);
      break;
    }
    if (n == 0) {
      result = asio::error::eof;
      break;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      result = error_code(errno, boost::system::system_category());
      break;
    }
  }
  s->Disarm();
  co_return std::make_pair(result, got);
}

asio::awaitable<void> DoShutdown(std::shared_ptr<Impl> s, Stream::Clock::duration timeout) {
  if (s->ssl != nullptr && !s->broken && s->socket.is_open()) {
    s->Arm(Stream::Clock::now() + timeout);
    for (;;) {
      ERR_clear_error();
      // Returns 0 once our close_notify is sent; we do not wait for the peer's.
      int r = SSL_shutdown(s->ssl);
      if (r >= 0) {
        break;
      }
      int err = SSL_get_error(s->ssl, r);
      if (err != SSL_ERROR_WANT_WRITE) {
        break;
      }
      error_code ec = co_await WaitSocket(*s, tcp::socket::wait_write);
      if (ec) {
        break;
      }
    }
    ERR_clear_error();
    s->Disarm();
  }
  s->broken = true;
  error_code ignored;
  if (s->socket.is_open()) {
    s->socket.shutdown(tcp::socket::shutdown_send, ignored);
    s->socket.close(ignored);
  }
}

}  // namespace

Stream::Stream(tcp::socket socket) : impl_(std::make_shared<Impl>(std::move(socket))) {}
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    Close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
Stream::~Stream() { Close(); }

asio::awaitable<error_code> Stream::WaitReadable(Clock::time_point deadline) {
  return DoWaitReadable(impl_, deadline);
}

asio::awaitable<std::pair<error_code, std::size_t>> Stream::ReadSome(std::span<char> out,
                                                                     Clock::duration timeout) {
  return DoReadSome(impl_, out, timeout);
}

asio::awaitable<error_code> Stream::Write(std::string_view data, Clock::duration timeout) {
  return DoWrite(impl_, data, timeout);
}

asio::awaitable<error_code> Stream::Handshake(std::shared_ptr<SSL_CTX> ctx,
                                              Clock::duration timeout) {
  return DoHandshake(impl_, std::move(ctx), timeout);
}

asio::awaitable<void> Stream::Shutdown(Clock::duration timeout) {
  return DoShutdown(impl_, timeout);
}

asio::awaitable<std::pair<error_code, std::size_t>> Stream::Peek(std::span<char> out,
                                                                 Clock::time_point deadline) {
  return DoPeek(impl_, out, deadline);
}

bool Stream::Consume(std::size_t n) {
  if (impl_ == nullptr || impl_->ssl != nullptr || !impl_->socket.is_open()) {
    return false;
  }
  char sink[512];
  while (n > 0) {
    ssize_t got = ::recv(impl_->socket.native_handle(), sink, std::min(n, sizeof(sink)),
                         MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      return false;
    }
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

std::size_t Stream::DiscardReadable() {
  if (impl_ == nullptr || impl_->ssl != nullptr || impl_->codec != nullptr ||
      !impl_->socket.is_open()) {
    return 0;
  }
  std::size_t dropped = 0;
  char sink[4096];
  for (;;) {
    ssize_t n = ::recv(impl_->socket.native_handle(), sink, sizeof(sink), MSG_DONTWAIT);
    if (n > 0) {
      dropped += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return dropped;  // EAGAIN, EOF (the next read reports it) or an error
  }
}

namespace {

std::pair<error_code, std::size_t> TransportTryWrite(Impl* s, std::string_view data) {
  std::size_t done = 0;
  error_code result;
  if (s->ssl == nullptr) {
    while (done < data.size()) {
      ssize_t n = ::send(s->socket.native_handle(), data.data() + done, data.size() - done,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        done += static_cast<std::size_t>(n);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else if (errno != EINTR) {
        result = error_code(errno, boost::system::system_category());
        break;
      }
    }
  } else {
    while (done < data.size()) {
      ERR_clear_error();
      int r = SSL_write(s->ssl, data.data() + done, ClampToInt(data.size() - done));
      if (r > 0) {
        done += static_cast<std::size_t>(r);
        continue;
      }
      const int err = SSL_get_error(s->ssl, r);
      if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) {
        result = s->TlsError(err);
      }
      break;
    }
    if (done == data.size()) {
      s->ReleaseTlsBuffers();
    }
  }
  if (result) {
    s->broken = true;
  }
  return {result, done};
}

}  // namespace

std::pair<error_code, std::size_t> Stream::TryWrite(std::string_view data) {
  Impl* s = impl_.get();
  if (s == nullptr || s->broken || !s->socket.is_open()) {
    return {MakeErrorCode(NetErrc::kStreamBroken), 0};
  }
  if (s->codec == nullptr) {
    return TransportTryWrite(s, data);
  }
  if (!s->unsent.empty() || data.empty()) {
    return {error_code(), 0};  // the rest of an earlier TryWrite goes first (Write)
  }
  std::string out;
  if (!s->codec->Compress(data, /*flush=*/true, out)) {
    s->broken = true;
    return {MakeErrorCode(NetErrc::kStreamBroken), 0};
  }
  auto [ec, sent] = TransportTryWrite(s, out);
  if (ec || sent == out.size()) {
    return {ec, ec ? 0 : data.size()};
  }
  // All of `data` is in the compressor already: the stream keeps the compressed
  // rest, and the Write() of data.substr(0) that must follow sends it instead of
  // compressing `data` again.
  s->unsent = out.substr(sent);
  s->taken_ahead = data.size();
  return {error_code(), 0};
}

error_code Stream::StartCompression() {
  Impl* s = impl_.get();
  if (s == nullptr || s->broken || !s->socket.is_open()) {
    return MakeErrorCode(NetErrc::kStreamBroken);
  }
  if (s->codec != nullptr) {
    return MakeErrorCode(NetErrc::kCompressionActive);
  }
  s->codec = DeflateCodec::Create();
  if (s->codec == nullptr) {
    return make_error_code(boost::system::errc::not_enough_memory);
  }
  return error_code();
}

bool Stream::is_compressed() const { return impl_ != nullptr && impl_->codec != nullptr; }

std::string Stream::compression_error() const {
  return impl_ != nullptr && impl_->codec != nullptr ? impl_->codec->error() : std::string();
}

void Stream::CancelWait() {
  if (impl_ != nullptr && impl_->compressed_waiting) {
    impl_->wait_cancelled = true;
  }
  if (impl_ != nullptr && impl_->waiting_readable) {
    error_code ignored;
    impl_->socket.cancel(ignored);
  }
}

void Stream::Close() {
  if (impl_ != nullptr) {
    error_code ignored;
    impl_->broken = true;
    impl_->timer.cancel();
    impl_->socket.close(ignored);
  }
}

void Stream::Closer::Close() const {
  if (std::shared_ptr<Impl> impl = impl_.lock()) {
    error_code ignored;
    impl->broken = true;
    impl->socket.close(ignored);
  }
}

Stream::Closer Stream::GetCloser() const {
  Closer closer;
  closer.impl_ = impl_;
  return closer;
}

bool Stream::is_tls() const { return impl_ != nullptr && impl_->ssl != nullptr; }
bool Stream::is_open() const { return impl_ != nullptr && impl_->socket.is_open(); }
const tcp::endpoint& Stream::remote_endpoint() const { return impl_->remote; }
const tcp::endpoint& Stream::local_endpoint() const { return impl_->local; }

std::string_view Stream::tls_version() const {
  if (!is_tls()) {
    return {};
  }
  return SSL_get_version(impl_->ssl);
}

std::string_view Stream::tls_cipher() const {
  if (!is_tls()) {
    return {};
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(impl_->ssl);
  return cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
}

SSL* Stream::native_ssl() const { return impl_ != nullptr ? impl_->ssl : nullptr; }

std::size_t Stream::ApproximateMemory() const {
  if (impl_ == nullptr) {
    return 0;
  }
  std::size_t total = sizeof(Impl) + kReactorStateEstimate;
  if (impl_->codec != nullptr) {
    total += impl_->codec->ApproximateMemory() + impl_->unsent.capacity();
  }
  if (impl_->ssl != nullptr) {
    total += kIdleSslEstimate;
    if (SSL_has_pending(impl_->ssl)) {
      total += kRecordBuffer;  // a record (or part of one) is held in the read buffer
    }
  }
  return total;
}

asio::any_io_executor Stream::get_executor() const { return impl_->socket.get_executor(); }

}  // namespace gateway::net
