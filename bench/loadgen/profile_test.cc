#include "bench/loadgen/profile.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bench::loadgen {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<Profile> profile = ParseProfile(text);
  if (profile.ok()) {
    return "(parsed)";
  }
  return std::string(profile.status().message());
}

TEST(ProfileTest, ParsesAllSections) {
  absl::StatusOr<Profile> profile = ParseProfile(R"P(
# a comment
[client]
name = desktop      # trailing comment
mailbox = Work
think = 250ms..2s
groups_per_session = 40

[connect]
login
select

[mix]
60 fetch items="(UID FLAGS)" set=newest:20 uid=yes
20 store flags="+FLAGS (\Seen \Flagged)" set=random:3
5 append size=64k mailbox=Drafts
10 idle duration=5m ; fetch set=newest:5   # a group of two steps
5 search criteria="FROM \"bob\""

[disconnect]
logout
)P");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->name, "desktop");
  EXPECT_EQ(profile->mailbox, "Work");
  EXPECT_EQ(profile->think.min, std::chrono::milliseconds(250));
  EXPECT_EQ(profile->think.max, std::chrono::seconds(2));
  EXPECT_EQ(profile->groups_per_session, 40);
  ASSERT_EQ(profile->connect.size(), 2u);
  EXPECT_EQ(profile->connect[1].kind, StepKind::kSelect);
  EXPECT_EQ(profile->connect[1].mailbox, "Work");
  ASSERT_EQ(profile->mix.size(), 5u);
  EXPECT_EQ(profile->total_weight, 100);

  const Step& fetch = profile->mix[0].steps[0];
  EXPECT_EQ(fetch.kind, StepKind::kFetch);
  EXPECT_EQ(fetch.items, "(UID FLAGS)");
  EXPECT_EQ(fetch.set.mode, MessageSet::Mode::kNewest);
  EXPECT_EQ(fetch.set.count, 20);
  EXPECT_TRUE(fetch.uid);

  const Step& store = profile->mix[1].steps[0];
  EXPECT_EQ(store.flags, "+FLAGS (\\Seen \\Flagged)");
  EXPECT_EQ(store.set.mode, MessageSet::Mode::kRandom);
  EXPECT_EQ(store.set.count, 3);

  EXPECT_EQ(profile->mix[2].steps[0].size, 64 * 1024);
  EXPECT_EQ(profile->mix[2].steps[0].mailbox, "Drafts");

  ASSERT_EQ(profile->mix[3].steps.size(), 2u);
  EXPECT_EQ(profile->mix[3].steps[0].kind, StepKind::kIdle);
  EXPECT_EQ(profile->mix[3].steps[0].duration, std::chrono::minutes(5));
  EXPECT_EQ(profile->mix[3].steps[1].kind, StepKind::kFetch);

  EXPECT_EQ(profile->mix[4].steps[0].criteria, "FROM \"bob\"");
  ASSERT_EQ(profile->disconnect.size(), 1u);
  EXPECT_EQ(profile->disconnect[0].kind, StepKind::kLogout);

  EXPECT_EQ(&PickMixEntry(*profile, 0), &profile->mix[0]);
  EXPECT_EQ(&PickMixEntry(*profile, 59), &profile->mix[0]);
  EXPECT_EQ(&PickMixEntry(*profile, 60), &profile->mix[1]);
  EXPECT_EQ(&PickMixEntry(*profile, 99), &profile->mix[4]);
}

TEST(ProfileTest, DefaultsPerStepKind) {
  absl::StatusOr<Profile> profile =
      ParseProfile("[client]\nname=x\n[mix]\n1 fetch2\n1 status\n1 list\n1 delete\n1 idle\n");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->mailbox, "INBOX");
  EXPECT_EQ(profile->think.max, std::chrono::microseconds(0));
  EXPECT_EQ(profile->mix[0].steps[0].set.mode, MessageSet::Mode::kRandom);
  EXPECT_THAT(profile->mix[0].steps[0].items, HasSubstr("BODY.PEEK[]"));
  EXPECT_EQ(profile->mix[1].steps[0].mailbox, "INBOX");
  EXPECT_THAT(profile->mix[1].steps[0].items, HasSubstr("MESSAGES"));
  EXPECT_EQ(profile->mix[2].steps[0].pattern, "*");
  EXPECT_EQ(profile->mix[3].steps[0].set.count, 1);
  EXPECT_EQ(profile->mix[4].steps[0].duration, std::chrono::seconds(30));
}

