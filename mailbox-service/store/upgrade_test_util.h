// The checks both backends' schema-upgrade tests make for a message stored before
// the upgrades that added save dates (RFC 8514), previews (RFC 8970), quota usage
// counts (RFC 9208) and sort keys (RFC 5256).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "mailbox-service/store/store.h"
#include "mailbox-service/store/store_test_util.h"

namespace mailbox::store {

// The internal date of the message SeedOlderMessage stores: 2020-01-01T12:00:00Z.
inline constexpr int64_t kOlderMessageDate = 1577880000;

// User "u" with one dated message in INBOX, before the schema is taken back.
inline void SeedOlderMessage(Store& store) {
  auto user = store.CreateUser("u", "h");
  ASSERT_TRUE(user.ok()) << user.status();
  NewMessage dated = Message(kSimple);
  dated.has_internal_date = true;
  dated.internal_date_unix = kOlderMessageDate;
  std::vector<NewMessage> messages;
  messages.push_back(std::move(dated));
  ASSERT_TRUE(store.Append(*user, "INBOX", std::move(messages)).ok());
}

// After the upgrade: the message is there, answers its internal date as its save
// date (none was recorded), and gets a preview on the first request that is not
// LAZY, which is kept. Returns the opened INBOX in `box`.
inline void ExpectOlderMessageUpgraded(Store& store, uint64_t user, v1::OpenResponse* box) {
  v1::OpenRequest open;
  open.set_name("INBOX");
  auto opened = store.Open(user, open);
  ASSERT_TRUE(opened.ok()) << opened.status();
  *box = *opened;
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(box->mailbox_id());
  fetch.set_uidvalidity(box->uidvalidity());
  *fetch.mutable_uids() = Uids({{1, 1}});
  fetch.set_save_date(true);
  fetch.set_preview(true);
  fetch.set_preview_lazy(true);
  CollectingSink lazy;
  ASSERT_TRUE(store.Fetch(user, fetch, lazy).ok());
  ASSERT_EQ(lazy.Metadata().size(), 1u);
  EXPECT_EQ(lazy.Metadata()[0].save_date_unix(), kOlderMessageDate);  // the internal date
  EXPECT_FALSE(lazy.Metadata()[0].has_preview());                    // LAZY: not made now
  fetch.set_preview_lazy(false);
  CollectingSink eager;
  ASSERT_TRUE(store.Fetch(user, fetch, eager).ok());
  ASSERT_EQ(eager.Metadata().size(), 1u);
  EXPECT_TRUE(eager.Metadata()[0].has_preview());
  EXPECT_EQ(eager.Metadata()[0].preview(), "Hello world");
  // Kept: LAZY now has it too.
  CollectingSink kept;
  fetch.set_preview_lazy(true);
  ASSERT_TRUE(store.Fetch(user, fetch, kept).ok());
  ASSERT_EQ(kept.Metadata().size(), 1u);
  EXPECT_EQ(kept.Metadata()[0].preview(), "Hello world");
  // Its sort keys are made from its header on the first sort, and kept.
  for (int pass = 0; pass < 2; ++pass) {
    auto sortable = store.SortableMessages(user, box->mailbox_id(), box->uidvalidity(),
                                           Uids({{1, 10}}));
    ASSERT_TRUE(sortable.ok()) << sortable.status();
    ASSERT_EQ(sortable->size(), 1u);
    EXPECT_EQ((*sortable)[0].uid, 1u);
    EXPECT_EQ((*sortable)[0].internal_date, kOlderMessageDate);
    EXPECT_EQ((*sortable)[0].keys.subject, "hello");
    EXPECT_EQ((*sortable)[0].keys.from, "alice");
    EXPECT_EQ((*sortable)[0].keys.sent_at, 760686745);  // Mon, 7 Feb 1994 21:52:25 -0800
  }
  // Its row gets its sort keys on the first sort that reads the rows.
  v1::SortCriterion by_date;
  by_date.set_key(v1::SortCriterion::DATE);
  google::protobuf::RepeatedPtrField<v1::SortCriterion> criteria;
  *criteria.Add() = by_date;
  for (int pass = 0; pass < 2; ++pass) {
    auto sorted = store.SortedUids(user, box->mailbox_id(), box->uidvalidity(),
                                   Uids({{1, 10}}), criteria);
    ASSERT_TRUE(sorted.ok()) << sorted.status();
    EXPECT_EQ(*sorted, std::vector<uint32_t>{1});
  }
}

// Undoes the newest schema step (both dialects): the sort keys of message rows
// and their indexes.
inline constexpr char kUndoMessageSortColumns[] =
    "DROP INDEX messages_by_sent_date;"
    "DROP INDEX messages_by_arrival;"
    "ALTER TABLE messages DROP COLUMN sort_date;"
    "ALTER TABLE messages DROP COLUMN sort_subject;"
    "ALTER TABLE messages DROP COLUMN sort_from;"
    "ALTER TABLE messages DROP COLUMN sort_to;"
    "ALTER TABLE messages DROP COLUMN sort_cc;"
    "ALTER TABLE messages DROP COLUMN sort_display_from;"
    "ALTER TABLE messages DROP COLUMN sort_display_to;";

// After the upgrade the message counts toward the user's quota usage: the
// per-mailbox counts are filled in for rows stored before they were kept.
inline void ExpectOlderMessageCounted(Store& store, uint64_t user) {
  absl::StatusOr<v1::GetUserQuotaResponse> quota = store.GetUserQuota(user);
  ASSERT_TRUE(quota.ok()) << quota.status();
  EXPECT_EQ(quota->messages(), 1u);
  EXPECT_EQ(quota->storage_octets(), sizeof(kSimple) - 1);
  EXPECT_FALSE(quota->limits().has_storage_kib());
  EXPECT_FALSE(quota->limits().has_messages());
}

}  // namespace mailbox::store
