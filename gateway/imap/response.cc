#include "gateway/imap/response.h"

#include <algorithm>

#include "gateway/imap/lexer.h"
#include "gateway/imap/mutf7.h"

namespace imap {
namespace {

// TEXT-CHAR excludes CR and LF; NUL is not a CHAR at all.
std::string SanitizeText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    out += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
  }
  if (out.empty()) out = ".";
  return out;
}

std::string SanitizeCode(std::string_view code) {
  std::string out;
  for (char c : code) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f || c == ']') ? ' ' : c;
  }
  return out;
}

void AppendNamespaces(std::string& out, const Namespaces& namespaces) {
  if (namespaces.empty()) {
    out += "NIL";
    return;
  }
  out += '(';
  for (const auto& [prefix, delimiter] : namespaces) {
    out += '(';
    AppendString(out, prefix);
    out += ' ';
    if (delimiter == 0) {
      out += "NIL";
    } else {
      AppendQuoted(out, std::string_view(&delimiter, 1));
    }
    out += ')';
  }
  out += ')';
}

}  // namespace

bool CanQuote(std::string_view s, bool utf8) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u == 0 || c == '\r' || c == '\n') return false;
    if (u >= 0x80 && !utf8) return false;
  }
  return !utf8 || IsValidUtf8(s);
}

bool IsAtom(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!internal::IsAStringChar(c)) return false;
  }
  return true;
}

