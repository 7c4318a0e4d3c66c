#include "mailbox-service/store/postgres/pg_sql.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mailbox::store::pg {
namespace {

class PgCursor final : public sql::Cursor {
 public:
  PgCursor(SqlConnection& conn, std::string sql) : conn_(conn), sql_(std::move(sql)) {}

  void BindInt(int index, int64_t value) override { Slot(index) = {Kind::kInt, value, {}}; }
  void BindText(int index, std::string_view value) override {
    Slot(index) = {Kind::kText, 0, value};
  }
  void BindBlob(int index, std::string_view value) override {
    Slot(index) = {Kind::kBlob, 0, value};
  }
  void BindNull(int index) override { Slot(index) = {Kind::kNull, 0, {}}; }

  absl::StatusOr<bool> Step() override {
    if (!executed_) {
      Params params;
      for (const Bound& bound : bound_) {
        switch (bound.kind) {
          case Kind::kInt:
            params.Int(bound.number);
            break;
          case Kind::kText:
            params.Text(bound.bytes);
            break;
          case Kind::kBlob:
            params.Bytes(bound.bytes);
            break;
          case Kind::kNull:
            params.Null();
            break;
        }
      }
      absl::StatusOr<Result> result = conn_.raw().Query(sql_, params, conn_.deadline());
      if (!result.ok()) {
        return result.status();
      }
      result_ = *std::move(result);
      executed_ = true;
      row_ = -1;
      conn_.set_changes(result_.affected());
    }
    if (row_ < result_.rows()) {
      ++row_;
    }
    return row_ < result_.rows();
  }

  int64_t Int(int column) const override { return result_.Int(row_, column); }
  bool IsNull(int column) const override { return result_.IsNull(row_, column); }
  std::string_view Text(int column) const override { return result_.Bytes(row_, column); }
  std::string_view Blob(int column) const override { return result_.Bytes(row_, column); }

  void Reset() override {
    executed_ = false;
    result_ = Result();
    bound_.clear();
  }

 private:
  enum class Kind { kNull, kInt, kText, kBlob };
  struct Bound {
    Kind kind = Kind::kNull;
    int64_t number = 0;
    std::string_view bytes;
  };
  Bound& Slot(int index) {
    if (static_cast<int>(bound_.size()) < index) {
      bound_.resize(index);
    }
    executed_ = false;
    return bound_[index - 1];
  }

  SqlConnection& conn_;
  const std::string sql_;
  std::vector<Bound> bound_;
  bool executed_ = false;
  Result result_;
  int row_ = -1;
};

}  // namespace

std::string NumberPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int next = 1;
  bool quoted = false;
  for (char c : sql) {
    if (c == '\'') {
      quoted = !quoted;
    }
    if (c == '?' && !quoted) {
      absl::StrAppend(&out, "$", next++);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::Status SqlConnection::Exec(const char* sql) { return lease_->Exec(sql, deadline_); }

absl::Status SqlConnection::BeginSnapshot() {
  return lease_->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", deadline_);
}

bool SqlConnection::InTransaction() const { return !lease_->idle(); }

absl::StatusOr<std::unique_ptr<sql::Cursor>> SqlConnection::NewCursor(const char* sql, bool) {
  return std::unique_ptr<sql::Cursor>(new PgCursor(*this, NumberPlaceholders(sql)));
}

}  // namespace mailbox::store::pg
