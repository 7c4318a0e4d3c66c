// imap-gateway: the stateless IMAP front end. Accepts IMAPS (993) and IMAP with
// STARTTLS (143) on N worker threads, parses IMAP and turns each command into calls
// on the mailbox service through storage-client. Each worker has one change-feed
// stream shared by its sessions.
//
// Signals: SIGHUP reloads the TLS certificate and key; SIGTERM drains and exits 0:
// /readyz fails at once while the listeners still accept for --shutdown-grace, then
// the listeners close and sessions end with BYE [UNAVAILABLE] at their next safe
// point; those still open after --drain-timeout are closed (ops/drain.h). SIGINT
// does the same without the grace period.
//
// `imap-gateway drain` asks the gateway running with the same settings, through its
// operator endpoint on loopback, to start that drain, and returns when the grace
// period is over: a preStop hook for orchestrators that send SIGTERM after it.
//
// Logs: one event per line on stderr, JSON or text (--log-format; common/log/log.h).
// stdout carries only the start-up line that tools read ("IMAPS port N").
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detached.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/json.hpp"
#include "common/log/events.h"
#include "common/log/log.h"
#include "gateway/net/config.h"
#include "gateway/net/listener.h"
#include "gateway/ops/drain.h"
#include "gateway/ops/http_server.h"
#include "gateway/ops/memory_return.h"
#include "common/metrics/grpc_metrics.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/feed_router.h"
#include "gateway/session/session.h"
#include "common/config.h"
#include "storage-client/channel_credentials.h"
#include "storage-client/grpc_mailbox_store.h"
#include "storage-client/link_token.h"

