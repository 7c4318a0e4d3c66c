// mailbox-service: the gRPC server that owns users, mailboxes, UIDs and MODSEQs.
//
// Starts on the embedded SQLite store in --data-dir, writes the admin token to
// <data-dir>/admin.token (mode 0600) for mailbox-admin, and drains gracefully on
// SIGTERM/SIGINT: feeds end, in-flight calls finish (up to --drain-seconds), then exit.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "mailbox-service/common/config.h"
#include "mailbox-service/server/auth.h"
#include "mailbox-service/server/change_hub.h"
#include "mailbox-service/server/limits.h"
#include "mailbox-service/server/service.h"
#include "mailbox-service/store/sqlite_store.h"

namespace mailbox::server {
namespace {

std::vector<config::Setting> Settings() {
  return {
      {"listen", "MAILBOX_LISTEN", "127.0.0.1:50051",
       "gRPC listen address (host:port, port 0 picks one; or unix:/path)"},
      {"data-dir", "MAILBOX_DATA_DIR", "./.data", "directory of the embedded store"},
      {"backend", "MAILBOX_BACKEND", "sqlite", "store backend (sqlite)"},
      {"demo-user", "MAILBOX_DEMO_USER", "",
       "create this user at start if missing, as name:password (for local use)"},
      {"port-file", "MAILBOX_PORT_FILE", "", "write the bound port here once listening"},
      {"drain-seconds", "MAILBOX_DRAIN_SECONDS", "20",
       "on SIGTERM, how long in-flight calls may take before they are cancelled"},
      {"argon2-memory-kib", "MAILBOX_ARGON2_MEMORY_KIB", "19456",
       "argon2id memory cost for new password hashes"},
      {"argon2-time-cost", "MAILBOX_ARGON2_TIME_COST", "2", "argon2id passes"},
      {"max-message-bytes", "MAILBOX_MAX_MESSAGE_BYTES", "67108864",
       "largest message accepted by Append/Revise"},
      {"auth-user-free-failures", "MAILBOX_AUTH_USER_FREE_FAILURES", "5",
       "failed logins per user (15 min window) before delays start"},
      {"auth-ip-free-failures", "MAILBOX_AUTH_IP_FREE_FAILURES", "20",
       "failed logins per client IP (15 min window) before delays start"},
  };
}

absl::StatusOr<std::string> LoadOrCreateAdminToken(const std::filesystem::path& path) {
  if (std::ifstream in(path); in) {
    std::string token;
    std::getline(in, token);
    if (!token.empty()) {
      return token;
    }
  }
  std::string token = RandomHex(32);
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << token << "\n";
    if (!out) {
      return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
    }
  }
  ::chmod(tmp.c_str(), 0600);
  std::filesystem::rename(tmp, path);
  return token;
}

int Run(int argc, char** argv) {
  std::vector<config::Setting> settings = Settings();
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
  if (config->Get("backend") != "sqlite") {
    std::cerr << "mailbox-service: unknown --backend \"" << config->Get("backend")
              << "\"; this build has: sqlite\n";
    return 2;
  }
  // Block the shutdown signals before any thread starts, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::filesystem::path data_dir = config->Get("data-dir");
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    std::cerr << "mailbox-service: cannot create data directory " << data_dir << ": "
              << ec.message() << "\n";
    return 1;
  }

  store::StoreLimits limits;
  auto max_message = config->GetInt("max-message-bytes");
  auto memory = config->GetInt("argon2-memory-kib");
  auto passes = config->GetInt("argon2-time-cost");
  auto user_free = config->GetInt("auth-user-free-failures");
  auto ip_free = config->GetInt("auth-ip-free-failures");
  auto drain = config->GetInt("drain-seconds");
  for (const auto* value : {&max_message, &memory, &passes, &user_free, &ip_free, &drain}) {
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
  auto store = store::SqliteStore::Open((data_dir / "mailbox.db").string(), limits,
                                        [&hub](const v1::ChangeEvent& e) { hub.Publish(e); });
  if (!store.ok()) {
    std::cerr << "mailbox-service: cannot open the store: " << store.status().message() << "\n";
    return 1;
  }
  AuthOptions auth_options;
  auth_options.hash.memory_kib = static_cast<uint32_t>(*memory);
  auth_options.hash.time_cost = static_cast<uint32_t>(*passes);
  auth_options.throttle.user_free_failures = static_cast<int>(*user_free);
  auth_options.throttle.ip_free_failures = static_cast<int>(*ip_free);
  auto auth = Authenticator::Create(store->get(), auth_options);
  if (!auth.ok()) {
    std::cerr << "mailbox-service: " << auth.status().message() << "\n";
    return 1;
  }
  auto admin_token = LoadOrCreateAdminToken(data_dir / "admin.token");
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

  MailboxService mailbox_service(store->get(), auth->get(), &hub, *admin_token, limits,
                                 service_options);
  AdminService admin_service(store->get(), &mailbox_service, auth_options.hash);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config->Get("listen"), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&mailbox_service);
  builder.RegisterService(&admin_service);
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.SetMaxSendMessageSize(8 << 20);
  ApplyLimits(*server_limits, &builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "mailbox-service: cannot listen on " << config->Get("listen") << "\n";
    return 1;
  }
  if (const std::string& port_file = config->Get("port-file"); !port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    std::filesystem::rename(port_file + ".tmp", port_file);
  }
  std::cout << "mailbox-service listening on " << config->Get("listen") << " (port " << port
            << "), data in " << std::filesystem::absolute(data_dir).string() << std::endl;

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::cout << "mailbox-service: " << strsignal(signal_number) << ", draining" << std::endl;
  mailbox_service.BeginShutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(*drain));
  server->Wait();
  std::cout << "mailbox-service: stopped" << std::endl;
  return 0;
}

}  // namespace
}  // namespace mailbox::server

int main(int argc, char** argv) {
  // Debian builds Abseil with Mutex deadlock detection on, which keeps a lock graph
  // on every Lock: 1-2 % of each process's CPU under load (bench/suite/profile_cpu.py).
  // The lock order is fixed by the code and covered by the tests, so it is off here.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return mailbox::server::Run(argc, argv);
}
