#include "gateway/net/tls_context.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "gateway/net/errors.h"

namespace gateway::net {
namespace {

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only, as RFC 9325 §4.2 recommends.
// TLS 1.3 suites are all AEAD; the defaults (no CCM) are kept explicitly below.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Why stat(2) fails is the most useful error for an operator; OpenSSL's own message
// for a missing file is less direct.
absl::Status CheckReadable(const std::string& kind, const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no TLS ", kind, " file configured"));
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot read TLS ", kind, " file ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS ", kind, " file ", path, " is not a regular file"));
  }
  return absl::OkStatus();
}

// A TLS session's lifetime, and so a ticket's: two rotation intervals, the longest a
// ticket's key is accepted; at most the 7 days RFC 8446 §4.6.1 allows.
long SessionLifetimeSeconds(const TicketKeyRing* tickets) {
  constexpr long kWithoutTickets = 2 * 60 * 60;
  constexpr long kMost = 7 * 24 * 60 * 60;
  if (tickets == nullptr) {
    return kWithoutTickets;
  }
  const long seconds = static_cast<long>(
      std::chrono::duration_cast<std::chrono::seconds>(2 * tickets->interval()).count());
  return std::clamp(seconds, 1L, kMost);
}

// RFC 7301 §3.2: select "imap" if the client offers it; if it offers ALPN without
// it, fail with no_application_protocol (ALPACA, see tls_context.h). Not called at
// all when the client offers no ALPN.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_length,
               const unsigned char* in, unsigned int in_length, void*) {
  static constexpr unsigned char kImap[] = {'i', 'm', 'a', 'p'};
  unsigned int at = 0;
  while (at < in_length) {
    const unsigned int length = in[at];
    if (length == 0 || at + 1 + length > in_length) {
      break;  // malformed list: the library would have refused it already
    }
    if (length == sizeof(kImap) && std::memcmp(in + at + 1, kImap, sizeof(kImap)) == 0) {
      *out = in + at + 1;
      *out_length = static_cast<unsigned char>(length);
      return SSL_TLSEXT_ERR_OK;
    }
    at += 1 + length;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;  // sends no_application_protocol (RFC 7301 §3.2)
}

// The SSL_CTX keeps a reference to its ring in its ex_data, released with the SSL_CTX.
void FreeRing(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<TicketKeyRing>*>(ptr);
}

int RingIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &FreeRing);
  return index;
}

// RFC 5077 §4 recommended ticket protection (key name, AES-256-CBC, HMAC-SHA256), in
// the form SSL_CTX_set_tlsext_ticket_key_cb has in OpenSSL 3 and BoringSSL alike.
// Returns 1 (ticket made / accepted), 2 (accepted, issue a fresh one), 0 (unknown
// key: full handshake), -1 (error).
int TicketKeyCallback(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                      EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac, int encrypt) {
  auto* ring = static_cast<std::shared_ptr<TicketKeyRing>*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), RingIndex()));
  if (ring == nullptr || *ring == nullptr) {
    return -1;
  }
  TicketKeyRing::Key key;
  int result = 1;
  if (encrypt != 0) {
    key = (*ring)->ForEncryption();
    if (RAND_bytes(iv, 16) != 1) {
      return -1;
    }
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) {
      result = -1;
    }
  } else {
    TicketKeyRing::Match match = (*ring)->ForDecryption(key_name, &key);
    if (match == TicketKeyRing::Match::kNone) {
      return 0;
    }
    result = match == TicketKeyRing::Match::kCurrent ? 1 : 2;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) {
      result = -1;
    }
  }
  if (result > 0 &&
      HMAC_Init_ex(hmac, key.hmac.data(), static_cast<int>(key.hmac.size()), EVP_sha256(),
                   nullptr) != 1) {
    result = -1;
  }
  OPENSSL_cleanse(&key, sizeof(key));
  return result;
}

TicketKeyRing::Key MakeKey(std::chrono::steady_clock::time_point now) {
  TicketKeyRing::Key key;
  key.made = now;
  if (RAND_bytes(key.name.data(), key.name.size()) != 1 ||
      RAND_bytes(key.aes.data(), key.aes.size()) != 1 ||
      RAND_bytes(key.hmac.data(), key.hmac.size()) != 1) {
    // The library's random generator failed; no handshake can succeed then either.
    // A zero key must never protect a ticket: mark it unusable.
    key.name.fill(0);
  }
  return key;
}