namespace gateway {
namespace {

namespace asio = boost::asio;

namespace config = mailbox::config;

// The settings of imap-gateway besides the network ones (net::NetSettings()): one row
// each, {flag name, environment variable, default, help, type} (common/config.h).
std::vector<config::Setting> Settings() {
  std::vector<config::Setting> settings = net::NetSettings();
  std::vector<config::Setting> rows = {
      {"store", "IMAPD_STORE", "127.0.0.1:50051",
       "mailbox service address (host:port, unix:/path, a DNS name resolving to every "
       "replica, or a comma-separated list of numeric host:port of replicas)"},
      {"store-channels", "IMAPD_STORE_CHANNELS", "2", "gRPC channels to the mailbox service",
       config::Int(1, 64)},
      {"store-ca-file", "IMAPD_STORE_CA_FILE", "",
       "PEM CA of the mailbox service's certificate; turns TLS on for the link"},
      {"store-cert-file", "IMAPD_STORE_CERT_FILE", "",
       "PEM client certificate this gateway presents to the mailbox service"},
      {"store-key-file", "IMAPD_STORE_KEY_FILE", "", "PEM key of --store-cert-file"},
      {"store-tls-server-name", "IMAPD_STORE_TLS_SERVER_NAME", "",
       "name the service's certificate must carry, if not the host in --store"},
      {"store-tls-reload-interval", "IMAPD_STORE_TLS_RELOAD_INTERVAL", "1m",
       "how often the link's CA, certificate and key files are re-read",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"store-token-file", "IMAPD_STORE_TOKEN_FILE", "",
       "the mailbox service's gateway token file (its <data-dir>/gateway.token): with it "
       "the service throttles logins by the IMAP client's IP, not this gateway's "
       "(re-read when it changes)"},
      {"http-listen", "IMAPD_HTTP_LISTEN", "127.0.0.1:8143",
       "operator endpoint (/healthz /readyz /metrics); empty disables",
       config::String([](std::string_view value) {
         return value.empty() ? absl::OkStatus()
                              : net::ParseListenAddress(value, 8143).status();
       })},
      {"ports-file", "IMAPD_PORTS_FILE", "", "write the bound ports here as JSON once listening"},
      {"gateway-id", "IMAPD_GATEWAY_ID", "", "this replica's name in the service's logs"},
      {"allow-plaintext-auth", "IMAPD_ALLOW_PLAINTEXT_AUTH", "false",
       "allow LOGIN/AUTHENTICATE without TLS (otherwise LOGINDISABLED)", config::Bool()},
      {"auth-login", "IMAPD_AUTH_LOGIN", "false",
       "offer the SASL LOGIN mechanism (AUTH=LOGIN) for old clients, where PLAIN is offered",
       config::Bool()},
      {"auth-scram", "IMAPD_AUTH_SCRAM", "true",
       "offer SCRAM-SHA-256 where PLAIN is offered, and SCRAM-SHA-256-PLUS where TLS gives "
       "a channel binding (off while the mailbox service is older than this gateway)",
       config::Bool()},
      {"oauth", "IMAPD_OAUTH", "false",
       "offer AUTHENTICATE OAUTHBEARER and XOAUTH2 over TLS; the mailbox service checks the "
       "tokens (start it with --oauth-jwks)",
       config::Bool()},
      {"oauth-scope", "IMAPD_OAUTH_SCOPE", "",
       "with --oauth: the scope named in the error a refused token gets (RFC 7628 §3.2.2)"},
      {"oauth-openid-configuration", "IMAPD_OAUTH_OPENID_CONFIGURATION", "",
       "with --oauth: the identity provider's OpenID configuration URL, named in that error"},
      // Whole seconds: the session's timers count seconds.
      {"unauthenticated-timeout", "IMAPD_UNAUTHENTICATED_TIMEOUT", "1m",
       "how long a connection may stay unauthenticated (not reset by commands)",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"autologout", "IMAPD_AUTOLOGOUT", "30m", "inactivity before autologout",
       config::Duration(absl::Seconds(1), absl::Hours(24 * 7))},
      {"idle-keepalive", "IMAPD_IDLE_KEEPALIVE", "2m",
       "time between \"* OK Still here\" during IDLE",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"max-auth-failures", "IMAPD_MAX_AUTH_FAILURES", "4",
       "failed LOGIN/AUTHENTICATE per connection before BYE", config::Int(1, 1000)},
      {"max-line-length", "IMAPD_MAX_LINE_LENGTH", "64KiB", "command text octets per command",
       config::Size(1024, 64 << 20)},
      {"max-literal-size", "IMAPD_MAX_LITERAL_SIZE", "64KiB",
       "largest literal outside APPEND message data", config::Size(0, 1 << 30)},
      {"max-append-size", "IMAPD_MAX_APPEND_SIZE", "64MiB", "largest APPEND message",
       config::Size(0, int64_t{1} << 40)},
      {"max-literals", "IMAPD_MAX_LITERALS", "1000", "literals per command",
       config::Int(0, 1 << 30)},
      {"max-catenate-parts", "IMAPD_MAX_CATENATE_PARTS", "256",
       "TEXT and URL parts of one CATENATE message (RFC 4469)", config::Int(0, 1 << 30)},
      {"catenate-url-hosts", "IMAPD_CATENATE_URL_HOSTS", "",
       "comma-separated host names clients reach this gateway by: an absolute imap:// URL "
       "in CATENATE must name one of them and the logged-in user (empty: only relative "
       "URLs)"},
      {"max-unauthenticated-literal", "IMAPD_MAX_UNAUTHENTICATED_LITERAL", "8KiB",
       "literal octets per command before LOGIN/AUTHENTICATE", config::Size(0, 1 << 30)},
      {"max-nesting", "IMAPD_MAX_NESTING", "32", "parenthesis nesting depth",
       config::Int(1, 10000)},
      {"max-search-ranges", "IMAPD_MAX_SEARCH_RANGES", "100000",
       "UID ranges one SEARCH may send to the mailbox service, over all its keys",
       config::Int(1, 1 << 30)},
      {"max-pending-changes", "IMAPD_MAX_PENDING_CHANGES", "20000",
       "unreported changes of the selected mailbox a session may hold before BYE",
       config::Int(1, 1 << 30)},
      {"fetch-cache-size", "IMAPD_FETCH_CACHE_SIZE", "64MiB",
       "static message data (ENVELOPE, BODYSTRUCTURE, sizes, dates, sections up to 64 KiB) "
       "each worker keeps to answer FETCH without the mailbox service; 0 disables",
       config::Size(0, int64_t{1} << 40)},
      {"max-notify-mailboxes", "IMAPD_MAX_NOTIFY_MAILBOXES", "1000",
       "mailboxes one session may watch with NOTIFY besides the selected one (and "
       "mailbox-list changes it may hold unread); 0 turns NOTIFY off",
       config::Int(0, 1 << 30)},
      {"max-known-flags", "IMAPD_MAX_KNOWN_FLAGS", "10000",
       "messages of the selected mailbox whose flags a session keeps to answer FETCH "
       "FLAGS without the mailbox service",
       config::Int(0, 1 << 30)},
      {"max-live-results", "IMAPD_MAX_LIVE_RESULTS", "8",
       "searches and sorts one session may keep live with RETURN (UPDATE) (RFC 5267)",
       config::Int(0, 1 << 20)},
      {"max-live-result-size", "IMAPD_MAX_LIVE_RESULT_SIZE", "100000",
       "messages one live search or sort may hold", config::Int(0, 1 << 30)},
      {"read-timeout", "IMAPD_READ_TIMEOUT", "1m",
       "time to wait for the next octets of a literal the client announced",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"min-append-rate", "IMAPD_MIN_APPEND_RATE", "1024",
       "octets per second an APPEND message literal must average (plus --read-timeout "
       "of grace); 0 disables",
       config::Int(0, int64_t{1} << 40)},
      // A gRPC message carries at most 4 MiB by default; a chunk stays well below.
      {"append-chunk-size", "IMAPD_APPEND_CHUNK_SIZE", "256KiB",
       "part of an APPEND literal a session gathers before sending it to the store; "
       "0 sends each network read",
       config::Size(0, 1 << 20)},
      {"max-tag-length", "IMAPD_MAX_TAG_LENGTH", "64", "octets in a command tag",
       config::Int(1, 1 << 20)},
      {"max-compressed-connections", "IMAPD_MAX_COMPRESSED_CONNECTIONS", "1000",
       "sessions that may have COMPRESS=DEFLATE active at once (about 80 KiB each); "
       "0 disables COMPRESS",
       config::Int(0, 100'000'000)},
      {"literal-minus", "IMAPD_LITERAL_MINUS", "false",
       "advertise LITERAL- (non-synchronising literals up to 4096 octets) instead of LITERAL+",
       config::Bool()},
      {"log-format", "IMAPD_LOG_FORMAT", "auto",
       "logs on stderr: json (one object per line), text, or auto (text on a terminal, "
       "else JSON)",
       config::OneOf({"auto", "json", "text"})},
      {"log-rate-limit", "IMAPD_LOG_RATE_LIMIT", "100",
       "lines a second each log event may write; the rest are counted in a "
       "log_suppressed line (0: no limit)",
       config::Int(0, 1'000'000)},

      // Former names, refused with the new one.
      {"store-tls-reload-seconds", "IMAPD_STORE_TLS_RELOAD_SECONDS", "", "",
       config::RenamedTo("store-tls-reload-interval")},
      {"fetch-cache-mib", "IMAPD_FETCH_CACHE_MIB", "", "", config::RenamedTo("fetch-cache-size")},
      {"append-chunk-kib", "IMAPD_APPEND_CHUNK_KIB", "", "",
       config::RenamedTo("append-chunk-size")},
  };
  settings.insert(settings.end(), rows.begin(), rows.end());
  return settings;
}

// An integer setting (checked against its range at start) into `out`.
template <typename T>
void ReadInt(const config::Config& config, const char* name, T* out) {
  *out = static_cast<T>(config.GetInt(name).value_or(0));
}

std::chrono::seconds Seconds(const config::Config& config, const char* name) {
  return std::chrono::seconds(absl::ToInt64Seconds(config.GetDuration(name)));
}

// `imap-gateway drain`: POST /drain to this configuration's operator endpoint.
int RunDrainRequest(const net::NetConfig& net_config, const config::Config& config) {
  const std::string& http = config.Get("http-listen");
  if (http.empty()) {
    std::cerr << "imap-gateway drain: --http-listen is empty, so there is no operator "
                 "endpoint to ask\n";
    return 2;
  }
  auto address = net::ParseListenAddress(http, 8143);
  if (!address.ok()) {
    std::cerr << "imap-gateway drain: --http-listen: " << address.status().message() << "\n";
    return 2;
  }
  // The endpoint answers drain requests from loopback only; a wildcard listen address
  // is reached on loopback.
  std::string host = address->host;
  if (host == "0.0.0.0" || host.empty()) {
    host = "127.0.0.1";
  } else if (host == "::") {
    host = "::1";
  }
  const auto timeout = net_config.shutdown_grace + std::chrono::seconds(30);
  auto status = ops::RequestDrain(host, address->port, timeout);
  if (!status.ok()) {
    std::cerr << "imap-gateway drain: " << status.message() << "\n";
    return 1;
  }
  std::cout << "imap-gateway drain: the gateway on " << host << ":" << address->port
            << " is draining; its grace period is over" << std::endl;
  return 0;
}

int Run(int argc, char** argv) {
  // Signals are taken by sigwait below, never by another thread: blocked before
  // any thread starts (the logger's, gRPC's, the workers), which inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const bool drain_request = argc > 1 && std::string_view(argv[1]) == "drain";
  if (drain_request) {
    // The rest of the arguments are the gateway's own settings.
    --argc;
    ++argv;
  }
  config::Program program;
  program.name = "imap-gateway";
  program.env_prefix = "IMAPD_";
  program.config_env = "IMAPD_CONFIG";
  // tools/run-cluster.sh's own variables, in the environment it starts gateways in.
  program.foreign_env = {"IMAPD_BIN_DIR", "IMAPD_CLUSTER_DIR", "IMAPD_CLUSTER_PORT_OFFSET"};
  auto config = config::Config::Parse(program, Settings(),
                                      std::vector<std::string>(argv + 1, argv + argc),
                                      config::ProcessEnvironment());
  if (!config.ok()) {
    std::cerr << "imap-gateway: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << config->Usage("imap-gateway");
    return 0;
  }
  if (config->print_config_requested()) {
    std::cout << config->PrintConfig();
    return 0;
  }
  auto net_config = net::NetConfigFrom(*config);
  if (!net_config.ok()) {
    std::cerr << "imap-gateway: " << net_config.status().message() << "\n";
    return 2;
  }
  if (drain_request) {
    return RunDrainRequest(*net_config, *config);
  }
  if (auto status = net::ValidateNetConfig(*net_config); !status.ok()) {
    std::cerr << "imap-gateway: " << status.message() << "\n";
    return 2;
  }
  {
    auto format = mailbox::log::ParseFormat(config->Get("log-format"), STDERR_FILENO);
    int rate_limit = 0;
    if (!format.ok()) {
      std::cerr << "imap-gateway: " << format.status().message() << "\n";
      return 2;
    }
    ReadInt(*config, "log-rate-limit", &rate_limit);
    mailbox::log::LoggerOptions log_options;
    log_options.format = *format;
    log_options.common_fields = {{"gateway_id", config->Get("gateway-id")}};
    log_options.max_lines_per_second = rate_limit;
    mailbox::log::Configure(std::move(log_options));
    mailbox::log::Global().StartFlushing();
  }
  namespace log = mailbox::log;

  SessionOptions options;
  ReadInt(*config, "max-auth-failures", &options.max_auth_failures);
  ReadInt(*config, "max-line-length", &options.limits.max_line_length);
  ReadInt(*config, "max-literal-size", &options.limits.max_literal_size);
  ReadInt(*config, "max-append-size", &options.limits.max_append_literal_size);
  ReadInt(*config, "max-literals", &options.limits.max_literals_per_command);
  ReadInt(*config, "max-catenate-parts", &options.limits.max_catenate_parts);
  ReadInt(*config, "max-unauthenticated-literal",
          &options.limits.max_unauthenticated_literal_octets);
  ReadInt(*config, "max-nesting", &options.limits.max_nesting_depth);
  ReadInt(*config, "max-search-ranges", &options.max_search_uid_ranges);
  ReadInt(*config, "max-pending-changes", &options.max_pending_changes);
  ReadInt(*config, "max-known-flags", &options.max_known_flags);
  ReadInt(*config, "max-notify-mailboxes", &options.max_notify_mailboxes);
  ReadInt(*config, "max-live-results", &options.max_live_results);
  ReadInt(*config, "max-live-result-size", &options.max_live_result_size);
  ReadInt(*config, "min-append-rate", &options.min_append_rate);
  ReadInt(*config, "max-tag-length", &options.limits.max_tag_length);
  ReadInt(*config, "max-compressed-connections", &options.max_compressed_connections);
  ReadInt(*config, "append-chunk-size", &options.append_chunk_octets);
  const size_t fetch_cache_octets = static_cast<size_t>(config->GetSize("fetch-cache-size"));
  options.unauthenticated_timeout = Seconds(*config, "unauthenticated-timeout");
  options.autologout = Seconds(*config, "autologout");
  options.read_timeout = Seconds(*config, "read-timeout");
  options.idle_keepalive = Seconds(*config, "idle-keepalive");
  options.allow_plaintext_auth = config->GetBool("allow-plaintext-auth");
  options.allow_auth_login = config->GetBool("auth-login");
  options.allow_scram = config->GetBool("auth-scram");
  options.oauth = config->GetBool("oauth");
  options.oauth_scope = config->Get("oauth-scope");
  for (absl::string_view host : absl::StrSplit(config->Get("catenate-url-hosts"), ',',
                                              absl::SkipWhitespace())) {
    options.catenate_url_hosts.push_back(
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(host)));
  }
  options.oauth_openid_configuration = config->Get("oauth-openid-configuration");
  options.limits.literal_minus = config->GetBool("literal-minus");
  options.tls_handshake_timeout =
      std::chrono::duration_cast<std::chrono::seconds>(net_config->tls_handshake_timeout);
  options.gateway_id = config->Get("gateway-id");


