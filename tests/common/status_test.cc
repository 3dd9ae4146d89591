#include "common/status.h"

#include <gtest/gtest.h>

#include <any>
#include <memory>
#include <sstream>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

namespace attic {
namespace {

struct CodeCase {
  StatusCode code;
  int number;
  const char* name;
  Status (*make)(std::string);
};

// The gRPC numbering and spelling, written out so that a change to either is caught.
const std::vector<CodeCase>& AllErrorCodes() {
  static const std::vector<CodeCase> cases = {
      {StatusCode::kCancelled, 1, "CANCELLED", CancelledError},
      {StatusCode::kUnknown, 2, "UNKNOWN", UnknownError},
      {StatusCode::kInvalidArgument, 3, "INVALID_ARGUMENT", InvalidArgumentError},
      {StatusCode::kDeadlineExceeded, 4, "DEADLINE_EXCEEDED", DeadlineExceededError},
      {StatusCode::kNotFound, 5, "NOT_FOUND", NotFoundError},
      {StatusCode::kAlreadyExists, 6, "ALREADY_EXISTS", AlreadyExistsError},
      {StatusCode::kPermissionDenied, 7, "PERMISSION_DENIED", PermissionDeniedError},
      {StatusCode::kResourceExhausted, 8, "RESOURCE_EXHAUSTED", ResourceExhaustedError},
      {StatusCode::kFailedPrecondition, 9, "FAILED_PRECONDITION", FailedPreconditionError},
      {StatusCode::kAborted, 10, "ABORTED", AbortedError},
      {StatusCode::kOutOfRange, 11, "OUT_OF_RANGE", OutOfRangeError},
      {StatusCode::kUnimplemented, 12, "UNIMPLEMENTED", UnimplementedError},
      {StatusCode::kInternal, 13, "INTERNAL", InternalError},
      {StatusCode::kUnavailable, 14, "UNAVAILABLE", UnavailableError},
      {StatusCode::kDataLoss, 15, "DATA_LOSS", DataLossError},
      {StatusCode::kUnauthenticated, 16, "UNAUTHENTICATED", UnauthenticatedError},
  };
  return cases;
}

TEST(StatusCodeTest, SeventeenCodesWithGrpcNumbers) {
  EXPECT_EQ(kNumStatusCodes, 17);
  EXPECT_EQ(static_cast<int>(StatusCode::kOk), 0);
  EXPECT_EQ(AllErrorCodes().size(), 16u);
  for (const CodeCase& c : AllErrorCodes()) {
    EXPECT_EQ(static_cast<int>(c.code), c.number) << c.name;
  }
}

TEST(StatusCodeTest, NamesRoundTrip) {
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeFromName("OK"), StatusCode::kOk);
  for (const CodeCase& c : AllErrorCodes()) {
    EXPECT_EQ(StatusCodeName(c.code), c.name);
    EXPECT_EQ(StatusCodeFromName(c.name), c.code) << c.name;
  }
}

TEST(StatusCodeTest, NumbersRoundTrip) {
  for (int n = 0; n < kNumStatusCodes; ++n) {
    const auto code = StatusCodeFromNumber(n);
    ASSERT_TRUE(code.has_value()) << n;
    EXPECT_EQ(static_cast<int>(*code), n);
    EXPECT_EQ(StatusCodeFromName(StatusCodeName(*code)), code);
  }
}

TEST(StatusCodeTest, UnknownNumbersAndNames) {
  EXPECT_EQ(StatusCodeFromNumber(-1), std::nullopt);
  EXPECT_EQ(StatusCodeFromNumber(17), std::nullopt);
  EXPECT_EQ(StatusCodeFromNumber(1000), std::nullopt);
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(17)), "UNKNOWN_CODE");
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(-3)), "UNKNOWN_CODE");
  EXPECT_EQ(StatusCodeFromName(""), std::nullopt);
  EXPECT_EQ(StatusCodeFromName("not_found"), std::nullopt);  // names are exact UPPER_SNAKE
  EXPECT_EQ(StatusCodeFromName("NOTFOUND"), std::nullopt);
  EXPECT_EQ(StatusCodeFromName("UNKNOWN_CODE"), std::nullopt);
}

TEST(StatusTest, DefaultIsOk) {
  const Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.code_number(), 0);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_EQ(s, OkStatus());
}

TEST(StatusTest, OkCodeDropsMessage) {
  const Status s(StatusCode::kOk, "");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s, OkStatus());
}

TEST(StatusTest, FactoriesMakeTheirCode) {
  for (const CodeCase& c : AllErrorCodes()) {
    const Status s = c.make("sequence 42 is not open");
    EXPECT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.code(), c.code);
    EXPECT_EQ(s.code_number(), c.number);
    EXPECT_EQ(s.message(), "sequence 42 is not open");
    EXPECT_EQ(s.ToString(), std::string(c.name) + ": sequence 42 is not open");
    EXPECT_EQ(s, Status(c.code, "sequence 42 is not open"));
  }
}

