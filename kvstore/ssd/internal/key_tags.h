// The tag byte that opens every SsdTier key, and the key arithmetic of prefix ranges. Private
// to kvstore/ssd.
//
//   std::optional<std::string> end = ssd_internal::PrefixEnd(PrivateBlockPrefix(7));
//   batch.DeleteRange(cf, prefix, *end);   // every key that starts with the prefix
//
// Thread safety: constants and pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace attic::ssd_internal {

// Column family "blocks".
inline constexpr char kPrivateBlockTag = 'p';
inline constexpr char kSharedBlockTag = 's';
// Column family "records".
inline constexpr char kManifestTag = 'm';
inline constexpr char kSampleTag = 'q';
inline constexpr char kPrefixEntryTag = 'e';

// The smallest key greater than every key that starts with prefix: the prefix with its last
// byte below 0xff incremented and what follows it dropped. nullopt when there is none (empty
// prefix, or only 0xff bytes).
std::optional<std::string> PrefixEnd(std::string_view prefix);

}  // namespace attic::ssd_internal
