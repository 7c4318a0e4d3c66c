#include "mailbox-service/server/password_verifier.h"

#include <argon2.h>
#include <openssl/crypto.h>

#include <optional>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mailbox::server {
namespace {

struct Argon2Params {
  uint32_t version = 0;
  uint32_t memory_kib = 0;
  uint32_t passes = 0;
  uint32_t lanes = 0;
  std::string salt;
  std::string hash;
};

bool ParseNumber(absl::string_view text, absl::string_view key, uint32_t* out) {
  if (!absl::ConsumePrefix(&text, key) || text.empty()) {
    return false;
  }
  return absl::SimpleAtoi(text, out);
}

// Splits "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" (the PHC string format that
// libargon2's argon2id_hash_encoded writes); nullopt for anything else.
std::optional<Argon2Params> ParseEncoded(std::string_view encoded) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(encoded.data(), encoded.size()), '$');
  if (parts.size() != 6 || !parts[0].empty() || parts[1] != "argon2id") {
    return std::nullopt;
  }
  Argon2Params p;
  std::vector<absl::string_view> costs = absl::StrSplit(parts[3], ',');
  if (!ParseNumber(parts[2], "v=", &p.version) || costs.size() != 3 ||
      !ParseNumber(costs[0], "m=", &p.memory_kib) || !ParseNumber(costs[1], "t=", &p.passes) ||
      !ParseNumber(costs[2], "p=", &p.lanes) ||
      !absl::Base64Unescape(parts[4], &p.salt) || !absl::Base64Unescape(parts[5], &p.hash)) {
    return std::nullopt;
  }
  if (p.salt.size() < ARGON2_MIN_SALT_LENGTH || p.hash.size() < ARGON2_MIN_OUTLEN ||
      p.lanes < ARGON2_MIN_LANES || p.lanes > 64 || p.passes < ARGON2_MIN_TIME ||
      p.memory_kib < 8 * p.lanes || p.memory_kib > (1u << 22)) {  // at most 4 GiB
    return std::nullopt;
  }
  return p;
}

// libargon2's allocation callbacks carry no context, so the slot in use travels in a
// thread-local: it is set only around argon2_ctx on the calling thread (lanes > 1 run
// on helper threads, but memory is allocated once, on the caller's).
thread_local uint8_t* current_memory = nullptr;
thread_local size_t current_size = 0;

int UseSlotMemory(uint8_t** memory, size_t bytes) {
  if (current_memory == nullptr || bytes > current_size) {
    return ARGON2_MEMORY_ALLOCATION_ERROR;
  }
  *memory = current_memory;
  return ARGON2_OK;
}

void KeepSlotMemory(uint8_t*, size_t) {}  // the slot keeps it for the next call

}  // namespace

PasswordVerifier::PasswordVerifier(int slots) {
  if (slots <= 0) {
    slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  for (int i = 0; i < slots; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    free_.push_back(slots_.back().get());
  }
}

PasswordVerifier::Slot* PasswordVerifier::Acquire(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(
          absl::Condition(+[](std::vector<Slot*>* free) { return !free->empty(); }, &free_),
          deadline)) {
    return nullptr;
  }
  Slot* slot = free_.back();
  free_.pop_back();
  return slot;
}

void PasswordVerifier::Release(Slot* slot) {
  absl::MutexLock lock(&mu_);
  free_.push_back(slot);
}

bool PasswordVerifier::Verify(std::string_view encoded, std::string_view password) {
  return *VerifyBy(encoded, password, absl::InfiniteFuture());
}

std::optional<bool> PasswordVerifier::VerifyBy(std::string_view encoded,
                                               std::string_view password,
                                               absl::Time deadline) {
  std::optional<Argon2Params> p = ParseEncoded(encoded);
  if (!p) {
    const std::string terminated(encoded);
    return argon2id_verify(terminated.c_str(), password.data(), password.size()) == ARGON2_OK;
  }
  const size_t bytes = static_cast<size_t>(p->memory_kib) * 1024;
  std::string out(p->hash.size(), '\0');
  argon2_context ctx{};
  ctx.out = reinterpret_cast<uint8_t*>(out.data());
  ctx.outlen = static_cast<uint32_t>(out.size());
  // Not written to: ARGON2_FLAG_CLEAR_PASSWORD is off.
  ctx.pwd = reinterpret_cast<uint8_t*>(const_cast<char*>(password.data()));
  ctx.pwdlen = static_cast<uint32_t>(password.size());
  ctx.salt = reinterpret_cast<uint8_t*>(p->salt.data());
  ctx.saltlen = static_cast<uint32_t>(p->salt.size());
  ctx.t_cost = p->passes;
  ctx.m_cost = p->memory_kib;
  ctx.lanes = ctx.threads = p->lanes;
  ctx.version = p->version;
  ctx.allocate_cbk = UseSlotMemory;
  ctx.free_cbk = KeepSlotMemory;
  ctx.flags = ARGON2_DEFAULT_FLAGS;

  Slot* slot = Acquire(deadline);
  if (slot == nullptr) {
    return std::nullopt;
  }
  if (slot->size < bytes) {
    slot->memory.reset();  // free the old buffer before taking a bigger one
    slot->memory = std::make_unique<uint8_t[]>(bytes);
    slot->size = bytes;
  }
  current_memory = slot->memory.get();
  current_size = slot->size;
  const int rc = argon2_ctx(&ctx, Argon2_id);
  current_memory = nullptr;
  current_size = 0;
  Release(slot);
  return rc == ARGON2_OK && CRYPTO_memcmp(out.data(), p->hash.data(), out.size()) == 0;
}

}  // namespace mailbox::server