TEST(StatusTest, ToStringWithoutMessage) {
  EXPECT_EQ(NotFoundError("").ToString(), "NOT_FOUND");
  EXPECT_FALSE(NotFoundError("").ok());
}

TEST(StatusTest, StreamsToString) {
  std::ostringstream os;
  os << DataLossError("block 7 checksum mismatch") << " / " << OkStatus();
  EXPECT_EQ(os.str(), "DATA_LOSS: block 7 checksum mismatch / OK");
}

TEST(StatusTest, Equality) {
  EXPECT_EQ(NotFoundError("a"), NotFoundError("a"));
  EXPECT_NE(NotFoundError("a"), NotFoundError("b"));
  EXPECT_NE(NotFoundError("a"), InternalError("a"));
  EXPECT_NE(NotFoundError(""), OkStatus());
}

TEST(StatusTest, WithContextPrefixesMessage) {
  const Status base = UnavailableError("worker 3 is gone");
  const Status s = base.WithContext("sequence 42").WithContext("decode step");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "decode step: sequence 42: worker 3 is gone");
  EXPECT_EQ(base.message(), "worker 3 is gone");  // the original is unchanged
}

TEST(StatusTest, WithContextKeepsOk) {
  const Status s = OkStatus().WithContext("anything");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, CopyIsDeep) {
  Status a = InvalidArgumentError("head_dim = 7");
  Status b(a);
  EXPECT_EQ(a, b);
  Status c;
  c = a;
  EXPECT_EQ(c, a);
  a = OkStatus();  // changing the source leaves the copies alone
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(b.message(), "head_dim = 7");
  EXPECT_EQ(c.message(), "head_dim = 7");
}

TEST(StatusTest, SelfAssignment) {
  Status a = AbortedError("x");
  const Status& alias = a;
  a = alias;
  EXPECT_EQ(a, AbortedError("x"));
}

TEST(StatusTest, Move) {
  Status a = ResourceExhaustedError("block pool full");
  Status b(std::move(a));
  EXPECT_EQ(b, ResourceExhaustedError("block pool full"));
  Status c;
  c = std::move(b);
  EXPECT_EQ(c, ResourceExhaustedError("block pool full"));
}

TEST(StatusTest, CopyOkOverError) {
  Status a = InternalError("x");
  const Status ok;
  a = ok;
  EXPECT_TRUE(a.ok());
}

// --- RETURN_IF_ERROR / ASSIGN_OR_RETURN ---------------------------------------------------------

Status FailIf(bool fail, int* calls) {
  ++*calls;
  return fail ? FailedPreconditionError("asked to fail") : OkStatus();
}

Status TwoSteps(bool fail_first, bool fail_second, int* calls, bool* reached_end) {
  RETURN_IF_ERROR(FailIf(fail_first, calls));
  RETURN_IF_ERROR(FailIf(fail_second, calls));
  *reached_end = true;
  return OkStatus();
}

TEST(StatusMacrosTest, ReturnIfErrorPropagates) {
  int calls = 0;
  bool end = false;
  EXPECT_TRUE(TwoSteps(false, false, &calls, &end).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(end);

  calls = 0;
  end = false;
  const Status s = TwoSteps(true, false, &calls, &end);
  EXPECT_EQ(s, FailedPreconditionError("asked to fail"));
  EXPECT_EQ(calls, 1);  // the second step never ran
  EXPECT_FALSE(end);

  calls = 0;
  EXPECT_EQ(TwoSteps(false, true, &calls, &end).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(end);
}

StatusOr<int> ReturnIfErrorInStatusOr(bool fail) {
  int calls = 0;
  RETURN_IF_ERROR(FailIf(fail, &calls));
  return 7;
}

TEST(StatusMacrosTest, ReturnIfErrorInFunctionReturningStatusOr) {
  EXPECT_EQ(*ReturnIfErrorInStatusOr(false), 7);
  EXPECT_EQ(ReturnIfErrorInStatusOr(true).status().code(), StatusCode::kFailedPrecondition);
}

StatusOr<int> ParsePositive(int x) {
  if (x <= 0) return OutOfRangeError("not positive: " + std::to_string(x));
  return x;
}

StatusOr<int> SumOfTwo(int a, int b, bool* reached_second) {
  ASSIGN_OR_RETURN(int pa, ParsePositive(a));
  *reached_second = true;
  ASSIGN_OR_RETURN(const int pb, ParsePositive(b));
  return pa + pb;
}

TEST(StatusMacrosTest, AssignOrReturnPropagates) {
  bool second = false;
  auto ok = SumOfTwo(2, 3, &second);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);

  second = false;
  auto first_bad = SumOfTwo(-1, 3, &second);
  EXPECT_FALSE(first_bad.ok());
  EXPECT_EQ(first_bad.status(), OutOfRangeError("not positive: -1"));
  EXPECT_FALSE(second);

  auto second_bad = SumOfTwo(1, 0, &second);
  EXPECT_EQ(second_bad.status(), OutOfRangeError("not positive: 0"));
  EXPECT_TRUE(second);
}

Status AssignOrReturnIntoStatus(int x, int* out) {
  ASSIGN_OR_RETURN(*out, ParsePositive(x));  // assigns to an existing lvalue
  return OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnToExistingVariable) {
  int out = 0;
  EXPECT_TRUE(AssignOrReturnIntoStatus(9, &out).ok());
  EXPECT_EQ(out, 9);
  out = 0;
  EXPECT_EQ(AssignOrReturnIntoStatus(-2, &out).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(out, 0);
}

StatusOr<std::unique_ptr<int>> MakeBox(int v) {
  if (v < 0) return InvalidArgumentError("negative");
  return std::make_unique<int>(v);
}

StatusOr<int> Unbox(int v) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(v));
  return *box + 1;
}