bool Usable(const TicketKeyRing::Key& key) {
  for (unsigned char c : key.name) {
    if (c != 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

TicketKeyRing::TicketKeyRing(std::chrono::steady_clock::duration interval, Clock clock)
    : interval_(interval > std::chrono::steady_clock::duration::zero()
                    ? interval
                    : std::chrono::steady_clock::duration(kDefaultTicketKeyRotation)),
      clock_(std::move(clock)) {
  current_ = MakeKey(clock_());
  keys_made_ = 1;
}

void TicketKeyRing::RotateIfDue() {
  const auto now = clock_();
  if (now - current_.made < interval_) {
    return;
  }
  // The current key's tickets stay readable for one more interval; if a whole
  // interval passed without a rotation, they are too old for that as well.
  if (now - current_.made < 2 * interval_) {
    previous_ = current_;
  } else {
    previous_.reset();
  }
  OPENSSL_cleanse(&current_, sizeof(current_));
  current_ = MakeKey(now);
  ++keys_made_;
}

TicketKeyRing::Key TicketKeyRing::ForEncryption() {
  std::lock_guard<std::mutex> lock(mutex_);
  RotateIfDue();
  return current_;
}

TicketKeyRing::Match TicketKeyRing::ForDecryption(const unsigned char* name, Key* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  RotateIfDue();
  if (Usable(current_) && std::memcmp(name, current_.name.data(), current_.name.size()) == 0) {
    *out = current_;
    return Match::kCurrent;
  }
  if (previous_.has_value() && Usable(*previous_) &&
      std::memcmp(name, previous_->name.data(), previous_->name.size()) == 0) {
    *out = *previous_;
    return Match::kPrevious;
  }
  return Match::kNone;
}

uint64_t TicketKeyRing::keys_made() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return keys_made_;
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> NewServerTlsContext(const TlsFiles& files) {
  return NewServerTlsContext(files, std::make_shared<TicketKeyRing>(kDefaultTicketKeyRotation));
}

absl::StatusOr<std::shared_ptr<SSL_CTX>> NewServerTlsContext(
    const TlsFiles& files, std::shared_ptr<TicketKeyRing> tickets) {
  if (absl::Status s = CheckReadable("certificate", files.cert_chain_file); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckReadable("private key", files.private_key_file); !s.ok()) {
    return s;
  }
  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  if (ctx == nullptr) {
    return absl::InternalError(absl::StrCat("SSL_CTX_new: ", DrainTlsErrors()));
  }
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return absl::InternalError(absl::StrCat("setting TLS versions: ", DrainTlsErrors()));
  }
#ifdef OPENSSL_IS_BORINGSSL
  // BoringSSL has no compression and refuses renegotiation as a server.
  if (SSL_CTX_set_strict_cipher_list(c, kTls12Ciphers) != 1) {
    return absl::InternalError(absl::StrCat("setting ciphers: ", DrainTlsErrors()));
  }
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
#else
  if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(
          c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") !=
          1) {
    return absl::InternalError(absl::StrCat("setting ciphers: ", DrainTlsErrors()));
  }
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                             SSL_OP_NO_RENEGOTIATION);
  // One ticket is enough for an IMAP client, which resumes one connection at a time.
  SSL_CTX_set_num_tickets(c, 1);
#endif
  // Release the read and write buffers whenever they are empty: an idle connection
  // then holds no 17 KiB record buffers. SSL_MODE_RELEASE_BUFFERS does not exist in
  // BoringSSL, which always releases them.
  long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
#ifdef SSL_MODE_RELEASE_BUFFERS
  mode |= SSL_MODE_RELEASE_BUFFERS;
#endif
  SSL_CTX_set_mode(c, mode);
  // Replicas share no state, so a server-side session cache would only cost memory;
  // resumption uses stateless tickets (RFC 8446 §4.6.1, RFC 5077).
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  const long lifetime = SessionLifetimeSeconds(tickets.get());
  SSL_CTX_set_timeout(c, lifetime);
#ifdef OPENSSL_IS_BORINGSSL
  // BoringSSL gives TLS 1.3 resumption its own, longer (7-day) default.
  SSL_CTX_set_session_psk_dhe_timeout(c, static_cast<uint32_t>(lifetime));
#endif
  if (tickets != nullptr) {
    // The ring decides which key protects and opens each ticket, for TLS 1.2 and 1.3.
    if (SSL_CTX_set_ex_data(c, RingIndex(), new std::shared_ptr<TicketKeyRing>(tickets)) != 1) {
      return absl::InternalError(absl::StrCat("storing ticket keys: ", DrainTlsErrors()));
    }
    SSL_CTX_set_tlsext_ticket_key_cb(c, &TicketKeyCallback);
  } else {
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
#ifndef OPENSSL_IS_BORINGSSL
    SSL_CTX_set_num_tickets(c, 0);
#endif
  }
  SSL_CTX_set_alpn_select_cb(c, &SelectAlpn, nullptr);

  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(c, files.cert_chain_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("loading TLS certificate chain ",
                                                    files.cert_chain_file, ": ",
                                                    DrainTlsErrors()));
  }
  // Read the key ourselves so that a key belonging to another certificate gets its
  // own message (SSL_CTX_use_PrivateKey_file would report a terse "values mismatch").
  EVP_PKEY* key = nullptr;
  if (BIO* bio = BIO_new_file(files.private_key_file.c_str(), "r"); bio != nullptr) {
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("loading TLS private key ",
                                                    files.private_key_file, ": ",
                                                    DrainTlsErrors()));
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_owner(key, &EVP_PKEY_free);
  X509* leaf = SSL_CTX_get0_certificate(c);
  if (leaf == nullptr || X509_check_private_key(leaf, key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("TLS private key ", files.private_key_file,
                     " does not match certificate ", files.cert_chain_file));
  }
  if (SSL_CTX_use_PrivateKey(c, key) != 1 || SSL_CTX_check_private_key(c) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("using TLS private key ",
                                                    files.private_key_file, ": ",
                                                    DrainTlsErrors()));
  }
  return ctx;
}