void AppendQuoted(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void AppendLiteral(std::string& out, std::string_view s, LiteralForm form) {
  out += '{';
  out += std::to_string(s.size());
  if (form == LiteralForm::kNonSynchronizing) out += '+';
  out += "}\r\n";
  out += s;
}

void AppendString(std::string& out, std::string_view s, bool utf8, LiteralForm form) {
  if (CanQuote(s, utf8)) {
    AppendQuoted(out, s);
  } else {
    AppendLiteral(out, s, form);
  }
}

void AppendAString(std::string& out, std::string_view s, bool utf8, LiteralForm form) {
  if (IsAtom(s)) {
    out += s;
  } else {
    AppendString(out, s, utf8, form);
  }
}

void AppendNString(std::string& out, const std::optional<std::string>& s, bool utf8) {
  if (s.has_value()) {
    AppendString(out, *s, utf8);
  } else {
    out += "NIL";
  }
}

bool AppendMailbox(std::string& out, std::string_view utf8_name, bool utf8_accept) {
  if (utf8_accept) {
    if (!IsValidUtf8(utf8_name)) return false;
    AppendAString(out, utf8_name, /*utf8=*/true);
    return true;
  }
  Result<std::string> encoded = EncodeModifiedUtf7(utf8_name);
  if (!encoded.ok()) return false;
  AppendAString(out, *encoded);
  return true;
}

void AppendFlagList(std::string& out, const std::vector<std::string>& flags) {
  out += '(';
  for (size_t i = 0; i < flags.size(); ++i) {
    if (i > 0) out += ' ';
    out += flags[i];
  }
  out += ')';
}

std::string StatusResponse(std::string_view tag, Status status, std::string_view code,
                           std::string_view text) {
  static constexpr std::string_view kNames[] = {"OK", "NO", "BAD", "PREAUTH", "BYE"};
  std::string out(tag);
  out += ' ';
  out += kNames[static_cast<int>(status)];
  out += ' ';
  if (!code.empty()) {
    out += '[';
    out += SanitizeCode(code);
    out += "] ";
  }
  out += SanitizeText(text);
  out += "\r\n";
  return out;
}

std::string ContinuationResponse(std::string_view text) {
  return "+ " + SanitizeText(text) + "\r\n";
}

namespace code {

std::string Capability(const std::vector<std::string>& capabilities) {
  std::string out = "CAPABILITY";
  for (const std::string& c : capabilities) out += " " + c;
  return out;
}
std::string UidValidity(uint32_t v) { return "UIDVALIDITY " + std::to_string(v); }
std::string UidNext(uint32_t v) { return "UIDNEXT " + std::to_string(v); }
std::string Unseen(uint32_t v) { return "UNSEEN " + std::to_string(v); }
std::string PermanentFlags(const std::vector<std::string>& flags) {
  std::string out = "PERMANENTFLAGS ";
  AppendFlagList(out, flags);
  return out;
}
std::string HighestModSeq(uint64_t v) { return "HIGHESTMODSEQ " + std::to_string(v); }
std::string AppendUid(uint32_t uidvalidity, const std::vector<Interval>& uids) {
  return "APPENDUID " + std::to_string(uidvalidity) + " " + FormatIntervals(uids);
}
std::string CopyUid(uint32_t uidvalidity, const std::vector<Interval>& source,
                    const std::vector<Interval>& destination) {
  return "COPYUID " + std::to_string(uidvalidity) + " " + FormatIntervals(source) +
         " " + FormatIntervals(destination);
}
std::string Modified(const std::vector<Interval>& set) {
  return "MODIFIED " + FormatIntervals(set);
}

}  // namespace code

std::string CapabilityResponse(const std::vector<std::string>& capabilities) {
  return "* " + code::Capability(capabilities) + "\r\n";
}

std::string EnabledResponse(const std::vector<std::string>& capabilities) {
  std::string out = "* ENABLED";
  for (const std::string& c : capabilities) out += " " + c;
  return out + "\r\n";
}

std::string ExistsResponse(uint32_t count) {
  return "* " + std::to_string(count) + " EXISTS\r\n";
}
std::string RecentResponse(uint32_t count) {
  return "* " + std::to_string(count) + " RECENT\r\n";
}
std::string ExpungeResponse(uint32_t seq) {
  return "* " + std::to_string(seq) + " EXPUNGE\r\n";
}

std::string FlagsResponse(const std::vector<std::string>& flags) {
  std::string out = "* FLAGS ";
  AppendFlagList(out, flags);
  return out + "\r\n";
}

std::string VanishedResponse(const std::vector<Interval>& uids, bool earlier) {
  return std::string("* VANISHED ") + (earlier ? "(EARLIER) " : "") +
         FormatIntervals(uids) + "\r\n";
}

std::string ListResponse(bool lsub, const std::vector<std::string>& attributes,
                         char delimiter, std::string_view utf8_name, bool utf8_accept) {
  std::string out = lsub ? "* LSUB " : "* LIST ";
  AppendFlagList(out, attributes);
  out += ' ';
  if (delimiter == 0) {
    out += "NIL";
  } else {
    AppendQuoted(out, std::string_view(&delimiter, 1));
  }
  out += ' ';
  if (!AppendMailbox(out, utf8_name, utf8_accept)) return "";
  return out + "\r\n";
}

std::string RenamedListResponse(const std::vector<std::string>& attributes, char delimiter,
                                std::string_view utf8_name, std::string_view utf8_old_name,
                                bool utf8_accept) {
  std::string out = ListResponse(false, attributes, delimiter, utf8_name, utf8_accept);
  if (out.empty()) return "";
  out.resize(out.size() - 2);  // the CRLF
  out += " (\"OLDNAME\" (";
  if (!AppendMailbox(out, utf8_old_name, utf8_accept)) return "";
  return out + "))\r\n";
}

std::string StatusDataResponse(std::string_view utf8_name,
                               const std::vector<std::pair<StatusItem, StatusValue>>& items,
                               bool utf8_accept) {
  std::string out = "* STATUS ";
  if (!AppendMailbox(out, utf8_name, utf8_accept)) return "";
  out += " (";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ' ';
    out += StatusItemName(items[i].first);
    out += ' ';
    if (const auto* number = std::get_if<uint64_t>(&items[i].second)) {
      out += std::to_string(*number);
    } else {
      out += '(' + std::get<std::string>(items[i].second) + ')';
    }
  }
  return out + ")\r\n";
}

std::string QuotaResponse(std::string_view root,
                          const std::vector<QuotaResourceValue>& resources) {
  std::string out = "* QUOTA ";
  AppendAString(out, root);
  out += " (";
  for (size_t i = 0; i < resources.size(); ++i) {
    if (i > 0) out += ' ';
    out += resources[i].name;
    out += ' ';
    out += std::to_string(resources[i].usage);
    out += ' ';
    out += std::to_string(resources[i].limit);
  }
  return out + ")\r\n";
}

std::string QuotaRootResponse(std::string_view utf8_mailbox, const std::vector<std::string>& roots,
                              bool utf8_accept) {
  std::string out = "* QUOTAROOT ";
  if (!AppendMailbox(out, utf8_mailbox, utf8_accept)) return "";
  for (const std::string& root : roots) {
    out += ' ';
    AppendAString(out, root);
  }
  return out + "\r\n";
}