  auto tls = net::TlsContextProvider::Create(net::TlsFilesOf(*net_config), {},
                                             net_config->tls_ticket_key_rotation);
  if (!tls.ok()) {
    std::cerr << "imap-gateway: " << tls.status().message() << "\n";
    return 1;
  }
  mailbox::client::GrpcMailboxStoreOptions store_options;
  store_options.target = config->Get("store");
  ReadInt(*config, "store-channels", &store_options.channels);
  if (!options.gateway_id.empty()) {
    store_options.metadata.emplace_back("x-gateway-id", options.gateway_id);
  }
  mailbox::client::ChannelTlsOptions link;
  link.ca_file = config->Get("store-ca-file");
  link.cert_file = config->Get("store-cert-file");
  link.key_file = config->Get("store-key-file");
  link.server_name = config->Get("store-tls-server-name");
  link.reload_seconds =
      static_cast<int>(absl::ToInt64Seconds(config->GetDuration("store-tls-reload-interval")));
  auto credentials = mailbox::client::MakeChannelCredentials(link);
  if (!credentials.ok()) {
    std::cerr << "imap-gateway: the mailbox service link: " << credentials.status().message()
              << "\n";
    return 2;
  }
  store_options.credentials = *credentials;
  mailbox::client::ApplyChannelTlsArgs(link, &store_options.channel_args);
  if (const std::string& token_path = config->Get("store-token-file"); !token_path.empty()) {
    // A missing file is waited for (a gateway may start before the service that makes
    // it); a file that is there but refused is a setup error to fix now.
    auto token = mailbox::client::ReadLinkToken(token_path, /*must_be_own=*/false);
    if (!token.ok() && !absl::IsNotFound(token.status())) {
      std::cerr << "imap-gateway: --store-token-file: " << token.status().message() << "\n";
      return 2;
    }
    if (!token.ok()) {
      log::Warning(log::event::kWarning,
                   {{"message", absl::StrCat(token_path,
                                             " does not exist yet; until the service makes "
                                             "it, logins are throttled by this gateway's "
                                             "address")}});
    }
    store_options.gateway_token = std::make_shared<mailbox::client::LinkTokenFile>(
        token_path, token.ok() ? *std::move(token) : std::string(),
        mailbox::client::LinkTokenFileOptions{});
  } else if (link.cert_file.empty()) {
    log::Warning(log::event::kWarning,
                 {{"message",
                   "neither --store-token-file nor --store-cert-file: the mailbox service will "
                   "throttle all logins through this gateway as one client (its address)"}});
  }
  // Every call to the service is timed per method (imapd_gateway_store_rpc_*).
  store_options.interceptors = [] {
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> out;
    out.push_back(ops::GlobalMetrics().StoreRpcs().ClientFactory());
    return out;
  };
  auto store = mailbox::client::GrpcMailboxStore::Create(store_options);
  if (!store.ok()) {
    std::cerr << "imap-gateway: " << store.status().message() << "\n";
    return 1;
  }

