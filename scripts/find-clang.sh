# Sourced by scripts/test.sh and scripts/fuzz.sh. onebit_find_clang prints the path of the
# clang++ on PATH or, if there is none, of its newest versioned name (Debian may install only
# clang++-14); it fails if there is no clang++ at all.
onebit_find_clang() {
  local candidate
  for candidate in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}