namespace {

// "* METADATA mailbox", "" for the server; false if the name is not UTF-8.
bool AppendMetadataMailbox(std::string& out, std::string_view utf8_mailbox, bool utf8_accept) {
  out = "* METADATA ";
  if (utf8_mailbox.empty()) {
    out += "\"\"";
    return true;
  }
  return AppendMailbox(out, utf8_mailbox, utf8_accept);
}

}  // namespace

std::string MetadataChangedResponse(std::string_view utf8_mailbox,
                                    const std::vector<std::string>& entries,
                                    bool utf8_accept) {
  std::string out;
  if (entries.empty() || !AppendMetadataMailbox(out, utf8_mailbox, utf8_accept)) {
    return "";
  }
  for (const std::string& entry : entries) {
    out += ' ';
    AppendAString(out, entry);
  }
  return out + "\r\n";
}

std::string MetadataResponse(std::string_view utf8_mailbox,
                             const std::vector<std::pair<std::string, std::string>>& entries,
                             bool utf8_accept) {
  std::string out;
  if (!AppendMetadataMailbox(out, utf8_mailbox, utf8_accept)) {
    return "";
  }
  out += " (";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += ' ';
    AppendAString(out, entries[i].first);
    out += ' ';
    const std::string& value = entries[i].second;
    if (value.find('\0') != std::string::npos) {
      out += "~{" + std::to_string(value.size()) + "}\r\n";
      out += value;
    } else {
      AppendString(out, value);
    }
  }
  return out + ")\r\n";
}

std::string SearchResponse(const std::vector<uint32_t>& numbers,
                           std::optional<uint64_t> highest_modseq) {
  std::string out = "* SEARCH";
  for (uint32_t n : numbers) out += " " + std::to_string(n);
  if (highest_modseq.has_value()) {
    out += " (MODSEQ " + std::to_string(*highest_modseq) + ")";
  }
  return out + "\r\n";
}

std::string SortResponse(const std::vector<uint32_t>& numbers,
                         std::optional<uint64_t> highest_modseq) {
  std::string out = "* SORT";
  for (uint32_t n : numbers) out += " " + std::to_string(n);
  if (highest_modseq.has_value()) {
    out += " (MODSEQ " + std::to_string(*highest_modseq) + ")";
  }
  return out + "\r\n";
}

std::string ThreadResponse(const std::vector<ThreadNode>& nodes) {
  // Children of each node, from the depths (a node's parent is the closest
  // node before it one level up).
  const int count = static_cast<int>(nodes.size());
  std::vector<std::vector<int>> children(count);
  std::vector<int> roots;
  std::vector<int> path;  // the open ancestors, by depth
  for (int i = 0; i < count; ++i) {
    const size_t depth = std::min<size_t>(nodes[i].depth, path.size());
    path.resize(depth);
    (depth == 0 ? roots : children[path.back()]).push_back(i);
    path.push_back(i);
  }
  // Written with an explicit stack: a thread may be as deep as the mailbox is large.
  std::string out = "* THREAD";
  if (!roots.empty()) out += ' ';
  struct Step {
    int node;             // -1: write `text`
    std::string_view text;
  };
  std::vector<Step> stack;
  for (auto it = roots.rbegin(); it != roots.rend(); ++it) {
    stack.push_back({-1, ")"});
    stack.push_back({*it, {}});
    stack.push_back({-1, "("});
  }
  std::vector<Step> steps;
  while (!stack.empty()) {
    const Step step = stack.back();
    stack.pop_back();
    if (step.node < 0) {
      out += step.text;
      continue;
    }
    const bool dummy = nodes[step.node].number == 0;
    if (!dummy) out += std::to_string(nodes[step.node].number);
    const std::vector<int>& kids = children[step.node];
    steps.clear();
    if (!kids.empty() && !dummy) steps.push_back({-1, " "});
    if (kids.size() == 1) {
      steps.push_back({kids[0], {}});
    } else {
      for (const int kid : kids) {
        steps.push_back({-1, "("});
        steps.push_back({kid, {}});
        steps.push_back({-1, ")"});
      }
    }
    stack.insert(stack.end(), steps.rbegin(), steps.rend());
  }
  return out + "\r\n";
}

