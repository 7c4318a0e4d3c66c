// The byte stream an IMAP session talks over: one type for plain TCP and for TLS, so
// session code is written once and STARTTLS upgrades a connection in place.
//
// Why not boost::asio::ssl::stream: it keeps ~68 KiB of fixed buffers per connection
// while idle. Here the SSL object reads and writes the socket directly through a
// small custom BIO (recv/send with MSG_DONTWAIT), so ciphertext waits in the kernel
// until the TLS library asks for it, and the library's own record buffers exist only
// while a record is being read or written (SSL_MODE_RELEASE_BUFFERS, plus
// SSL_free_buffers after each operation; BoringSSL releases them by itself). An idle
// connection parked in WaitReadable() holds no buffer at all.
//
// Usage from a session coroutine (every call has a deadline; errors are values):
//
//   for (;;) {
//     if (auto ec = co_await stream.WaitReadable(idle_deadline)) { ... }  // no buffer held
//     std::string chunk(4096, '\0');                                   // now allocate
//     auto [ec, n] = co_await stream.ReadSome(chunk, std::chrono::seconds(30));
//     ...
//     ec = co_await stream.Write(response, std::chrono::seconds(30));
//   }
//
// STARTTLS (RFC 3501 §6.2.1, RFC 9051 §6.2.1; the injection described in RFC 3207 §6
// and CVE-2011-0411): after reading the STARTTLS command line the session must
//   1. drop every byte it has buffered after that line,
//   2. call DiscardReadable() to drop what already sits in the kernel, *before*
//      writing the tagged OK (a client must not send anything before it sees the OK,
//      so anything there was pipelined in plaintext),
//   3. write the tagged OK, then co_await Handshake(ctx, timeout).
// The Stream itself never buffers plaintext, so nothing else can survive the upgrade.
// A client that still manages to get plaintext in after the OK fails the handshake.
//
// Threading: a Stream belongs to the thread of its socket's executor (one io_context
// per worker). At most one operation runs at a time; CancelWait(), TryWrite() and
// Close() may be called from other code on that same thread while WaitReadable() is
// pending.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/system/error_code.hpp"
#include "gateway/net/errors.h"

namespace gateway::net {
namespace internal {
struct StreamState;  // defined in stream.cc
}  // namespace internal

class Stream {
 public:
  using Clock = std::chrono::steady_clock;
  using error_code = boost::system::error_code;
  template <typename T>
  using awaitable = boost::asio::awaitable<T>;

  class Closer;  // defined below

  // Takes an open, connected socket. The stream starts in plain mode.
  explicit Stream(boost::asio::ip::tcp::socket socket);
  // Moving is allowed only while no operation is pending; a moved-from Stream may only
  // be destroyed or assigned to.
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  // Closes the socket (no TLS close_notify: use Shutdown() for a polite close).
  ~Stream();

  // Completes when ReadSome() will not have to wait for the peer: decrypted data is
  // available (TLS) or the socket is readable (plain; this includes the peer's EOF,
  // which the next ReadSome() reports). Holds no buffer while waiting, which is what
  // keeps idle connections cheap. In TLS mode it processes records that carry no
  // application data (TLS 1.3 KeyUpdate, alerts) and keeps waiting.
  // Errors: asio::error::timed_out at `deadline`; operation_aborted after CancelWait()
  // or Close(); eof / NetErrc::kTlsTruncated when the peer closed; TlsCategory() for
  // a TLS protocol error.
  awaitable<error_code> WaitReadable(Clock::time_point deadline);

  // Reads at least one byte into `out` (decrypted in TLS mode). `out` must stay valid
  // until completion and must not be empty. Errors as for WaitReadable, with
  // timed_out after `timeout`. A timeout leaves the stream usable.
  awaitable<std::pair<error_code, std::size_t>> ReadSome(std::span<char> out,
                                                         Clock::duration timeout);

  // Writes all of `data` (encrypted in TLS mode) or fails. `data` must stay valid until
  // completion. On any error, including timed_out, the stream is broken: later
  // operations fail with NetErrc::kStreamBroken.
  awaitable<error_code> Write(std::string_view data, Clock::duration timeout);

  // Writes what the socket takes now, never waiting, and returns how many leading bytes
  // of `data` were taken. Unlike the other operations it may run while a
  // WaitReadable() is pending, which it leaves alone (no re-arm of its deadline, no
  // change to its registration): an IDLE session writes its updates this way and keeps
  // waiting for DONE. If fewer than data.size() bytes were taken, the caller must pass
  // the rest, data.substr(n), to Write() before anything else is written (in TLS mode
  // the library may hold a record it has sent only in part; Write() finishes it). On
  // an error the stream is broken, as for Write().
  std::pair<error_code, std::size_t> TryWrite(std::string_view data);

