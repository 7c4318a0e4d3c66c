#include "common/mailbox/object_ids.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mailbox::rules {

std::string MailboxObjectId(uint64_t mailbox_id, uint32_t uidvalidity) {
  return absl::StrCat("F", mailbox_id, "V", uidvalidity);
}

std::string EmailObjectId(std::string_view sha256) {
  const std::string_view head = sha256.substr(0, 12);
  return absl::StrCat("M", absl::BytesToHexString(absl::string_view(head.data(), head.size())));
}

bool IsObjectId(std::string_view id) {
  if (id.empty() || id.size() > 255) {
    return false;
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace mailbox::rules