  // Per-worker context: routers are created on their worker's executor below.
  auto pool_options = net::WorkerPoolOptionsOf(*net_config);
  pool_options.on_refused = [](net::Refusal reason, net::ListenerKind kind) {
    // ops::kRefusalReasons lists the reasons in net::Refusal's order.
    ops::GlobalMetrics().Refused(static_cast<size_t>(reason), MetricsListener(kind));
  };
  size_t workers = pool_options.workers == 0 ? std::max(1u, std::thread::hardware_concurrency())
                                             : pool_options.workers;
  pool_options.workers = workers;
  std::vector<std::unique_ptr<WorkerContext>> contexts(workers);
  std::vector<std::unique_ptr<FeedRouter>> routers(workers);
  // Declared before the pool: session frames the pool destroys may still use them.
  std::vector<std::unique_ptr<FetchCache>> fetch_caches(workers);
  auto handler = [&contexts](net::Stream stream, net::ConnectionInfo info) {
    return ServeConnection(std::move(stream), info, contexts[info.worker].get());
  };
  auto pool = net::WorkerPool::Create(std::move(pool_options), handler);
  if (!pool.ok()) {
    std::cerr << "imap-gateway: " << pool.status().message() << "\n";
    return 1;
  }
  // Per worker: the mailboxes and mailbox lists its change feed subscribes to.
  std::vector<std::vector<std::string>> worker_labels;
  for (size_t i = 0; i < workers; ++i) {
    worker_labels.push_back({std::to_string(i)});
  }
  auto& feed_mailboxes = ops::GlobalMetrics().registry.AddGaugeFamily(
      "imapd_gateway_feed_subscribed_mailboxes",
      "Mailboxes the change feed of each worker subscribes to (one per mailbox that "
      "sessions of the worker have selected or watch with NOTIFY).",
      {"worker"}, worker_labels);
  auto& feed_lists = ops::GlobalMetrics().registry.AddGaugeFamily(
      "imapd_gateway_feed_subscribed_lists",
      "Users whose mailbox list the change feed of each worker subscribes to (NOTIFY).",
      {"worker"}, worker_labels);
  for (size_t i = 0; i < workers; ++i) {
    routers[i] = std::make_unique<FeedRouter>(**store, (*pool)->worker_executor(i));
    routers[i]->set_gauges(&feed_mailboxes.At(i), &feed_lists.At(i));
    contexts[i] = std::make_unique<WorkerContext>();
    contexts[i]->store = store->get();
    contexts[i]->router = routers[i].get();
    contexts[i]->tls = tls->get();
    contexts[i]->options = &options;
    if (fetch_cache_octets > 0) {
      fetch_caches[i] = std::make_unique<FetchCache>(fetch_cache_octets);
      contexts[i]->fetch_cache = fetch_caches[i].get();
    }
  }

