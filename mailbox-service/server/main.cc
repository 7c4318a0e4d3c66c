// mailbox-service: the gRPC server that owns users, mailboxes, UIDs and MODSEQs.
//
// Starts on the embedded SQLite store in --data-dir (0700, locked against a second
// service: data_dir.h), writes the admin token to <data-dir>/admin.token (mode 0600)
// for mailbox-admin, and drains gracefully on SIGTERM/SIGINT: feeds end, in-flight
// calls finish (up to --drain-timeout), then exit.
//
// Logs: one event per line on stderr, JSON or text (--log-format; common/log/log.h).
// stdout carries only the start-up line that tools read ("listening on ... (port N").
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "common/metrics/grpc_metrics.h"
#include "common/metrics/metrics.h"
#include "common/ops/http_server.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "common/config.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "mailbox-service/server/auth.h"
#include "mailbox-service/server/scram.h"
#include "mailbox-service/server/change_hub.h"
#include "mailbox-service/server/data_dir.h"
#include "mailbox-service/server/grpc_log_limit.h"
#include "mailbox-service/server/introspection_client.h"
#include "mailbox-service/server/server_credentials.h"
#include "mailbox-service/server/limits.h"
#include "mailbox-service/server/service.h"
#include "mailbox-service/server/service_metrics.h"
#include "mailbox-service/store/backend.h"
#include "mailbox-service/store/store_metrics.h"
#include "mailbox-service/store/timed_store.h"
#include "storage-client/link_token.h"
#include "storage-client/posix_file.h"