  // COMPRESS=DEFLATE (RFC 4978): from now on everything written is compressed with
  // raw DEFLATE, flushed at the end of each Write() and TryWrite() (§4), and
  // everything read is inflated; the layer sits above TLS (compressed data is
  // encrypted, §3) and its bounds are in gateway/net/deflate.h. Call it right after
  // writing the tagged OK, with nothing of the peer's read beyond the COMPRESS
  // command. Then:
  //  * WaitReadable() completes only once the received data inflates to at least
  //    one octet (a sync flush alone does not count).
  //  * ReadSome() delivers at most out.size() inflated octets per call, however
  //    well the peer's data compresses.
  //  * Invalid DEFLATE data, or data that expands beyond the codec's ratio, fails
  //    a read with NetErrc::kCompressedDataInvalid / kCompressedDataTooLarge and
  //    breaks the stream (nothing more can be said to a peer whose stream cannot be
  //    decoded); compression_error() says what was wrong.
  //  * TryWrite() compresses all of `data`; when the socket does not take all of
  //    the result, it returns 0 and keeps the compressed rest, which the following
  //    Write() of `data` (as the contract below requires) sends in its place.
  // Fails with NetErrc::kCompressionActive if compression is already on, and with
  // not_enough_memory if zlib cannot allocate its state.
  error_code StartCompression();
  bool is_compressed() const;
  // Why the peer's compressed data was refused; "" if it was not.
  std::string compression_error() const;

  // Runs the server side of a TLS handshake with `ctx` (from
  // TlsContextProvider::Current()); used right after accept for implicit TLS
  // (RFC 8314 §3.3) and in place for STARTTLS. On success is_tls() becomes true; on
  // failure (timeout, garbage instead of a ClientHello, no shared version or cipher)
  // the stream is broken and the error says why (TlsCategory() carries the library's
  // reason). Fails with NetErrc::kAlreadyTls if TLS is already active, and with
  // kCompressionActive under compression.
  awaitable<error_code> Handshake(std::shared_ptr<SSL_CTX> ctx, Clock::duration timeout);

  // Plain mode only; for a header that precedes the protocol, such as the PROXY
  // protocol's (listener.cc), which must be taken off the socket without taking any
  // of what follows. Waits until the socket is readable or `deadline`, then copies up
  // to out.size() received bytes into `out` *without consuming them*. Errors as for
  // WaitReadable; the peer's EOF is asio::error::eof.
  awaitable<std::pair<error_code, std::size_t>> Peek(std::span<char> out,
                                                     Clock::time_point deadline);

  // Plain mode only: consumes exactly `n` bytes that Peek() has shown (so they are in
  // the kernel already); never waits. False if fewer than `n` could be taken.
  bool Consume(std::size_t n);

  // Drops the bytes already received in plain mode and returns how many; never waits.
  // See the STARTTLS recipe above. Returns 0 in TLS mode and under compression.
  std::size_t DiscardReadable();

  // Polite close: sends a TLS close_notify (without waiting for the peer's, as
  // RFC 8446 §6.1 allows), shuts down the sending side, closes the socket. Never
  // fails; bounded by `timeout`.
  awaitable<void> Shutdown(Clock::duration timeout = std::chrono::seconds(5));

  // Makes a pending WaitReadable() complete with operation_aborted (for example to let
  // an IDLE session send updates). No effect if no WaitReadable() is pending.
  void CancelWait();

  // Closes the socket now; a pending operation completes with operation_aborted.
  void Close();

  // A weak handle that can Close() the stream later without keeping it alive; used by
  // the worker pool to end sessions at the drain deadline. Same-thread only.
  Closer GetCloser() const;

  bool is_tls() const;
  bool is_open() const;
  // Endpoints as seen at construction (still valid after the peer disconnects).
  const boost::asio::ip::tcp::endpoint& remote_endpoint() const;
  const boost::asio::ip::tcp::endpoint& local_endpoint() const;
  // Negotiated protocol and cipher ("TLSv1.3", "TLS_AES_128_GCM_SHA256"), or "" in
  // plain mode.
  std::string_view tls_version() const;
  std::string_view tls_cipher() const;
  // The SSL object in TLS mode (for peer certificate or ALPN queries), else nullptr.
  // Owned by the Stream.
  SSL* native_ssl() const;

  // Estimate of the memory this connection holds in user space, for diagnostics:
  // this object, the reactor's per-socket state, the SSL object and, when the TLS
  // library still buffers a record, that buffer; under compression, the codec's
  // states and buffers. Not an exact count.
  std::size_t ApproximateMemory() const;

  boost::asio::any_io_executor get_executor() const;

 private:
  std::shared_ptr<internal::StreamState> impl_;
};

// See Stream::GetCloser().
class Stream::Closer {
 public:
  Closer() = default;
  // Closes the stream if it still exists.
  void Close() const;

 private:
  friend class Stream;
  std::weak_ptr<internal::StreamState> impl_;
};

}  // namespace gateway::net
