# Cross-compiling onebit for aarch64 Linux (the NEON path) on an x86-64 Debian host, with the
# executables linked statically and run under qemu-user:
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 && ctest --test-dir build-aarch64
#
# Needs g++-aarch64-linux-gnu and qemu-user. onebit's dependencies (Eigen, nlohmann-json, doctest) are
# header-only, so the host's packages serve: their CMake config files are found on the host,
# and their headers are reached with -idirafter /usr/include, searched only after the aarch64
# system headers, so the cross compiler never picks up a host (x86-64) libc header.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ONEBIT_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${ONEBIT_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${ONEBIT_CROSS_TRIPLE}-g++)

# Static executables run under qemu-aarch64 without an aarch64 dynamic loader or libraries.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# Because compiler detection sees this flag, CMake counts /usr/include among the compiler's
# implicit include directories and never passes it as -isystem (which would put the host's
# libc headers ahead of the aarch64 ones).
set(CMAKE_C_FLAGS_INIT "-idirafter /usr/include")
set(CMAKE_CXX_FLAGS_INIT "-idirafter /usr/include")

find_program(ONEBIT_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(ONEBIT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ONEBIT_QEMU_AARCH64})
endif()

set(CMAKE_FIND_ROOT_PATH /usr/${ONEBIT_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Packages: the target's first, then the host's header-only ones.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