namespace mailbox::server {
namespace {

// The settings of mailbox-service besides the TLS ones (server_credentials.h) and the
// limits (limits.h): one row each, {flag name, environment variable, default, help,
// type} (common/config.h).
std::vector<config::Setting> Settings() {
  const absl::Duration kYear = absl::Hours(24 * 365);
  return {
      {"listen", "MAILBOX_LISTEN", "127.0.0.1:50051",
       "gRPC listen address (host:port, port 0 picks one; or unix:/path)"},
      {"data-dir", "MAILBOX_DATA_DIR", "./.data", "directory of the embedded store"},
      {"backend", "MAILBOX_BACKEND", "sqlite",
       "store backend: sqlite (embedded, in --data-dir) or postgres (--postgres)",
       config::String([](std::string_view value) {
         const std::vector<std::string> backends = store::Backends();
         return std::find(backends.begin(), backends.end(), value) != backends.end()
                    ? absl::OkStatus()
                    : absl::InvalidArgumentError(absl::StrCat(
                          "unknown backend; this build has: ", absl::StrJoin(backends, ", ")));
       })},
      {"postgres", "MAILBOX_POSTGRES", "",
       "with --backend=postgres: libpq connection string or URI of the shared database, e.g. "
       "\"host=/run/postgresql dbname=mail\"",
       config::Redacted(config::RedactConnInfo)},
      {"postgres-max-connections", "MAILBOX_POSTGRES_MAX_CONNECTIONS", "16",
       "with --backend=postgres: most connections this replica opens to the database",
       config::Int(2, 10000)},
      {"demo-user", "MAILBOX_DEMO_USER", "",
       "create this user at start if missing, as name:password (for local use)",
       config::Redacted([](std::string_view value) {
         return std::string(value.substr(0, value.find(':'))) + ":(not shown)";
       })},
      {"port-file", "MAILBOX_PORT_FILE", "", "write the bound port here once listening"},
      {"http-listen", "MAILBOX_HTTP_LISTEN", "127.0.0.1:8151",
       "operator HTTP endpoint (host:port, port 0 picks one): GET /healthz, /readyz (fails "
       "while the store is unhealthy or the service drains) and /metrics (Prometheus); empty "
       "disables"},
      {"http-port-file", "MAILBOX_HTTP_PORT_FILE", "",
       "write the bound port of --http-listen here once listening"},
      {"secrets-dir", "MAILBOX_SECRETS_DIR", "",
       "a read-only directory (a Kubernetes Secret volume) holding admin.token, gateway.token "
       "and session.key: copied at start, mode 0600, to where the service reads them, "
       "replacing what is there; its files may be links to files of another user"},
      {"gateway-token-file", "MAILBOX_GATEWAY_TOKEN_FILE", "",
       "file of the token that lets a gateway report its clients' IPs (default "
       "<data-dir>/gateway.token, made with mode 0600 if missing; re-read when it changes)"},
      {"drain-timeout", "MAILBOX_DRAIN_TIMEOUT", "20s",
       "on SIGTERM, how long in-flight calls may take before they are cancelled",
       config::Duration(absl::ZeroDuration(), absl::Hours(24))},
      {"argon2-memory", "MAILBOX_ARGON2_MEMORY", "19MiB",
       "argon2id memory cost for new password hashes (whole KiB)",
       config::Size(8 << 10, int64_t{4} << 30)},
      {"argon2-time-cost", "MAILBOX_ARGON2_TIME_COST", "2", "argon2id passes",
       config::Int(1, 1000)},
      {"scram-iterations", "MAILBOX_SCRAM_ITERATIONS", "8192",
       "PBKDF2 iterations of the SCRAM-SHA-256 keys made when a password is set (4096 to "
       "10000000)",
       config::Int(scram::kMinIterations, scram::kMaxIterations)},
      {"max-message-bytes", "MAILBOX_MAX_MESSAGE_BYTES", "64MiB",
       "largest message accepted by Append/Revise", config::Size(1, int64_t{1} << 40)},
      {"default-mailboxes", "MAILBOX_DEFAULT_MAILBOXES",
       "Sent:\\Sent,Drafts:\\Drafts,Trash:\\Trash,Junk:\\Junk,Archive:\\Archive",
       "mailboxes every new user gets besides INBOX, subscribed, as Name:\\SpecialUse "
       "pairs (RFC 6154); empty for none"},
      {"auth-user-free-failures", "MAILBOX_AUTH_USER_FREE_FAILURES", "5",
       "failed logins of one user from one client IP (15 min window) before that client "
       "waits",
       config::Int(0, 1 << 30)},
      {"auth-ip-free-failures", "MAILBOX_AUTH_IP_FREE_FAILURES", "20",
       "failed logins from one client address (15 min window) past which the address is "
       "slowed (doubling delays) and its clients get one failure per user before they wait",
       config::Int(0, 1 << 30)},
      {"auth-failure-window", "MAILBOX_AUTH_FAILURE_WINDOW", "15m",
       "how long a failed login counts against its client and address",
       config::Duration(absl::Seconds(1), kYear)},
      {"auth-max-delay", "MAILBOX_AUTH_MAX_DELAY", "15m",
       "longest wait the login throttle imposes (delays double from 1 s up to this)",
       config::Duration(absl::Seconds(1), kYear)},
      {"auth-max-failure-records", "MAILBOX_AUTH_MAX_FAILURE_RECORDS", "100000",
       "failed-login records kept for throttling, in all (when full, the address holding "
       "the most is refused)",
       config::Int(1, 1'000'000'000)},
      {"auth-max-records-per-address", "MAILBOX_AUTH_MAX_RECORDS_PER_ADDRESS", "0",
       "failed-login records one client address may hold in the window (0: as many as "
       "the throttle lets an address make, plus room for two attempts)",
       config::Int(0, 1'000'000'000)},
      {"auth-ipv6-prefix", "MAILBOX_AUTH_IPV6_PREFIX", "64",
       "IPv6 clients are throttled by this prefix length of their address (32 to 128)",
       config::Int(32, 128)},
      {"session-lifetime", "MAILBOX_SESSION_LIFETIME", "24h",
       "how long a session token from a login stays valid (whole seconds)",
       config::Duration(absl::Seconds(1), 10 * kYear)},
      {"session-key-file", "MAILBOX_SESSION_KEY_FILE", "",
       "file of the keys that sign session tokens (default <data-dir>/session.key, made "
       "if missing); first line signs, every line checks"},
      {"oauth-jwks", "MAILBOX_OAUTH_JWKS", "",
       "JWK Set file of the identity provider's token signing keys (RS256, ES256, EdDSA); "
       "set, it turns on OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2). Re-read when it "
       "changes; a bad file keeps the keys read before"},
      {"oauth-issuer", "MAILBOX_OAUTH_ISSUER", "",
       "with --oauth-jwks: the \"iss\" every token must carry (exactly)"},
      {"oauth-audience", "MAILBOX_OAUTH_AUDIENCE", "",
       "with --oauth-jwks: the value the token's \"aud\" must be or contain"},
      {"oauth-user-claim", "MAILBOX_OAUTH_USER_CLAIM", "email",
       "with --oauth-jwks: the claim holding the user name (an existing user; e.g. email, "
       "sub, preferred_username)"},
      {"oauth-clock-skew", "MAILBOX_OAUTH_CLOCK_SKEW", "1m",
       "allowance for clock differences when checking exp, nbf and iat (whole seconds)",
       config::Duration(absl::ZeroDuration(), absl::Hours(1))},
      {"oauth-max-token-bytes", "MAILBOX_OAUTH_MAX_TOKEN_BYTES", "8KiB",
       "longest bearer token accepted", config::Size(256, 64 << 10)},
      {"oauth-max-jwks-bytes", "MAILBOX_OAUTH_MAX_JWKS_BYTES", "64KiB",
       "largest --oauth-jwks file read", config::Size(256, 16 << 20)},
      {"oauth-max-jwks-keys", "MAILBOX_OAUTH_MAX_JWKS_KEYS", "32",
       "most keys a --oauth-jwks file may hold", config::Int(1, 1000)},
      {"oauth-introspection-url", "MAILBOX_OAUTH_INTROSPECTION_URL", "",
       "https URL of the identity provider's token introspection endpoint (RFC 7662), asked "
       "about tokens that are not JWTs (every token without --oauth-jwks); turns on OAuth "
       "bearer tokens like --oauth-jwks"},
      {"oauth-introspection-client-id", "MAILBOX_OAUTH_INTROSPECTION_CLIENT_ID", "",
       "the service's client id at the introspection endpoint (HTTP Basic)"},
      {"oauth-introspection-secret-file", "MAILBOX_OAUTH_INTROSPECTION_SECRET_FILE", "",
       "file whose first line is the service's client secret at the introspection endpoint"},
      {"oauth-introspection-ca-file", "MAILBOX_OAUTH_INTROSPECTION_CA_FILE", "",
       "CA certificates the endpoint's certificate must chain to (default: the system's)"},
      {"oauth-introspection-timeout", "MAILBOX_OAUTH_INTROSPECTION_TIMEOUT", "5s",
       "longest an introspection request may take (then the login gets NO [UNAVAILABLE])",
       config::Duration(absl::Milliseconds(1), absl::Minutes(1))},
      {"oauth-introspection-max-response-bytes",
       "MAILBOX_OAUTH_INTROSPECTION_MAX_RESPONSE_BYTES", "64KiB",
       "largest introspection response body read", config::Size(256, 1 << 20)},
      {"oauth-introspection-cache-entries", "MAILBOX_OAUTH_INTROSPECTION_CACHE_ENTRIES",
       "10000", "active tokens whose introspection answer is remembered (0: none)",
       config::Int(0, 10'000'000)},
      {"oauth-introspection-cache-ttl", "MAILBOX_OAUTH_INTROSPECTION_CACHE_TTL", "1m",
       "how long an answer is remembered at most (never past the token's exp; whole "
       "seconds)",
       config::Duration(absl::ZeroDuration(), absl::Hours(24))},
      {"log-format", "MAILBOX_LOG_FORMAT", "auto",
       "logs on stderr: json (one object per line), text, or auto (text on a terminal, "
       "else JSON)",
       config::OneOf({"auto", "json", "text"})},
      {"log-rate-limit", "MAILBOX_LOG_RATE_LIMIT", "100",
       "lines a second each log event may write; the rest are counted in a "
       "log_suppressed line (0: no limit)",
       config::Int(0, 1'000'000)},

      // Former names, refused with the new one.
      {"drain-seconds", "MAILBOX_DRAIN_SECONDS", "", "", config::RenamedTo("drain-timeout")},
      {"argon2-memory-kib", "MAILBOX_ARGON2_MEMORY_KIB", "", "",
       config::RenamedTo("argon2-memory")},
      {"auth-failure-window-seconds", "MAILBOX_AUTH_FAILURE_WINDOW_SECONDS", "", "",
       config::RenamedTo("auth-failure-window")},
      {"auth-max-delay-seconds", "MAILBOX_AUTH_MAX_DELAY_SECONDS", "", "",
       config::RenamedTo("auth-max-delay")},
      {"session-lifetime-seconds", "MAILBOX_SESSION_LIFETIME_SECONDS", "", "",
       config::RenamedTo("session-lifetime")},
      {"oauth-clock-skew-seconds", "MAILBOX_OAUTH_CLOCK_SKEW_SECONDS", "", "",
       config::RenamedTo("oauth-clock-skew")},
      {"oauth-introspection-timeout-ms", "MAILBOX_OAUTH_INTROSPECTION_TIMEOUT_MS", "", "",
       config::RenamedTo("oauth-introspection-timeout")},
      {"oauth-introspection-cache-seconds", "MAILBOX_OAUTH_INTROSPECTION_CACHE_SECONDS", "",
       "", config::RenamedTo("oauth-introspection-cache-ttl")},
  };
}

// The listening socket of --http-listen: host:port ([v6]:port), port 0 picks one.
absl::StatusOr<std::unique_ptr<boost::asio::ip::tcp::acceptor>> ListenHttp(
    boost::asio::io_context& io, const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" is not host:port (e.g. 127.0.0.1:8151)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", address, "\""));
  }
  boost::system::error_code ec;
  const boost::asio::ip::address ip = boost::asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", host, "\" is not an IP address (give an address, not a name)"));
  }
  return ops::ListenOn(io, boost::asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(port)),
                       address);
}