// Identity of both files as stat(2) reports it; a changed field means "re-read".
struct TlsContextProvider::FileIdentity {
  struct One {
    int error = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const One&) const = default;
  };
  One cert;
  One key;
  bool operator==(const FileIdentity&) const = default;

  static One Of(const std::string& path) {
    One one;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      one.error = errno;
      return one;
    }
    one.dev = st.st_dev;
    one.ino = st.st_ino;
    one.size = st.st_size;
    one.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    one.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
    return one;
  }
};

struct TlsContextProvider::Watch {
  explicit Watch(boost::asio::any_io_executor executor) : timer(std::move(executor)) {}
  boost::asio::steady_timer timer;
  std::atomic<bool> stopped{false};
};

namespace {

// A free function rather than a lambda: the coroutine's state lives in its parameters,
// not in a closure that dies first. It holds the provider weakly so that destroying the provider
// ends the loop at the next tick.
boost::asio::awaitable<void> WatchLoop(std::weak_ptr<TlsContextProvider> weak,
                                       std::shared_ptr<void> watch_keepalive,
                                       boost::asio::steady_timer* timer,
                                       const std::atomic<bool>* stopped,
                                       std::chrono::steady_clock::duration interval) {
  (void)watch_keepalive;
  for (;;) {
    timer->expires_after(interval);
    auto [ec] = co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec || stopped->load()) {
      co_return;
    }
    std::shared_ptr<TlsContextProvider> provider = weak.lock();
    if (provider == nullptr) {
      co_return;
    }
    // Errors are logged by ReloadIfChanged; the old context stays in use.
    (void)provider->ReloadIfChanged();
  }
}

}  // namespace

TlsContextProvider::TlsContextProvider(TlsFiles files, LogSink log,
                                       std::shared_ptr<TicketKeyRing> tickets)
    : files_(std::move(files)), log_(OrStderr(std::move(log))), tickets_(std::move(tickets)) {}

TlsContextProvider::~TlsContextProvider() { StopWatching(); }