std::string EsearchResponse(std::string_view tag, bool uid, const EsearchData& data) {
  std::string out = "* ESEARCH (TAG ";
  AppendQuoted(out, tag);
  out += ')';
  if (uid) out += " UID";
  if (data.min) out += " MIN " + std::to_string(*data.min);
  if (data.max) out += " MAX " + std::to_string(*data.max);
  if (data.all && !data.all->empty()) out += " ALL " + FormatIntervals(*data.all);
  if (data.count) out += " COUNT " + std::to_string(*data.count);
  if (data.modseq) out += " MODSEQ " + std::to_string(*data.modseq);
  if (data.partial) {
    out += " PARTIAL (" + std::to_string(data.partial->first) + ':' +
           std::to_string(data.partial->last) + ' ';
    out += data.partial->numbers.empty() ? "NIL" : FormatIntervals(data.partial->numbers);
    out += ')';
  }
  return out + "\r\n";
}

std::string ContextUpdateResponse(std::string_view tag, const std::vector<ContextChange>& changes) {
  std::string out = "* ESEARCH (TAG ";
  AppendQuoted(out, tag);
  out += ") UID";
  for (const ContextChange& change : changes) {
    out += change.add ? " ADDTO (" : " REMOVEFROM (";
    out += std::to_string(change.position) + ' ' + FormatIntervals(change.uids) + ')';
  }
  return out + "\r\n";
}

std::string NamespaceResponse(const Namespaces& personal, const Namespaces& other,
                              const Namespaces& shared) {
  std::string out = "* NAMESPACE ";
  AppendNamespaces(out, personal);
  out += ' ';
  AppendNamespaces(out, other);
  out += ' ';
  AppendNamespaces(out, shared);
  return out + "\r\n";
}

std::string IdResponse(const std::optional<IdCommand::Params>& params) {
  std::string out = "* ID ";
  if (!params.has_value()) return out + "NIL\r\n";
  out += '(';
  for (size_t i = 0; i < params->size(); ++i) {
    if (i > 0) out += ' ';
    AppendString(out, (*params)[i].first);
    out += ' ';
    AppendNString(out, (*params)[i].second);
  }
  return out + ")\r\n";
}

FetchResponseBuilder::FetchResponseBuilder(uint32_t seq)
    : out_("* " + std::to_string(seq) + " FETCH (") {}

void FetchResponseBuilder::Separator() {
  if (!first_) out_ += ' ';
  first_ = false;
}

FetchResponseBuilder& FetchResponseBuilder::Uid(uint32_t uid) {
  return Raw("UID", std::to_string(uid));
}

FetchResponseBuilder& FetchResponseBuilder::Flags(const std::vector<std::string>& flags) {
  std::string list;
  AppendFlagList(list, flags);
  return Raw("FLAGS", list);
}

FetchResponseBuilder& FetchResponseBuilder::InternalDate(const DateTime& date) {
  return Raw("INTERNALDATE", date.ToQuoted());
}

FetchResponseBuilder& FetchResponseBuilder::Rfc822Size(uint64_t size) {
  return Raw("RFC822.SIZE", std::to_string(size));
}

FetchResponseBuilder& FetchResponseBuilder::ModSeq(uint64_t modseq) {
  return Raw("MODSEQ", "(" + std::to_string(modseq) + ")");
}

FetchResponseBuilder& FetchResponseBuilder::Raw(std::string_view name,
                                                std::string_view value) {
  Separator();
  out_ += name;
  out_ += ' ';
  out_ += value;
  return *this;
}

FetchResponseBuilder& FetchResponseBuilder::Section(std::string_view name,
                                                    std::optional<std::string_view> data,
                                                    bool binary) {
  Separator();
  out_ += name;
  out_ += ' ';
  if (!data.has_value()) {
    out_ += "NIL";
    return *this;
  }
  // RFC 3501 §4.3 forbids NUL in literals; RFC 3516 literal8 carries it.
  if (binary && data->find('\0') != std::string_view::npos) out_ += '~';
  AppendLiteral(out_, *data);
  return *this;
}

std::string FetchResponseBuilder::StreamSection(std::string_view name, uint64_t size,
                                                bool literal8) {
  Separator();
  out_ += name;
  out_ += literal8 ? " ~{" : " {";
  out_ += std::to_string(size);
  out_ += "}\r\n";
  std::string result = std::move(out_);
  out_.clear();
  return result;
}

std::string FetchResponseBuilder::Finish() {
  out_ += ")\r\n";
  std::string result = std::move(out_);
  out_.clear();
  return result;
}

}  // namespace imap
