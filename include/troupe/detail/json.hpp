// Internal: JSON string escaping, shared by the metrics export and the JSON-lines trace.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace troupe::detail {

// Appends `s` escaped for the inside of a JSON string (quotes, backslashes, control characters).
inline void append_json_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
}

// Appends `s` as a JSON string, quotes included.
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

}  // namespace troupe::detail