absl::StatusOr<std::shared_ptr<TlsContextProvider>> TlsContextProvider::Create(
    TlsFiles files, LogSink log, std::chrono::steady_clock::duration ticket_key_rotation) {
  std::shared_ptr<TicketKeyRing> tickets;
  if (ticket_key_rotation > std::chrono::steady_clock::duration::zero()) {
    tickets = std::make_shared<TicketKeyRing>(ticket_key_rotation);
  }
  std::shared_ptr<TlsContextProvider> provider(
      new TlsContextProvider(std::move(files), std::move(log), std::move(tickets)));
  std::lock_guard<std::mutex> reload_lock(provider->reload_mutex_);
  provider->seen_ = std::make_unique<FileIdentity>(
      FileIdentity{FileIdentity::Of(provider->files_.cert_chain_file),
                   FileIdentity::Of(provider->files_.private_key_file)});
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ctx = NewServerTlsContext(provider->files_, provider->tickets_);
  if (!ctx.ok()) {
    return ctx.status();
  }
  std::lock_guard<std::mutex> lock(provider->mutex_);
  provider->current_ = *std::move(ctx);
  provider->generation_ = 1;
  return provider;
}

std::shared_ptr<SSL_CTX> TlsContextProvider::Current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

uint64_t TlsContextProvider::generation() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return generation_;
}

absl::Status TlsContextProvider::Reload() { return DoReload(false).status(); }

absl::StatusOr<bool> TlsContextProvider::ReloadIfChanged() { return DoReload(true); }

absl::StatusOr<bool> TlsContextProvider::DoReload(bool only_if_changed) {
  std::lock_guard<std::mutex> reload_lock(reload_mutex_);
  FileIdentity now{FileIdentity::Of(files_.cert_chain_file),
                   FileIdentity::Of(files_.private_key_file)};
  if (only_if_changed && seen_ != nullptr && *seen_ == now) {
    return false;
  }
  // Remember this identity even if loading fails: a half-written pair is retried when
  // the next write changes the files again, not on every poll.
  seen_ = std::make_unique<FileIdentity>(now);
  absl::StatusOr<std::shared_ptr<SSL_CTX>> ctx = NewServerTlsContext(files_, tickets_);
  if (!ctx.ok()) {
    mailbox::log::Error(mailbox::log::event::kCertReload,
                        {{"result", "failed"},
                         {"cert_file", files_.cert_chain_file},
                         {"error", std::string(ctx.status().message())},
                         {"detail", "keeping the current certificate"}});
    return ctx.status();
  }
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    current_ = *std::move(ctx);
    generation = ++generation_;
  }
  mailbox::log::Info(mailbox::log::event::kCertReload, {{"result", "ok"},
                                                       {"cert_file", files_.cert_chain_file},
                                                       {"generation", generation}});
  return true;
}

void TlsContextProvider::StartWatching(boost::asio::any_io_executor executor,
                                       std::chrono::steady_clock::duration interval) {
  StopWatching();
  if (interval <= std::chrono::steady_clock::duration::zero()) {
    return;  // polling disabled; reloads happen on SIGHUP only
  }
  auto watch = std::make_shared<Watch>(executor);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    watch_ = watch;
  }
  boost::asio::steady_timer* timer = &watch->timer;
  const std::atomic<bool>* stopped = &watch->stopped;
  LogSink log = log_;
  boost::asio::co_spawn(executor,
                        WatchLoop(weak_from_this(), watch, timer, stopped, interval),
                        [log](std::exception_ptr error) {
                          if (error == nullptr) {
                            return;
                          }
                          try {
                            std::rethrow_exception(error);
                          } catch (const std::exception& e) {
                            log(absl::StrCat("tls: certificate watcher failed: ", e.what()));
                          }
                        });
}

void TlsContextProvider::StopWatching() {
  std::shared_ptr<Watch> watch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    watch = std::move(watch_);
  }
  if (watch == nullptr) {
    return;
  }
  watch->stopped.store(true);
  // The timer belongs to its executor's thread; cancel it there.
  boost::asio::post(watch->timer.get_executor(), [watch] { watch->timer.cancel(); });
}

}  // namespace gateway::net
