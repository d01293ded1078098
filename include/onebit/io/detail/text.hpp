// Text helpers of onebit::io: names and hostile bytes made safe to print in an error message,
// and overflow-checked arithmetic on the 64-bit sizes a file declares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace onebit::io::detail {

// `text` made safe to print: control bytes, DEL and bytes that are not part of valid UTF-8
// become \xNN (and, with `escape_quotes`, " and \ get a backslash), and anything past
// `max_bytes` is cut, saying how long the original was, so hostile bytes cannot flood a message.
inline std::string printable(std::string_view text, std::size_t max_bytes = 160,
                             bool escape_quotes = false) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  while (i < text.size() && i < max_bytes) {
    const unsigned char c = byte(i);
    // Length of a well-formed UTF-8 sequence starting here, 0 if it is not one.
    std::size_t n = 0;
    if (c >= 0x20 && c < 0x7f) {
      n = 1;
    } else if (c >= 0xc2 && c <= 0xf4) {
      const std::size_t want = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
      if (i + want <= text.size()) {
        n = want;
        for (std::size_t k = 1; k < want; ++k)
          if ((byte(i + k) & 0xc0) != 0x80) n = 0;
        // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
        if (n == 3 && ((c == 0xe0 && byte(i + 1) < 0xa0) || (c == 0xed && byte(i + 1) >= 0xa0)))
          n = 0;
        if (n == 4 && ((c == 0xf0 && byte(i + 1) < 0x90) || (c == 0xf4 && byte(i + 1) >= 0x90)))
          n = 0;
      }
    }
    if (n == 1 && escape_quotes && (c == '"' || c == '\\')) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (n != 0) {
      out.append(text.substr(i, n));
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      n = 1;
    }
    i += n;
  }
  if (i < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

// `text` in double quotes, printable as above: how messages name a tensor or a key.
inline std::string quote(std::string_view text, std::size_t max_bytes = 160) {
  if (text.size() <= max_bytes) return '"' + printable(text, max_bytes, true) + '"';
  return '"' + printable(text.substr(0, max_bytes), max_bytes, true) + "\"... (" +
         std::to_string(text.size()) + " bytes)";
}

// a * b, or false when it does not fit in 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return false;
  out = a + b;
  return true;
}

}  // namespace onebit::io::detail