  // Operator endpoint on its own small thread.
  auto& metrics = ops::GlobalMetrics();
  ops::Drain drain(net_config->shutdown_grace, metrics);
  ops::HttpHooks http_hooks;
  http_hooks.drain = &drain;
  // Readiness reads the channels' state without waiting (the endpoint has one
  // thread): asking also starts a connection on an idle channel, so the next probe
  // sees it up.
  http_hooks.store_ready = [grpc_store = store->get()] {
    return grpc_store->Reachable(std::chrono::milliseconds(0));
  };
  asio::io_context http_io;
  std::unique_ptr<asio::ip::tcp::acceptor> http_acceptor;
  uint16_t http_port = 0;
  if (const std::string& http = config->Get("http-listen"); !http.empty()) {
    auto address = net::ParseListenAddress(http, 8143);
    if (!address.ok()) {
      std::cerr << "imap-gateway: --http-listen: " << address.status().message() << "\n";
      return 2;
    }
    boost::system::error_code ec;
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address(address->host, ec), address->port);
    if (ec) {
      std::cerr << "imap-gateway: --http-listen: bad address " << address->host << "\n";
      return 2;
    }
    auto acceptor = mailbox::ops::ListenOn(http_io, endpoint, http);
    if (!acceptor.ok()) {
      std::cerr << "imap-gateway: " << acceptor.status().message() << "\n";
      return 1;
    }
    http_acceptor = *std::move(acceptor);
    http_port = http_acceptor->local_endpoint().port();
    asio::co_spawn(http_io, ops::ServeHttp(*http_acceptor, metrics, http_hooks),
                   [](std::exception_ptr e) {
      if (e) {
        log::Error(log::event::kInternalError,
                   {{"detail", "http endpoint stopped by an exception"}});
      }
    });
  }
  // Also on the operator thread: heap memory freed by closed connections goes back
  // to the kernel once their number has fallen (ops/memory_return.h).
  asio::co_spawn(http_io, ops::ReturnFreedMemory(metrics), asio::detached);
  std::thread http_thread([&http_io] { http_io.run(); });

