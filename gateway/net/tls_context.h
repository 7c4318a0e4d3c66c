// Server TLS configuration for IMAPS (port 993) and STARTTLS (port 143), and its
// reload without a restart.
//
// Policy (RFC 8314 §4.1, RFC 9051 §11.1, RFC 9325 §4): TLS 1.2 and 1.3 only; for
// TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); no
// compression (CRIME), no renegotiation, stateless session tickets and no server-side
// session cache (gateway replicas share nothing). Buffers are released while idle.
//
// ALPN (RFC 7301): a client that offers protocols must offer "imap" (RFC 9051 §11.1
// / the IANA registry), or the handshake fails with no_application_protocol. This
// closes the cross-protocol attacks of ALPACA (a browser's HTTPS request redirected
// to the IMAP port and interpreted as commands): browsers always offer ALPN, never
// "imap". A client that offers no ALPN at all is served, as IMAP clients mostly do.
//
// Session tickets (RFC 5077 for TLS 1.2, RFC 8446 §4.6.1 for TLS 1.3) are encrypted
// under keys that this process makes itself and rotates (TicketKeyRing): a stolen key
// opens only the sessions of the last two rotation intervals, not every session since
// start-up (RFC 8446 §C.4, RFC 9325 §3.4).
//
// Works with OpenSSL 3 and with BoringSSL (`--config=boringssl`).
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "gateway/net/log.h"

namespace gateway::net {

// The certificate chain (PEM, leaf first) and the private key (PEM) of the server.
struct TlsFiles {
  std::string cert_chain_file;
  std::string private_key_file;
};

// The session-ticket keys: one current key that encrypts new tickets, and the one it
// replaced, which still decrypts (and causes a fresh ticket to be issued), so a
// rotation does not cost every client a full handshake. A key is made at random when
// it becomes current; keys never leave the process. Thread-safe.
class TicketKeyRing {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  struct Key {
    std::array<unsigned char, 16> name{};  // sent in the ticket, picks the key
    std::array<unsigned char, 32> aes{};   // AES-256-CBC
    std::array<unsigned char, 32> hmac{};  // HMAC-SHA256
    std::chrono::steady_clock::time_point made;
  };
  enum class Match { kNone, kCurrent, kPrevious };

  // `interval` must be positive; `clock` is injectable for tests.
  explicit TicketKeyRing(std::chrono::steady_clock::duration interval,
                         Clock clock = &std::chrono::steady_clock::now);

  // The key for a new ticket (rotating first when the current one is due).
  Key ForEncryption();
  // The key named by a ticket, if it is still accepted.
  Match ForDecryption(const unsigned char* name, Key* out);
  // How many keys have been made (1 after construction).
  uint64_t keys_made() const;
  std::chrono::steady_clock::duration interval() const { return interval_; }

 private:
  void RotateIfDue();  // with mutex_ held

  const std::chrono::steady_clock::duration interval_;
  const Clock clock_;
  mutable std::mutex mutex_;
  Key current_;
  std::optional<Key> previous_;
  uint64_t keys_made_ = 0;
};

// Builds a fresh server SSL_CTX with the policy above and the given certificate and
// key. Errors name the file and OpenSSL's reason (missing file, bad PEM, key that
// does not match the certificate). Tickets use `tickets` (shared by the contexts of
// one provider, so a certificate reload keeps resumption working); null disables
// session tickets altogether.
absl::StatusOr<std::shared_ptr<SSL_CTX>> NewServerTlsContext(
    const TlsFiles& files, std::shared_ptr<TicketKeyRing> tickets);
// The same with a ring of its own rotated every kDefaultTicketKeyRotation.
absl::StatusOr<std::shared_ptr<SSL_CTX>> NewServerTlsContext(const TlsFiles& files);

// One hour: with the previous key still accepted, a ticket stays usable for up to two
// hours; the TLS session lifetime is set to twice the rotation interval to match.
inline constexpr std::chrono::hours kDefaultTicketKeyRotation{1};

// Holds the current server SSL_CTX and replaces it when the certificate files change.
// New connections take Current(); an SSL object keeps a reference to the SSL_CTX it
// was made from, so connections established earlier keep working after a reload.
//
// Thread-safe: Current(), Reload() and ReloadIfChanged() may be called from any thread
// (worker threads, the SIGHUP handler, the watcher).
class TlsContextProvider : public std::enable_shared_from_this<TlsContextProvider> {
 public:
  // Loads `files` once; fails if they are missing or invalid. Session-ticket keys
  // rotate every `ticket_key_rotation`; zero disables session tickets.
  static absl::StatusOr<std::shared_ptr<TlsContextProvider>> Create(
      TlsFiles files, LogSink log = {},
      std::chrono::steady_clock::duration ticket_key_rotation = kDefaultTicketKeyRotation);

  TlsContextProvider(const TlsContextProvider&) = delete;
  TlsContextProvider& operator=(const TlsContextProvider&) = delete;
  ~TlsContextProvider();

  // The newest valid context. Never null.
  std::shared_ptr<SSL_CTX> Current() const;

  // Re-reads both files. Swaps in the new context only if the pair is valid; on error
  // the previous context stays current, the error is logged and returned. This is the
  // hook for the gateway's SIGHUP handler.
  absl::Status Reload();

  // Reloads if the files' identity (inode, size, mtime, ctime) differs from the last
  // successful or failed attempt. Returns true if a new context was installed. A file
  // that is replaced by renaming (Kubernetes secret volumes swap a symlink) counts as
  // changed because stat(2) follows the link.
  absl::StatusOr<bool> ReloadIfChanged();

  // Number of successful loads, starting at 1 after Create().
  uint64_t generation() const;

  // Polls the files every `interval` on `executor` (a timer loop; no thread of its
  // own) and calls ReloadIfChanged(). Runs until StopWatching() or until the provider
  // is destroyed. Calling it again restarts the loop with the new interval; an
  // interval <= 0 only stops the current loop (reload on SIGHUP only).
  void StartWatching(boost::asio::any_io_executor executor,
                     std::chrono::steady_clock::duration interval);
  // Stops the polling loop; safe from any thread.
  void StopWatching();

 private:
  struct FileIdentity;
  struct Watch;

  TlsContextProvider(TlsFiles files, LogSink log, std::shared_ptr<TicketKeyRing> tickets);
  absl::StatusOr<bool> DoReload(bool only_if_changed);

  const TlsFiles files_;
  const LogSink log_;
  const std::shared_ptr<TicketKeyRing> tickets_;  // null: no session tickets

  // Serialises reloads so that files are read outside `mutex_`: Current() never
  // waits for disk I/O.
  std::mutex reload_mutex_;
  std::unique_ptr<FileIdentity> seen_;  // identity at the last attempt; reload_mutex_

  mutable std::mutex mutex_;  // guards the fields below
  std::shared_ptr<SSL_CTX> current_;
  uint64_t generation_ = 0;
  std::shared_ptr<Watch> watch_;
};

}  // namespace gateway::net