TEST(StatusMacrosTest, AssignOrReturnWithMoveOnlyValue) {
  EXPECT_EQ(*Unbox(41), 42);
  EXPECT_EQ(Unbox(-1).status().code(), StatusCode::kInvalidArgument);
}

TEST(StatusMacrosTest, TwoAssignOrReturnInOneFunction) {
  auto f = []() -> StatusOr<int> {
    ASSIGN_OR_RETURN(auto a, ParsePositive(1));
    ASSIGN_OR_RETURN(auto b, ParsePositive(2));
    return a + b;
  };
  EXPECT_EQ(*f(), 3);
}

// --- StatusOr ----------------------------------------------------------------------------------

TEST(StatusOrTest, HoldsValue) {
  StatusOr<std::string> s = std::string("kv");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s.status().ok());
  EXPECT_EQ(s.value(), "kv");
  EXPECT_EQ(*s, "kv");
  EXPECT_EQ(s->size(), 2u);
  s.value() += "store";
  EXPECT_EQ(*s, "kvstore");
  *s = "x";
  EXPECT_EQ(s.value(), "x");
}

TEST(StatusOrTest, HoldsError) {
  StatusOr<std::string> s = NotFoundError("no such sequence");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status(), NotFoundError("no such sequence"));
  const Status moved_out = std::move(s).status();
  EXPECT_EQ(moved_out.code(), StatusCode::kNotFound);
}

TEST(StatusOrTest, OkStatusWithoutValueBecomesInternal) {
  StatusOr<int> s = OkStatus();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
}

TEST(StatusOrTest, ConvertingConstruction) {
  StatusOr<std::string> from_literal = "abc";
  ASSERT_TRUE(from_literal.ok());
  EXPECT_EQ(*from_literal, "abc");
  StatusOr<double> from_int = 3;
  EXPECT_EQ(*from_int, 3.0);
}

TEST(StatusOrTest, MoveOnlyValue) {
  StatusOr<std::unique_ptr<int>> s = std::make_unique<int>(5);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(**s, 5);
  std::unique_ptr<int> taken = std::move(s).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 5);

  StatusOr<std::unique_ptr<int>> again = std::make_unique<int>(6);
  std::unique_ptr<int> deref = *std::move(again);
  EXPECT_EQ(*deref, 6);
}

struct Base {
  virtual ~Base() = default;
  virtual int id() const { return 1; }
};
struct Derived : Base {
  int id() const override { return 2; }
};

TEST(StatusOrTest, UniquePtrToDerivedConvertsToBase) {
  StatusOr<std::unique_ptr<Base>> s = std::make_unique<Derived>();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->id(), 2);
}

TEST(StatusOrTest, CopyAndMove) {
  const StatusOr<std::vector<int>> a = std::vector<int>{1, 2, 3};
  StatusOr<std::vector<int>> b = a;
  EXPECT_EQ(*b, (std::vector<int>{1, 2, 3}));
  StatusOr<std::vector<int>> c = std::move(b);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, (std::vector<int>{1, 2, 3}));
  StatusOr<std::vector<int>> err = AbortedError("x");
  c = err;
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status(), AbortedError("x"));
}

// Copying a non-const StatusOr<std::any> lvalue picks the forwarding constructor StatusOr(U&&)
// (its constraint does not exclude StatusOr itself), which builds a std::any holding a copy of
// the StatusOr, which picks the same constructor again: unbounded recursion and a stack
// overflow as of this writing. Disabled until the constraint excludes StatusOr<T>.
TEST(StatusOrTest, CopyOfNonConstLvalueHoldingAny) {
  StatusOr<std::any> a = std::any(1);
  StatusOr<std::any> b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->type(), typeid(int));
}

TEST(StatusOrTest, ConstAccess) {
  const StatusOr<int> s = 11;
  EXPECT_EQ(s.value(), 11);
  EXPECT_EQ(*s, 11);
}

}  // namespace
}  // namespace attic