  (*tls)->StartWatching((*pool)->worker_executor(0),
                        net_config->tls_reload_interval.count() > 0
                            ? std::chrono::steady_clock::duration(net_config->tls_reload_interval)
                            : std::chrono::hours(24 * 365));
  (*pool)->Start();
  metrics.ready = true;

  // Listener order follows NetConfig: IMAPS addresses first, then IMAP.
  uint16_t imaps_port = 0, imap_port = 0;
  size_t listener = 0;
  for (size_t i = 0; i < net_config->imaps_listen.size(); ++i, ++listener) {
    if (i == 0) imaps_port = (*pool)->bound_endpoint(listener).port();
  }
  for (size_t i = 0; i < net_config->imap_listen.size(); ++i, ++listener) {
    if (i == 0) imap_port = (*pool)->bound_endpoint(listener).port();
  }
  const boost::json::object ports = {
      {"imaps", imaps_port}, {"imap", imap_port}, {"http", http_port}};
  if (const std::string& file = config->Get("ports-file"); !file.empty()) {
    std::ofstream(file + ".tmp") << boost::json::serialize(ports) << "\n";
    std::rename((file + ".tmp").c_str(), file.c_str());
  }
  std::cout << "imap-gateway: " << workers << " workers, IMAPS port " << imaps_port
            << ", IMAP+STARTTLS port " << imap_port << ", /metrics on port " << http_port
            << ", mailbox service " << store_options.target
            << (!link.tls()                ? " (plaintext)"
                : link.cert_file.empty() ? " (TLS)"
                                         : " (mutual TLS)")
            << std::endl;
  log::Info(log::event::kStarted,
            {{"workers", workers},
             {"imaps_port", imaps_port},
             {"imap_port", imap_port},
             {"http_port", http_port},
             {"store", store_options.target},
             {"store_link", !link.tls()                ? "plaintext"
                            : link.cert_file.empty() ? "tls"
                                                     : "mutual_tls"}});

