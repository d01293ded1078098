// Text helpers of onebit::io: names and hostile bytes made safe to print in an error message,
// strings written as JSON, and overflow-checked arithmetic on the 64-bit sizes a file declares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace onebit::io::detail {

// Length of the well-formed UTF-8 sequence that starts at text[i] (1 for any ASCII byte), or 0
// if none does: overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
inline std::size_t utf8_sequence(std::string_view text, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  if (c < 0xc2 || c > 0xf4) return 0;
  const std::size_t want = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
  if (i + want > text.size()) return 0;
  for (std::size_t k = 1; k < want; ++k)
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
  if (want == 3 && ((c == 0xe0 && byte(i + 1) < 0xa0) || (c == 0xed && byte(i + 1) >= 0xa0)))
    return 0;
  if (want == 4 && ((c == 0xf0 && byte(i + 1) < 0x90) || (c == 0xf4 && byte(i + 1) >= 0x90)))
    return 0;
  return want;
}

inline bool valid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0, n = 0; i < text.size(); i += n)
    if ((n = utf8_sequence(text, i)) == 0) return false;
  return true;
}

// Appends `text`, which must be valid UTF-8, as a JSON string: in quotes, with " and \ escaped,
// the control bytes as \b \f \n \r \t or \u00xx, everything else as it is. These are the
// bytes nlohmann::json::dump() writes for the same string (test_safetensors compares them), so
// the writer's headers need no JSON library; only reading one does.
inline void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// `text` made safe to print: control bytes, DEL and bytes that are not part of valid UTF-8
// become \xNN (and, with `escape_quotes`, " and \ get a backslash), and anything past
// `max_bytes` is cut, saying how long the original was, so hostile bytes cannot flood a message.
inline std::string printable(std::string_view text, std::size_t max_bytes = 160,
                             bool escape_quotes = false) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && i < max_bytes) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = (c < 0x20 || c == 0x7f) ? 0 : utf8_sequence(text, i);
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
