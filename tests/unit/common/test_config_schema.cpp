// The generic configuration machinery (common/config_schema.h): value formatting, the Checker's two forms,
// durations, the config hash, edit distance and suggestions. Whole configs are tested in tests/unit/train.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/config_schema.h"
#include "common/error.h"
#include "common/hash.h"
#include "tests/testing/testing.h"

namespace segkd {
namespace {

/// A small options struct as a library writes one.
struct ToyOptions {
  using Self = ToyOptions;
  SEGKD_OPTION(int64_t, size, 8);
  SEGKD_OPTION(std::string, mode, "fast");
  SEGKD_OPTION(FloatPair, range, 0.5, 2.0);
  SEGKD_OPTION(std::vector<std::string>, names, "a");

  static const std::vector<Field<ToyOptions>>& fields() {
    static const std::vector<Field<ToyOptions>> f{
        {"size", &ToyOptions::size}, {"mode", &ToyOptions::mode}, {"range", &ToyOptions::range},
        {"names", &ToyOptions::names}};
    return f;
  }
  void validate(const std::string& p, const Checker& check) const {
    check(size > 0, p + ".size", "must be > 0");
    check.one_of(mode, {"fast", "slow"}, p + ".mode");
  }
};

TEST(ConfigSchema, OptionsHaveDefaultsAndChainedSetters) {
  ToyOptions o;
  EXPECT_EQ(o.size, 8);
  EXPECT_EQ(o.range, (FloatPair{0.5, 2.0}));
  EXPECT_EQ(o.names, std::vector<std::string>{"a"});
  ToyOptions p = ToyOptions().set_size(16).set_mode("slow").set_names({"x", "y"});
  EXPECT_EQ(p.size, 16);
  EXPECT_EQ(p.mode, "slow");
  EXPECT_EQ(p.names, (std::vector<std::string>{"x", "y"}));
}

TEST(ConfigSchema, BoundFieldsFormatAndNameTheirTypes) {
  ToyOptions o;
  BoundFields f = bind_fields(o);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].name, "size");
  EXPECT_EQ(format_value(f[0].ref), "8");
  EXPECT_EQ(format_value(f[1].ref), "\"fast\"");
  EXPECT_EQ(format_value(f[2].ref), "[0.5, 2.0]");
  EXPECT_EQ(format_value(f[3].ref), "[\"a\"]");
  EXPECT_EQ(type_name(f[2].ref), "array of 2 floats");
  EXPECT_EQ(type_name(f[3].ref), "array of strings");
  *std::get<int64_t*>(f[0].ref) = 3;  // bound to the object itself
  EXPECT_EQ(o.size, 3);
  EXPECT_EQ(format_double(600), "600.0");
  EXPECT_EQ(format_double(5e-4), "0.0005");
  EXPECT_EQ(format_double(1e-7), "1e-07");
  EXPECT_EQ(format_string("a\"b\n"), "\"a\\\"b\\n\"");
}

TEST(ConfigSchema, CheckerKeyFormNamesLocationKeyAndValue) {
  ToyOptions o = ToyOptions().set_size(0);
  const Shown shown = shown_values(o, "toy");
  const Locations loc{{"toy.size", "x.toml:3:1"}};
  SEGKD_EXPECT_THROW_MSG(o.validate("toy", Checker(&loc, &shown)), "x.toml:3:1: toy.size = 0: must be > 0");
  SEGKD_EXPECT_THROW_MSG(o.validate("toy", Checker()), "toy.size: must be > 0");  // no location, no value
  o.size = 1;
  o.mode = "medium";
  const Shown shown2 = shown_values(o, "toy");
  SEGKD_EXPECT_THROW_MSG(o.validate("toy", Checker(nullptr, &shown2)), "toy.mode = \"medium\": must be one of fast|slow");
  o.mode = "slow";
  EXPECT_NO_THROW(o.validate("toy", Checker()));
}