  int signal_number = 0;
  while (true) {
    sigwait(&signals, &signal_number);
    if (signal_number == SIGHUP) {
      // Reload() logs cert_reload, ok or failed.
      auto reloaded = (*tls)->Reload();
      if (reloaded.ok()) {
        metrics.cert_reloads.fetch_add(1);
      }
      continue;
    }
    break;
  }
  const bool requested = drain.started();
  // SIGINT is a person at a terminal: no balancer to wait for.
  const auto grace_end = signal_number == SIGINT ? std::chrono::steady_clock::now() : drain.Begin();
  metrics.draining = true;
  const auto grace_left = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::max(grace_end - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration()));
  // Readiness fails from now on; the listeners accept for the rest of the grace
  // period (all of it, unless a drain request started it earlier).
  log::Info(log::event::kDraining,
            {{"signal", strsignal(signal_number)},
             {"since_drain_request", requested},
             {"accepting_for_ms", grace_left.count()},
             {"drain_timeout_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                      net_config->drain_timeout)
                                      .count()},
             {"sessions", (*pool)->active_connections()}});
  std::this_thread::sleep_until(grace_end);
  (*pool)->StopAccepting();
  log::Info(log::event::kListenersClosed, {{"sessions", (*pool)->active_connections()}});
  for (size_t i = 0; i < workers; ++i) {
    asio::post((*pool)->worker_executor(i), [context = contexts[i].get()] {
      DrainSessions(*context);
    });
  }
  (*tls)->StopWatching();
  (*pool)->Stop(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      net_config->drain_timeout));
  // The routers' feeds run on the workers' executors, so they go while the pool's
  // io_contexts still exist; a session frame the pool destroys later sees no router.
  for (size_t i = 0; i < workers; ++i) {
    contexts[i]->router = nullptr;
    routers[i].reset();
  }
  if (http_acceptor) {
    asio::post(http_io, [&] { http_acceptor->close(); });
  }
  http_io.stop();
  http_thread.join();
  log::Info(log::event::kStopped, {});
  log::Global().FlushSuppressed();
  return 0;
}

}  // namespace
}  // namespace gateway

int main(int argc, char** argv) {
  // Debian builds Abseil with Mutex deadlock detection on, which keeps a lock graph
  // on every Lock: 1-2 % of each process's CPU under load (bench/suite/profile_cpu.py).
  // The lock order is fixed by the code and covered by the tests, so it is off here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return gateway::Run(argc, argv);
}
