// QUOTA (RFC 9208): the service keeps the limits and the usage and refuses writes
// past them (NO [OVERQUOTA], mapped like every other service error); these
// handlers report them.

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "common/mailbox/names.h"
#include "gateway/session/commands/commands.h"

namespace gateway::commands {
namespace {

namespace v1 = ::mailbox::v1;
using ::mailbox::rules::CanonicalMailboxName;

std::vector<imap::QuotaResourceValue> ResourcesOf(const v1::GetQuotaResponse& response) {
  std::vector<imap::QuotaResourceValue> resources;
  resources.reserve(response.resources_size());
  for (const v1::QuotaResource& r : response.resources()) {
    resources.push_back({r.name(), r.usage(), r.limit()});
  }
  return resources;
}

}  // namespace

awaitable<void> GetQuota(CommandContext& session, const imap::GetQuotaCommand& command) {
  v1::GetQuotaRequest request;
  request.set_root(command.root);
  absl::StatusOr<v1::GetQuotaResponse> quota = co_await session.store().GetQuota(request);
  if (!quota.ok()) {
    session.Fail(quota.status(), "GETQUOTA");
    co_return;
  }
  session.Send(imap::QuotaResponse(command.root, ResourcesOf(*quota)));
  session.Ok("GETQUOTA completed");
}

awaitable<void> GetQuotaRoot(CommandContext& session, const imap::GetQuotaRootCommand& command) {
  std::optional<std::string> name = session.DecodeMailboxName(command.mailbox);
  if (!name.has_value()) {
    co_return;
  }
  v1::GetQuotaRequest request;
  request.set_mailbox(*name);
  absl::StatusOr<v1::GetQuotaResponse> quota = co_await session.store().GetQuota(request);
  if (!quota.ok()) {
    session.Fail(quota.status(), "GETQUOTAROOT");
    co_return;
  }
  // RFC 9208 §4.1.2: QUOTAROOT names the roots (none for a mailbox under no
  // quota), then one QUOTA per root. The service spells INBOX canonically.
  std::vector<std::string> roots(quota->roots().begin(), quota->roots().end());
  std::string line = imap::QuotaRootResponse(CanonicalMailboxName(*name), roots,
                                             session.utf8_accept());
  if (line.empty()) {
    session.Bad("mailbox name is not valid UTF-8");
    co_return;
  }
  session.Send(line);
  for (const std::string& root : roots) {
    session.Send(imap::QuotaResponse(root, ResourcesOf(*quota)));
  }
  session.Ok("GETQUOTAROOT completed");
}

awaitable<void> SetQuota(CommandContext& session, const imap::SetQuotaCommand&) {
  // RFC 9208 §4.1.3: SETQUOTA belongs to QUOTASET, which is not offered; an
  // administrator sets limits on the mailbox service.
  session.No("Quota limits are set by the server's administrator, not over IMAP", "NOPERM");
  co_return;
}

}  // namespace gateway::commands