// Writes `port` to `path` (if set) under a temporary name renamed into place, so a
// script polling for it never reads half a file.
void WritePortFile(const std::string& path, int port) {
  if (path.empty()) {
    return;
  }
  std::ofstream(path + ".tmp") << port << "\n";
  std::error_code ec;
  std::filesystem::rename(path + ".tmp", path, ec);
  if (ec) {
    log::Warning(log::event::kWarning,
                 {{"message", absl::StrCat("cannot write ", path, ": ", ec.message())}});
  }
}

// The service's gauges read at scrape time. `service` and `serving` must outlive
// every scrape (the operator endpoint stops before they go).
void RegisterServiceGauges(metrics::Registry& registry, const MailboxService& service,
                           const std::atomic<bool>& serving) {
  using Type = metrics::Registry::Type;
  registry.AddCallback("imapd_mailbox_work_pool_queued_calls",
                       "Calls waiting for a work-pool thread now (bounded by --work-queue).",
                       Type::kGauge,
                       [&service] { return static_cast<double>(service.queued_work()); });
  registry.AddCallback("imapd_mailbox_work_pool_busy_threads",
                       "Work-pool threads running a call now (of --workers).", Type::kGauge,
                       [&service] { return static_cast<double>(service.busy_workers()); });
  registry.AddCallback("imapd_mailbox_work_pool_refused_total",
                       "Calls refused (RESOURCE_EXHAUSTED, busy) because every work-pool thread "
                       "was busy and the queue full.",
                       Type::kCounter,
                       [&service] { return static_cast<double>(service.refused_work()); });
  registry.AddCallback("imapd_mailbox_feed_subscribers",
                       "Change-feed streams open now (gateway workers subscribed; bounded by "
                       "--max-feeds).",
                       Type::kGauge,
                       [&service] { return static_cast<double>(service.open_feeds()); });
  registry.AddCallback("imapd_mailbox_ready",
                       "1 while /readyz answers 200 (the store is healthy and the service is "
                       "not draining), else 0.",
                       Type::kGauge, [&serving] { return serving.load() ? 1.0 : 0.0; });
}