TEST(ProfileTest, ErrorsNameTheLineAndTheProblem) {
  EXPECT_THAT(ErrorOf("name = x\n"), HasSubstr("line 1: text before the first section"));
  EXPECT_THAT(ErrorOf("[client]\n[steps]\n"), HasSubstr("line 2: unknown section \"[steps]\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\ncolour = red\n"),
              HasSubstr("line 3: unknown key \"colour\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\nthink\n"), HasSubstr("line 3: expected key = value"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\nthink = 2s..1s\n"), HasSubstr("reversed"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\nthink = soon\n"),
              HasSubstr("duration \"soon\" is not like 250ms"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\ngroups_per_session = -1\n"),
              HasSubstr("groups_per_session"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\nfetch\n"),
              HasSubstr("line 4: a [mix] line starts with a weight"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n0 fetch\n"), HasSubstr("weight"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n5 fecth\n"),
              HasSubstr("line 4: unknown step \"fecth\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[connect]\nlogin user=bob\n"),
              HasSubstr("line 4: login takes no option \"user\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch items\n"),
              HasSubstr("expected key=value, got \"items\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch set=some\n"),
              HasSubstr("set \"some\" is not all, newest:N or random:N"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch set=newest:0\n"),
              HasSubstr("N must be a number"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 append size=lots\n"),
              HasSubstr("size \"lots\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch items=\"(UID\n"),
              HasSubstr("unterminated quoted value"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch items=\"\"\n"),
              HasSubstr("items must not be empty"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 idle ; ; noop\n"), HasSubstr("empty step"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 fetch uid=maybe\n"),
              HasSubstr("uid must be yes or no"));
  EXPECT_THAT(ErrorOf("[client]\n[mix]\n1 noop\n"), HasSubstr("has no name"));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n"), HasSubstr("has no steps"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("has no name"));
}

TEST(ProfileTest, Durations) {
  EXPECT_EQ(*ParseDuration("0"), std::chrono::microseconds(0));
  EXPECT_EQ(*ParseDuration("15us"), std::chrono::microseconds(15));
  EXPECT_EQ(*ParseDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(*ParseDuration("3s"), std::chrono::seconds(3));
  EXPECT_EQ(*ParseDuration("2m"), std::chrono::minutes(2));
  EXPECT_FALSE(ParseDuration("").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("5").ok());
  EXPECT_FALSE(ParseDuration("-5s").ok());
  EXPECT_FALSE(ParseDuration("99999999999999m").ok());
}

TEST(ProfileTest, SortAndThreadSteps) {
  absl::StatusOr<Profile> profile = ParseProfile(
      "[client]\nname=x\n[mix]\n1 sort\n1 thread\n"
      "1 sort program=\"(REVERSE DATE)\" criteria=UNSEEN uid=yes\n"
      "1 thread algorithm=ORDEREDSUBJECT\n");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->mix[0].steps[0].kind, StepKind::kSort);
  EXPECT_EQ(profile->mix[0].steps[0].program, "(REVERSE ARRIVAL)");
  EXPECT_EQ(profile->mix[0].steps[0].criteria, "ALL");
  EXPECT_EQ(profile->mix[1].steps[0].kind, StepKind::kThread);
  EXPECT_EQ(profile->mix[1].steps[0].program, "REFERENCES");
  EXPECT_EQ(profile->mix[2].steps[0].program, "(REVERSE DATE)");
  EXPECT_EQ(profile->mix[2].steps[0].criteria, "UNSEEN");
  EXPECT_TRUE(profile->mix[2].steps[0].uid);
  EXPECT_EQ(profile->mix[3].steps[0].program, "ORDEREDSUBJECT");
  EXPECT_EQ(StepKindName(StepKind::kSort), "sort");
  EXPECT_EQ(StepKindName(StepKind::kThread), "thread");
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 sort algorithm=REFERENCES\n"),
              HasSubstr("sort takes no option \"algorithm\""));
  EXPECT_THAT(ErrorOf("[client]\nname=x\n[mix]\n1 thread algorithm=\n"),
              HasSubstr("algorithm must not be empty"));
}

TEST(ProfileTest, ShippedProfilesParse) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  ASSERT_NE(srcdir, nullptr);
  for (const char* name :
       {"desktop", "webmail", "webmail-sort", "mobile", "ingest", "imaptest-default"}) {
    const std::string path =
        std::string(srcdir) + "/imapd/bench/loadgen/profiles/" + name + ".profile";
    absl::StatusOr<Profile> profile = LoadProfile(path);
    ASSERT_TRUE(profile.ok()) << profile.status();
    EXPECT_EQ(profile->name, name);
  }
  EXPECT_THAT(std::string(LoadProfile("/nonexistent.profile").status().message()),
              HasSubstr("/nonexistent.profile: cannot open profile"));
}

}  // namespace
}  // namespace bench::loadgen