TEST(ConfigSchema, CheckerContextFormNamesTheContextAndKey) {
  ToyOptions o = ToyOptions().set_size(-2);
  const Shown shown = shown_values(o, "toy[1]");
  SEGKD_EXPECT_THROW_MSG(o.validate("toy[1]", Checker::in_context("toy[1] (kind \"k\")", "toy[1]", &shown)),
                         "toy[1] (kind \"k\"): size must be > 0 (size = -2)");
  o.size = 1;
  o.mode = "medium";
  SEGKD_EXPECT_THROW_MSG(o.validate("toy[1]", Checker::in_context("ctx", "toy[1]", nullptr)),
                         "ctx: mode = \"medium\" is not one of: fast, slow");
}

TEST(ConfigSchema, SuggestionFindsTheNearestKey) {
  const std::vector<std::string> keys{"optimizer", "optimizer.lr", "student.backbone"};
  EXPECT_EQ(suggestion("student.backbon", keys), " (did you mean 'student.backbone'?)");
  EXPECT_EQ(suggestion("lr", keys), " (did you mean 'optimizer.lr'?)");
  EXPECT_EQ(suggestion("completely_different", keys), "");
}

TEST(ParseDuration, AcceptsUnitsAndPlainSeconds) {
  EXPECT_DOUBLE_EQ(parse_duration("90s", "k"), 90);
  EXPECT_DOUBLE_EQ(parse_duration("45m", "k"), 2700);
  EXPECT_DOUBLE_EQ(parse_duration("2h", "k"), 7200);
  EXPECT_DOUBLE_EQ(parse_duration("1h30m", "k"), 5400);
  EXPECT_DOUBLE_EQ(parse_duration("1h30m15s", "k"), 5415);
  EXPECT_DOUBLE_EQ(parse_duration("1.5h", "k"), 5400);
  EXPECT_DOUBLE_EQ(parse_duration("120", "k"), 120);
  EXPECT_DOUBLE_EQ(parse_duration(" 2.5 ", "k"), 2.5);
}

TEST(ParseDuration, RejectsGarbageNamingTheKey) {
  for (const char* bad : {"", "2x", "h", "1h30", "-5s", "1h1h", "1..5s", "abc"}) {
    SCOPED_TRACE(bad);
    SEGKD_EXPECT_THROW_MSG(parse_duration(bad, "schedule.budget"), "schedule.budget = \"" + std::string(bad) + "\"");
    EXPECT_THROW(parse_duration(bad, "schedule.budget"), ConfigError);
  }
}

TEST(StableHash, IsFnv1a64) {
  EXPECT_EQ(stable_hash(""), "cbf29ce484222325");  // published FNV-1a test vectors
  EXPECT_EQ(stable_hash("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(stable_hash("foobar"), "85944171f73967e8");
}

TEST(Fnv1a64, IncrementalUpdatesEqualOneUpdate) {
  EXPECT_EQ(Fnv1a64().hex(), "cbf29ce484222325");
  EXPECT_EQ(Fnv1a64().update(std::string("foo")).update("bar", 3).hex(), "85944171f73967e8");
  EXPECT_EQ(Fnv1a64().update(std::string("foobar")).value(), 0x85944171f73967e8ULL);
}

// The word-wise variant module_checksum uses: values computed with the loop it replaced (grad_reducer.cpp before
// the hash was shared), with the published offset basis.
TEST(Fnv1a64, WordWiseValuesArePinned) {
  const std::string s = "0123456789abcdefXYZ";  // two whole words and a 3-byte tail
  EXPECT_EQ(Fnv1a64().update_words(s.data(), s.size()).hex(), "af6d82e0fa8645b0");
  EXPECT_NE(Fnv1a64().update_words(s.data(), s.size()).hex(), Fnv1a64().update(s).hex());
  EXPECT_EQ(Fnv1a64().update_words("abc", 3).hex(), Fnv1a64().update(std::string("abc")).hex());  // tail only
}

TEST(EditDistance, Levenshtein) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("backbon", "backbone"), 1u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
}

}  // namespace
}  // namespace segkd