// GET /healthz (the process runs), /readyz (the same answer as the gRPC health
// service: the store is healthy and the service not draining), /metrics.
std::shared_ptr<const std::vector<ops::HttpRoute>> ServiceRoutes(
    const metrics::Registry& registry, const std::atomic<bool>& serving) {
  return std::make_shared<const std::vector<ops::HttpRoute>>(std::vector<ops::HttpRoute>{
      {"GET", "/healthz",
       [] { return ops::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}; }},
      {"GET", "/readyz",
       [&serving] {
         const bool ready = serving.load();
         return ops::HttpResponse{ready ? 200 : 503, "text/plain; charset=utf-8",
                                  ready ? "ready\n" : "not ready: the store is out of reach or "
                                                      "the service is draining\n"};
       }},
      {"GET", "/metrics",
       [&registry] {
         return ops::HttpResponse{200, ops::kPrometheusContentType, registry.Render()};
       }},
  });
}

// The bearer token checks from the --oauth-* flags.
absl::StatusOr<std::unique_ptr<BearerValidator>> MakeBearerValidator(const config::Config& config) {
  BearerOptions options;
  options.jwks_path = config.Get("oauth-jwks");
  options.issuer = config.Get("oauth-issuer");
  options.audience = config.Get("oauth-audience");
  options.user_claim = config.Get("oauth-user-claim");
  // The values were checked against the table's ranges when the settings were parsed.
  options.clock_skew_s = absl::ToInt64Seconds(config.GetDuration("oauth-clock-skew"));
  options.max_token_octets = static_cast<size_t>(config.GetSize("oauth-max-token-bytes"));
  options.max_jwks_octets = static_cast<size_t>(config.GetSize("oauth-max-jwks-bytes"));
  options.jwks.max_keys = static_cast<size_t>(config.GetInt("oauth-max-jwks-keys").value_or(1));
  IntrospectionOptions& introspection = options.introspection;
  introspection.url = config.Get("oauth-introspection-url");
  if (!introspection.url.empty()) {
    introspection.client_id = config.Get("oauth-introspection-client-id");
    introspection.ca_file = config.Get("oauth-introspection-ca-file");
    if (const std::string& path = config.Get("oauth-introspection-secret-file"); !path.empty()) {
      auto file = posix::OpenRegularFile(path, "give the file itself");
      if (!file.ok()) {
        return file.status();
      }
      auto text = posix::ReadAll(file->fd.get(), 4096, path);
      if (!text.ok()) {
        return text.status();
      }
      introspection.client_secret = text->substr(0, text->find_first_of("\r\n"));
    }
    introspection.timeout = absl::ToChronoMilliseconds(
        config.GetDuration("oauth-introspection-timeout"));
    introspection.max_response_octets =
        static_cast<size_t>(config.GetSize("oauth-introspection-max-response-bytes"));
    introspection.max_cache_entries = static_cast<size_t>(
        config.GetInt("oauth-introspection-cache-entries").value_or(0));
    introspection.max_cache_seconds =
        absl::ToInt64Seconds(config.GetDuration("oauth-introspection-cache-ttl"));
  }
  IntrospectionPost post;
  if (!introspection.url.empty()) {
    auto https = MakeHttpsIntrospectionPost(introspection);
    if (!https.ok()) {
      return https.status();
    }
    post = *std::move(https);
  }
  return BearerValidator::Create(std::move(options), std::move(post));
}

