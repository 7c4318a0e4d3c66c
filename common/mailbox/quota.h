// Quota units (RFC 9208), as every part reports them.
#pragma once

#include <cstdint>

namespace mailbox::rules {

// RFC 9208 §5.1: the STORAGE resource counts units of 1024 octets; a part of one
// counts whole. Also the unit of STATUS DELETED-STORAGE (§4.2).
inline uint64_t StorageUnits(uint64_t octets) {
  return octets / 1024 + (octets % 1024 != 0 ? 1 : 0);
}

}  // namespace mailbox::rules
