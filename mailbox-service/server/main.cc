// mailbox-service: the gRPC server that owns users, mailboxes, UIDs and MODSEQs.
//
// Starts on the embedded SQLite store in --data-dir (0700, locked against a second
// service: data_dir.h), writes the admin token to <data-dir>/admin.token (mode 0600)
// for mailbox-admin, and drains gracefully on SIGTERM/SIGINT: feeds end, in-flight
// calls finish (up to --drain-seconds), then exit.
//
// Logs: one event per line on stderr, JSON or text (--log-format; common/log/log.h).
// stdout carries only the start-up line that tools read ("listening on ... (port N").
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
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
#include "mailbox-service/store/backend.h"
#include "storage-client/link_token.h"
#include "storage-client/posix_file.h"

namespace mailbox::server {
namespace {

std::vector<config::Setting> Settings() {
  return {
      {"listen", "MAILBOX_LISTEN", "127.0.0.1:50051",
       "gRPC listen address (host:port, port 0 picks one; or unix:/path)"},
      {"data-dir", "MAILBOX_DATA_DIR", "./.data", "directory of the embedded store"},
      {"backend", "MAILBOX_BACKEND", "sqlite",
       "store backend: sqlite (embedded, in --data-dir) or postgres (--postgres)"},
      {"postgres", "MAILBOX_POSTGRES", "",
       "with --backend=postgres: libpq connection string or URI of the shared database, e.g. "
       "\"host=/run/postgresql dbname=mail\""},
      {"postgres-max-connections", "MAILBOX_POSTGRES_MAX_CONNECTIONS", "16",
       "with --backend=postgres: most connections this replica opens to the database"},
      {"demo-user", "MAILBOX_DEMO_USER", "",
       "create this user at start if missing, as name:password (for local use)"},
      {"port-file", "MAILBOX_PORT_FILE", "", "write the bound port here once listening"},
      {"gateway-token-file", "MAILBOX_GATEWAY_TOKEN_FILE", "",
       "file of the token that lets a gateway report its clients' IPs (default "
       "<data-dir>/gateway.token, made with mode 0600 if missing; re-read when it changes)"},
      {"drain-seconds", "MAILBOX_DRAIN_SECONDS", "20",
       "on SIGTERM, how long in-flight calls may take before they are cancelled"},
      {"argon2-memory-kib", "MAILBOX_ARGON2_MEMORY_KIB", "19456",
       "argon2id memory cost for new password hashes"},
      {"argon2-time-cost", "MAILBOX_ARGON2_TIME_COST", "2", "argon2id passes"},
      {"scram-iterations", "MAILBOX_SCRAM_ITERATIONS", "8192",
       "PBKDF2 iterations of the SCRAM-SHA-256 keys made when a password is set (4096 to "
       "10000000)"},
      {"max-message-bytes", "MAILBOX_MAX_MESSAGE_BYTES", "67108864",
       "largest message accepted by Append/Revise"},
      {"default-mailboxes", "MAILBOX_DEFAULT_MAILBOXES",
       "Sent:\\Sent,Drafts:\\Drafts,Trash:\\Trash,Junk:\\Junk,Archive:\\Archive",
       "mailboxes every new user gets besides INBOX, subscribed, as Name:\\SpecialUse "
       "pairs (RFC 6154); empty for none"},
      {"auth-user-free-failures", "MAILBOX_AUTH_USER_FREE_FAILURES", "5",
       "failed logins of one user from one client IP (15 min window) before that client "
       "waits"},
      {"auth-ip-free-failures", "MAILBOX_AUTH_IP_FREE_FAILURES", "20",
       "failed logins from one client address (15 min window) past which the address is "
       "slowed (doubling delays) and its clients get one failure per user before they wait"},
      {"auth-failure-window-seconds", "MAILBOX_AUTH_FAILURE_WINDOW_SECONDS", "900",
       "how long a failed login counts against its client and address"},
      {"auth-max-delay-seconds", "MAILBOX_AUTH_MAX_DELAY_SECONDS", "900",
       "longest wait the login throttle imposes (delays double from 1 s up to this)"},
      {"auth-max-failure-records", "MAILBOX_AUTH_MAX_FAILURE_RECORDS", "100000",
       "failed-login records kept for throttling, in all (when full, the address holding "
       "the most is refused)"},
      {"auth-max-records-per-address", "MAILBOX_AUTH_MAX_RECORDS_PER_ADDRESS", "0",
       "failed-login records one client address may hold in the window (0: as many as "
       "the throttle lets an address make, plus room for two attempts)"},
      {"auth-ipv6-prefix", "MAILBOX_AUTH_IPV6_PREFIX", "64",
       "IPv6 clients are throttled by this prefix length of their address (32 to 128)"},
      {"session-lifetime-seconds", "MAILBOX_SESSION_LIFETIME_SECONDS", "86400",
       "how long a session token from a login stays valid"},
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
      {"oauth-clock-skew-seconds", "MAILBOX_OAUTH_CLOCK_SKEW_SECONDS", "60",
       "allowance for clock differences when checking exp, nbf and iat"},
      {"oauth-max-token-bytes", "MAILBOX_OAUTH_MAX_TOKEN_BYTES", "8192",
       "longest bearer token accepted"},
      {"oauth-max-jwks-bytes", "MAILBOX_OAUTH_MAX_JWKS_BYTES", "65536",
       "largest --oauth-jwks file read"},
      {"oauth-max-jwks-keys", "MAILBOX_OAUTH_MAX_JWKS_KEYS", "32",
       "most keys a --oauth-jwks file may hold"},
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
      {"oauth-introspection-timeout-ms", "MAILBOX_OAUTH_INTROSPECTION_TIMEOUT_MS", "5000",
       "longest an introspection request may take (then the login gets NO [UNAVAILABLE])"},
      {"oauth-introspection-max-response-bytes",
       "MAILBOX_OAUTH_INTROSPECTION_MAX_RESPONSE_BYTES", "65536",
       "largest introspection response body read"},
      {"oauth-introspection-cache-entries", "MAILBOX_OAUTH_INTROSPECTION_CACHE_ENTRIES",
       "10000", "active tokens whose introspection answer is remembered (0: none)"},
      {"oauth-introspection-cache-seconds", "MAILBOX_OAUTH_INTROSPECTION_CACHE_SECONDS", "60",
       "how long an answer is remembered at most (never past the token's exp)"},
      {"log-format", "MAILBOX_LOG_FORMAT", "auto",
       "logs on stderr: json (one object per line), text, or auto (text on a terminal, "
       "else JSON)"},
      {"log-rate-limit", "MAILBOX_LOG_RATE_LIMIT", "100",
       "lines a second each log event may write; the rest are counted in a "
       "log_suppressed line (0: no limit)"},
  };
}

// The bearer token checks from the --oauth-* flags.
absl::StatusOr<std::unique_ptr<BearerValidator>> MakeBearerValidator(const config::Config& config) {
  BearerOptions options;
  options.jwks_path = config.Get("oauth-jwks");
  options.issuer = config.Get("oauth-issuer");
  options.audience = config.Get("oauth-audience");
  options.user_claim = config.Get("oauth-user-claim");
  auto skew = config.GetInt("oauth-clock-skew-seconds");
  auto token_bytes = config.GetInt("oauth-max-token-bytes");
  auto jwks_bytes = config.GetInt("oauth-max-jwks-bytes");
  auto jwks_keys = config.GetInt("oauth-max-jwks-keys");
  for (const auto* value : {&skew, &token_bytes, &jwks_bytes, &jwks_keys}) {
    if (!value->ok()) {
      return value->status();
    }
  }
  if (*skew < 0 || *skew > 3600) {
    return absl::InvalidArgumentError("--oauth-clock-skew-seconds must be between 0 and 3600");
  }
  if (*token_bytes < 256 || *token_bytes > 65536 || *jwks_bytes < 256 ||
      *jwks_bytes > 16 << 20 || *jwks_keys < 1 || *jwks_keys > 1000) {
    return absl::InvalidArgumentError(
        "--oauth-max-token-bytes must be between 256 and 65536, --oauth-max-jwks-bytes "
        "between 256 and 16777216, --oauth-max-jwks-keys between 1 and 1000");
  }
  options.clock_skew_s = *skew;
  options.max_token_octets = static_cast<size_t>(*token_bytes);
  options.max_jwks_octets = static_cast<size_t>(*jwks_bytes);
  options.jwks.max_keys = static_cast<size_t>(*jwks_keys);
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
    auto timeout = config.GetInt("oauth-introspection-timeout-ms");
    auto response_bytes = config.GetInt("oauth-introspection-max-response-bytes");
    auto entries = config.GetInt("oauth-introspection-cache-entries");
    auto seconds = config.GetInt("oauth-introspection-cache-seconds");
    for (const auto* value : {&timeout, &response_bytes, &entries, &seconds}) {
      if (!value->ok()) {
        return value->status();
      }
    }
    if (*timeout < 1 || *timeout > 60000 || *response_bytes < 256 ||
        *response_bytes > 1 << 20 || *entries < 0 || *entries > 10'000'000 || *seconds < 0 ||
        *seconds > 86400) {
      return absl::InvalidArgumentError(
          "--oauth-introspection-timeout-ms must be between 1 and 60000, "
          "--oauth-introspection-max-response-bytes between 256 and 1048576, "
          "--oauth-introspection-cache-entries between 0 and 10000000, "
          "--oauth-introspection-cache-seconds between 0 and 86400");
    }
    introspection.timeout = std::chrono::milliseconds(*timeout);
    introspection.max_response_octets = static_cast<size_t>(*response_bytes);
    introspection.max_cache_entries = static_cast<size_t>(*entries);
    introspection.max_cache_seconds = *seconds;
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
  std::vector<config::Setting> settings = WithServerTlsSettings(Settings());
  for (config::Setting& setting : LimitSettings()) {
    settings.push_back(std::move(setting));
  }
  auto config = config::Config::Parse(argc, argv, std::move(settings));
  if (!config.ok()) {
    std::cerr << "mailbox-service: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << config->Usage("mailbox-service");
    return 0;
  }
  {
    auto format = log::ParseFormat(config->Get("log-format"), STDERR_FILENO);
    if (!format.ok()) {
      std::cerr << "mailbox-service: " << format.status().message() << "\n";
      return 2;
    }
    auto rate_limit = config->GetInt("log-rate-limit");
    if (!rate_limit.ok() || *rate_limit < 0 || *rate_limit > 1'000'000) {
      std::cerr << "mailbox-service: --log-rate-limit must be from 0 to 1000000\n";
      return 2;
    }
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    log::LoggerOptions log_options;
    log_options.format = *format;
    // The replica's name in every line: the host name (a Kubernetes pod's name).
    log_options.common_fields = {{"replica", host}};
    log_options.max_lines_per_second = static_cast<int>(*rate_limit);
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
  if (const std::vector<std::string> backends = store::Backends();
      std::find(backends.begin(), backends.end(), config->Get("backend")) == backends.end()) {
    std::cerr << "mailbox-service: unknown --backend \"" << config->Get("backend")
              << "\"; this build has: " << absl::StrJoin(backends, ", ") << "\n";
    return 2;
  }
  // Block the shutdown signals before any thread starts, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

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

  store::StoreLimits limits;
  auto max_message = config->GetInt("max-message-bytes");
  auto memory = config->GetInt("argon2-memory-kib");
  auto passes = config->GetInt("argon2-time-cost");
  auto scram_iterations = config->GetInt("scram-iterations");
  auto user_free = config->GetInt("auth-user-free-failures");
  auto ip_free = config->GetInt("auth-ip-free-failures");
  auto max_records = config->GetInt("auth-max-failure-records");
  auto window = config->GetInt("auth-failure-window-seconds");
  auto max_delay = config->GetInt("auth-max-delay-seconds");
  auto per_address = config->GetInt("auth-max-records-per-address");
  auto ipv6_prefix = config->GetInt("auth-ipv6-prefix");
  auto lifetime = config->GetInt("session-lifetime-seconds");
  auto drain = config->GetInt("drain-seconds");
  for (const auto* value : {&max_message, &memory, &passes, &user_free, &ip_free, &max_records,
                            &window, &max_delay, &lifetime, &drain, &per_address, &ipv6_prefix,
                            &scram_iterations}) {
    if (!value->ok()) {
      std::cerr << "mailbox-service: " << value->status().message() << "\n";
      return 2;
    }
  }
  limits.max_message_octets = static_cast<uint64_t>(*max_message);
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
  if (auto pg_connections = config->GetInt("postgres-max-connections");
      !pg_connections.ok() || *pg_connections < 2 || *pg_connections > 10000) {
    std::cerr << "mailbox-service: --postgres-max-connections must be between 2 and 10000\n";
    return 2;
  } else {
    backend.postgres_max_connections = static_cast<int>(*pg_connections);
  }
  auto store = store::OpenBackend(backend, limits,
                                  [&hub](const v1::ChangeEvent& e) { hub.Publish(e); });
  if (!store.ok()) {
    std::cerr << "mailbox-service: cannot open the store: " << store.status().message() << "\n";
    return 1;
  }
  AuthOptions auth_options;
  auth_options.hash.memory_kib = static_cast<uint32_t>(*memory);
  auth_options.hash.time_cost = static_cast<uint32_t>(*passes);
  if (*scram_iterations < scram::kMinIterations || *scram_iterations > scram::kMaxIterations) {
    std::cerr << "mailbox-service: --scram-iterations must be from " << scram::kMinIterations
              << " to " << scram::kMaxIterations << " (RFC 7677 asks for at least 4096)\n";
    return 2;
  }
  auth_options.hash.scram_iterations = static_cast<uint32_t>(*scram_iterations);
  auth_options.throttle.user_free_failures = static_cast<int>(*user_free);
  auth_options.throttle.ip_free_failures = static_cast<int>(*ip_free);
  // The upper bound only keeps the millisecond arithmetic far from overflow.
  constexpr int64_t kLargest = 1'000'000'000;
  for (int64_t value : {*max_records, *window, *max_delay, *lifetime}) {
    if (value < 1 || value > kLargest) {
      std::cerr << "mailbox-service: --auth-max-failure-records, --auth-failure-window-seconds, "
                   "--auth-max-delay-seconds and --session-lifetime-seconds must be at least 1 "
                   "and at most "
                << kLargest << "\n";
      return 2;
    }
  }
  if (*ipv6_prefix < 32 || *ipv6_prefix > 128) {
    std::cerr << "mailbox-service: --auth-ipv6-prefix must be between 32 and 128\n";
    return 2;
  }
  if (*per_address < 0 || *per_address > kLargest) {
    std::cerr << "mailbox-service: --auth-max-records-per-address must be between 0 (derived) "
                 "and "
              << kLargest << "\n";
    return 2;
  }
  auth_options.throttle.ipv6_prefix_bits = static_cast<int>(*ipv6_prefix);
  auth_options.throttle.max_records_per_address = *per_address;
  auth_options.throttle.max_records = *max_records;
  auth_options.throttle.window_ms = *window * 1000;
  auth_options.throttle.max_delay_ms = *max_delay * 1000;
  auth_options.session_lifetime_s = *lifetime;
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
  auto auth = Authenticator::Create(store->get(), auth_options, *std::move(session_keys));
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

  MailboxService mailbox_service(store->get(), auth->get(), &hub, *admin_token, limits,
                                 service_options);
  AdminService admin_service(store->get(), &mailbox_service, auth_options.hash);
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
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "mailbox-service: cannot listen on " << config->Get("listen")
              << " (is another process using that address?)\n";
    return 1;
  }
  if (const std::string& port_file = config->Get("port-file"); !port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    std::filesystem::rename(port_file + ".tmp", port_file);
  }
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
    bool serving = true;
    while (!stop_health.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      const bool healthy = (*store)->Healthy();
      if (healthy != serving) {
        serving = healthy;
        health->SetServingStatus(serving);
        if (serving) {
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
            {{"signal", strsignal(signal_number)}, {"drain_timeout_ms", *drain * 1000}});
  stop_health.Notify();
  health_watch.join();
  // Gateways stop choosing this replica for new calls while it drains.
  health->SetServingStatus(false);
  mailbox_service.BeginShutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(*drain));
  server->Wait();
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