int Run(int argc, char** argv) {
  // Block the shutdown signals before any thread starts (the logger's, gRPC's), so
  // only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::vector<config::Setting> settings = WithServerTlsSettings(Settings());
  for (config::Setting& setting : LimitSettings()) {
    settings.push_back(std::move(setting));
  }
  config::Program program;
  program.name = "mailbox-service";
  program.env_prefix = "MAILBOX_";
  program.config_env = "MAILBOX_CONFIG";
  // mailbox-admin's variables: an operator's shell or the service's container sets
  // them for the admin tool run next to the service.
  program.foreign_env = {"MAILBOX_SERVER",    "MAILBOX_ADMIN_TOKEN", "MAILBOX_ADMIN_TOKEN_FILE",
                         "MAILBOX_CA_FILE",   "MAILBOX_CERT_FILE",   "MAILBOX_KEY_FILE",
                         "MAILBOX_TLS_SERVER_NAME", "MAILBOX_ADMIN_CONFIG"};
  auto config = config::Config::Parse(program, std::move(settings),
                                      std::vector<std::string>(argv + 1, argv + argc),
                                      config::ProcessEnvironment());
  if (!config.ok()) {
    std::cerr << "mailbox-service: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << config->Usage("mailbox-service");
    return 0;
  }
  if (config->print_config_requested()) {
    std::cout << config->PrintConfig();
    return 0;
  }
  {
    auto format = log::ParseFormat(config->Get("log-format"), STDERR_FILENO);
    if (!format.ok()) {
      std::cerr << "mailbox-service: " << format.status().message() << "\n";
      return 2;
    }
    const int64_t rate_limit = config->GetInt("log-rate-limit").value_or(100);
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    log::LoggerOptions log_options;
    log_options.format = *format;
    // The replica's name in every line: the host name (a Kubernetes pod's name).
    log_options.common_fields = {{"replica", host}};
    log_options.max_lines_per_second = static_cast<int>(rate_limit);
    log::Configure(std::move(log_options));
    log::Global().StartFlushing();
  }
  ServerTlsOptions link;
  auto credentials = ListenerCredentials(*config, &link);
  if (!credentials.ok()) {
    std::cerr << "mailbox-service: " << credentials.status().message() << "\n";
    return 2;
  }
  InstallGrpcLogRateLimit(link.grpc_log_lines_per_second);
  if (std::string warning = link.Warning(config->Get("listen")); !warning.empty()) {
    log::Warning(log::event::kWarning, {{"message", warning}});
  }

  const std::filesystem::path data_dir = config->Get("data-dir");
  const std::filesystem::path admin_token_file = data_dir / "admin.token";
  const std::string& key_flag = config->Get("session-key-file");
  const std::filesystem::path session_key_file =
      key_flag.empty() ? data_dir / "session.key" : std::filesystem::path(key_flag);
  // <data-dir>/gateway.token (0600), which the gateways read too (--store-token-file):
  // only with it may a caller report its clients' IPs for the login throttle
  // (link_trust.h). Like the other secrets, its mode is checked when it is read,
  // not silently changed (an operator may give a gateway's group read access).
  const std::string& token_flag = config->Get("gateway-token-file");
  const std::string gateway_token_path =
      token_flag.empty() ? (data_dir / "gateway.token").string() : token_flag;
  std::vector<std::filesystem::path> tightened_paths;
  auto tightened = PrepareDataDir(
      data_dir, {admin_token_file, session_key_file, std::filesystem::path(gateway_token_path)},
      &tightened_paths);
  if (!tightened.ok()) {
    std::cerr << "mailbox-service: " << tightened.status().message() << "\n";
    return 1;
  }
  for (const std::string& change : *tightened) {
    log::Warning(log::event::kWarning, {{"message", absl::StrCat("others could read ", change)}});
  }
  auto data_dir_lock = DataDirLock::Acquire(data_dir);
  if (!data_dir_lock.ok()) {
    std::cerr << "mailbox-service: " << data_dir_lock.status().message() << "\n";
    return 1;
  }
  if (const std::string& secrets_dir = config->Get("secrets-dir"); !secrets_dir.empty()) {
    auto installed = InstallProvidedSecrets(
        secrets_dir, {{"admin.token", admin_token_file},
                      {"gateway.token", gateway_token_path},
                      {"session.key", session_key_file}});
    if (!installed.ok()) {
      std::cerr << "mailbox-service: " << installed.status().message() << "\n";
      return 1;
    }
    for (const std::string& line : *installed) {
      log::Info(log::event::kSecretInstalled, {{"file", line}});
    }
  }

  store::StoreLimits limits;
  // Every value was checked against its row's type and range when parsed.
  auto integer = [&config](const char* name) { return config->GetInt(name).value_or(0); };
  limits.max_message_octets = static_cast<uint64_t>(config->GetSize("max-message-bytes"));
  auto server_limits = ReadServerLimits(*config);
  if (!server_limits.ok()) {
    std::cerr << "mailbox-service: " << server_limits.status().message() << "\n";
    return 2;
  }
  ApplyLimits(*server_limits, &limits);
  ServiceOptions service_options;
  ApplyLimits(*server_limits, &service_options);

  ChangeHub hub;
  store::BackendConfig backend;
  backend.backend = config->Get("backend");
  backend.data_dir = data_dir;
  backend.max_threads = server_limits->max_threads;
  backend.postgres = config->Get("postgres");
  auto default_mailboxes = store::ParseDefaultMailboxes(config->Get("default-mailboxes"), limits);
  if (!default_mailboxes.ok()) {
    std::cerr << "mailbox-service: " << default_mailboxes.status().message() << "\n";
    return 2;
  }
  backend.options.default_mailboxes = *std::move(default_mailboxes);
  backend.postgres_max_connections = static_cast<int>(integer("postgres-max-connections"));
  // Metrics (docs/operations.md, "Metrics"): registered before the store opens, so
  // the store's counters count from its first transaction.
  metrics::Registry& registry = metrics::ProcessRegistry();
  store::StoreMetrics& store_metrics = store::GlobalStoreMetrics();
  GlobalServiceMetrics();
  auto store = store::OpenBackend(backend, limits,
                                  [&hub](const v1::ChangeEvent& e) { hub.Publish(e); });
  if (!store.ok()) {
    std::cerr << "mailbox-service: cannot open the store: " << store.status().message() << "\n";
    return 1;
  }
  // Every Store call the service makes is timed per operation.
  store::TimedStore timed_store(store->get(), &store_metrics);
  AuthOptions auth_options;
  auth_options.hash.memory_kib = static_cast<uint32_t>(config->GetSize("argon2-memory") >> 10);
  auth_options.hash.time_cost = static_cast<uint32_t>(integer("argon2-time-cost"));
  auth_options.hash.scram_iterations = static_cast<uint32_t>(integer("scram-iterations"));
  auth_options.throttle.user_free_failures = static_cast<int>(integer("auth-user-free-failures"));
  auth_options.throttle.ip_free_failures = static_cast<int>(integer("auth-ip-free-failures"));
  auth_options.throttle.ipv6_prefix_bits = static_cast<int>(integer("auth-ipv6-prefix"));
  auth_options.throttle.max_records_per_address = integer("auth-max-records-per-address");
  auth_options.throttle.max_records = integer("auth-max-failure-records");
  auth_options.throttle.window_ms =
      absl::ToInt64Milliseconds(config->GetDuration("auth-failure-window"));
  auth_options.throttle.max_delay_ms =
      absl::ToInt64Milliseconds(config->GetDuration("auth-max-delay"));
  auth_options.session_lifetime_s = absl::ToInt64Seconds(config->GetDuration("session-lifetime"));
  std::vector<std::string> key_log;
  auto session_keys = LoadOrCreateSessionKeys(
      session_key_file, store->get(),
      DatabaseWasExposed(data_dir / "mailbox.db", tightened_paths), &key_log);
  for (const std::string& line : key_log) {
    log::Warning(log::event::kWarning, {{"message", line}});
  }
  if (!session_keys.ok()) {
    std::cerr << "mailbox-service: session keys: " << session_keys.status().message() << "\n";
    return 1;
  }
  std::unique_ptr<BearerValidator> bearer;
  if (const std::string& jwks = config->Get("oauth-jwks");
      !jwks.empty() || !config->Get("oauth-introspection-url").empty()) {
    auto validator = MakeBearerValidator(*config);
    if (!validator.ok()) {
      std::cerr << "mailbox-service: OAuth: " << validator.status().message() << "\n";
      return 2;
    }
    bearer = *std::move(validator);
    auth_options.bearer = bearer.get();
    std::cout << "mailbox-service: OAuth bearer tokens from " << bearer->options().issuer
              << " for " << bearer->options().audience
              << (jwks.empty() ? "" : ", keys in " + jwks)
              << (bearer->options().introspection.url.empty()
                      ? ""
                      : ", introspection at " + bearer->options().introspection.url)
              << std::endl;
  } else if (!config->Get("oauth-issuer").empty() || !config->Get("oauth-audience").empty()) {
    std::cerr << "mailbox-service: --oauth-issuer and --oauth-audience need --oauth-jwks or "
                 "--oauth-introspection-url\n";
    return 2;
  }
  auto auth = Authenticator::Create(&timed_store, auth_options, *std::move(session_keys));
  if (!auth.ok()) {
    std::cerr << "mailbox-service: " << auth.status().message() << "\n";
    return 1;
  }
  auto admin_token = LoadOrCreateAdminToken(admin_token_file);
  if (!admin_token.ok()) {
    std::cerr << "mailbox-service: " << admin_token.status().message() << "\n";
    return 1;
  }

  if (const std::string& demo = config->Get("demo-user"); !demo.empty()) {
    size_t colon = demo.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == demo.size()) {
      std::cerr << "mailbox-service: --demo-user needs name:password\n";
      return 2;
    }
    std::string name = demo.substr(0, colon);
    if (!(*store)->FindUser(name).ok()) {
      auto hash = HashPassword(demo.substr(colon + 1), auth_options.hash);
      auto created = hash.ok() ? (*store)->CreateUser(name, *hash)
                               : absl::StatusOr<uint64_t>(hash.status());
      if (!created.ok()) {
        std::cerr << "mailbox-service: cannot create the demo user: "
                  << created.status().message() << "\n";
        return 1;
      }
    }
  }

  auto gateway_token = client::LoadOrCreateLinkToken(gateway_token_path);
  if (!gateway_token.ok()) {
    std::cerr << "mailbox-service: gateway token: " << gateway_token.status().message() << "\n";
    return 1;
  }
  client::LinkTokenFile gateway_token_file(gateway_token_path, *std::move(gateway_token),
                                           {.must_be_own = true});
  service_options.gateway_token = &gateway_token_file;

  MailboxService mailbox_service(&timed_store, auth->get(), &hub, *admin_token, limits,
                                 service_options);
  AdminService admin_service(&timed_store, &mailbox_service, auth_options.hash);
  metrics::RpcMetrics rpc_metrics(registry, "imapd_mailbox_rpc_duration_seconds",
                                  "imapd_mailbox_rpcs_total", "Server side:",
                                  {"mailbox.v1.Mailbox", "mailbox.v1.Admin"});
  // Serving while the store can serve and the service is not draining: the gRPC
  // health service and GET /readyz both say this one value.
  std::atomic<bool> serving{true};
  RegisterServiceGauges(registry, mailbox_service, serving);
  metrics::AddProcessMetrics(registry);
  // grpc.health.v1.Health, unauthenticated (it tells only whether this replica
  // serves): gateways check it and leave out a replica that reports NOT_SERVING.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config->Get("listen"), *credentials, &port);
  builder.RegisterService(&mailbox_service);
  builder.RegisterService(&admin_service);
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.SetMaxSendMessageSize(8 << 20);
  // gRPC sets SO_REUSEPORT by default: a second service would then bind the same
  // port silently and take half the connections (and change feeds) of the first.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyLimits(*server_limits, &builder);
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(rpc_metrics.ServerFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "mailbox-service: cannot listen on " << config->Get("listen")
              << " (is another process using that address?)\n";
    return 1;
  }
  // The operator endpoint, on its own thread.
  boost::asio::io_context http_io;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> http_acceptor;
  std::thread http_thread;
  if (const std::string& http = config->Get("http-listen"); !http.empty()) {
    auto acceptor = ListenHttp(http_io, http);
    if (!acceptor.ok()) {
      std::cerr << "mailbox-service: --http-listen: " << acceptor.status().message() << "\n";
      server->Shutdown();
      return 1;
    }
    http_acceptor = *std::move(acceptor);
    const uint16_t http_port = http_acceptor->local_endpoint().port();
    WritePortFile(config->Get("http-port-file"), http_port);
    boost::asio::co_spawn(http_io,
                          ops::ServeHttp(*http_acceptor, ServiceRoutes(registry, serving),
                                         "mailbox-service"),
                          [](std::exception_ptr e) {
                            if (e) {
                              std::cerr << "mailbox-service: http endpoint stopped by an "
                                           "exception\n";
                            }
                          });
    http_thread = std::thread([&http_io] { http_io.run(); });
    std::cout << "mailbox-service: operator endpoint on " << http << " (port " << http_port
              << ")" << std::endl;
  }
  WritePortFile(config->Get("port-file"), port);
  std::cout << "mailbox-service listening on " << config->Get("listen") << " (port " << port
            << (link.tls() ? ", TLS" : ", plaintext") << "), data in "
            << std::filesystem::absolute(data_dir).string() << std::endl;
  log::Info(log::event::kStarted, {{"backend", backend.backend},
                                   {"listen", config->Get("listen")},
                                   {"port", port},
                                   {"tls", link.tls()},
                                   {"data_dir", std::filesystem::absolute(data_dir).string()}});

  // Serving while the store can serve; checked four times a second.
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  absl::Notification stop_health;
  std::thread health_watch([&] {
    while (!stop_health.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      const bool healthy = (*store)->Healthy();
      if (healthy != serving.load()) {
        serving = healthy;
        health->SetServingStatus(healthy);
        if (healthy) {
          log::Info(log::event::kStoreHealthy, {{"backend", backend.backend}});
        } else {
          log::Error(log::event::kStoreUnavailable,
                     {{"backend", backend.backend},
                      {"detail", "health checks say NOT_SERVING"}});
        }
      }
    }
  });

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::Info(log::event::kDraining,
            {{"signal", strsignal(signal_number)},
             {"drain_timeout_ms", absl::ToInt64Milliseconds(config->GetDuration("drain-timeout"))}});
  stop_health.Notify();
  health_watch.join();
  // Gateways stop choosing this replica for new calls while it drains, and /readyz
  // says so to a balancer.
  serving = false;
  health->SetServingStatus(false);
  mailbox_service.BeginShutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(config->GetDuration("drain-timeout")));
  server->Wait();
  if (http_acceptor != nullptr) {
    boost::asio::post(http_io, [&] { http_acceptor->close(); });
    http_io.stop();
    http_thread.join();
  }
  log::Info(log::event::kStopped, {});
  return 0;
}

}  // namespace
}  // namespace mailbox::server

int main(int argc, char** argv) {
  // glibc's malloc gives free memory at the top of a thread arena back to the kernel
  // (madvise) as soon as it exceeds 128 KiB, and takes it back with page faults on
  // the next large allocation: with calls spread over the worker threads, that was
  // the service's largest single kernel cost under load. A fixed trim threshold
  // keeps up to 8 MiB free per arena; fewer arenas bound what that retains
  // (the workers mostly wait for SQLite, a client or the disk, so they share
  // arenas with little contention). Blocks of 1 MiB and more are mapped on their
  // own and returned as soon as they are freed.
  mallopt(M_ARENA_MAX, static_cast<int>(std::max(4u, std::thread::hardware_concurrency())));
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Debian builds Abseil with Mutex deadlock detection on, which keeps a lock graph
  // on every Lock: 1-2 % of each process's CPU under load (bench/suite/profile_cpu.py).
  // The lock order is fixed by the code and covered by the tests, so it is off here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return mailbox::server::Run(argc, argv);
}
