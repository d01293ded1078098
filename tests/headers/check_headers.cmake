# CTest driver of the header self-containment check for one compiler and one standard:
#
#   cmake -DCOMPILER=g++|clang++|<path> -DSTANDARD=17|20 -DONEBIT_SOURCE_DIR=<src>
#         -DWORK_DIR=<scratch> -DGENERATOR=<generator> [-DMAKE_PROGRAM=...]
#         [-DSYNTAX_ONLY=ON] [-DPUBLIC_ONLY=ON] -P check_headers.cmake
#
# SYNTAX_ONLY runs the compiler's front end only (-fsyntax-only): every header is parsed, its
# templates instantiated and its warnings raised, but no code is generated. tests/CMakeLists.txt
# runs the whole compiler in one configuration (g++, C++17) and the front end in the other three.
# The front end is most of the cost anyway (lora_rounding.hpp alone: 18.8 s of g++ -fsyntax-only,
# 20.7 s at -O3), so this saves about a tenth.
#
# PUBLIC_ONLY checks the public headers only, not those under detail/ (tests/headers/CMakeLists.txt
# says why that loses nothing); tests/CMakeLists.txt sets it with SYNTAX_ONLY.
#
# A compiler that is not installed prints "ONEBIT-SKIP", which the test registers as its
# SKIP_REGULAR_EXPRESSION, so CTest reports the test as skipped, never as passed.
cmake_minimum_required(VERSION 3.16)

foreach(var COMPILER STANDARD ONEBIT_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_headers.cmake: ${var} is not set")
  endif()
endforeach()

if(IS_ABSOLUTE "${COMPILER}")
  set(compiler "${COMPILER}")
  if(NOT EXISTS "${compiler}")
    set(compiler compiler-NOTFOUND)
  endif()
else()
  # clang++ may be installed only under its versioned name.
  set(names ${COMPILER})
  if(COMPILER STREQUAL "clang++")
    list(APPEND names clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14)
  endif()
  find_program(compiler NAMES ${names})
endif()
if(NOT compiler)
  message("ONEBIT-SKIP: ${COMPILER} is not installed; headers not checked with it")
  return()
endif()

# A build directory configured with another compiler cannot be reused.
if(EXISTS "${WORK_DIR}/CMakeCache.txt")
  file(STRINGS "${WORK_DIR}/CMakeCache.txt" cached REGEX "^CMAKE_CXX_COMPILER:")
  if(NOT cached STREQUAL "CMAKE_CXX_COMPILER:FILEPATH=${compiler}")
    file(REMOVE_RECURSE "${WORK_DIR}")
  endif()
endif()

set(configure_args
  -S "${CMAKE_CURRENT_LIST_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${compiler}"
  -DCMAKE_BUILD_TYPE=Release
  "-DONEBIT_SOURCE_DIR=${ONEBIT_SOURCE_DIR}"
  "-DONEBIT_CXX_STANDARD=${STANDARD}")
if(SYNTAX_ONLY)
  list(APPEND configure_args -DONEBIT_HEADERS_SYNTAX_ONLY=ON)
else()
  list(APPEND configure_args -DONEBIT_HEADERS_SYNTAX_ONLY=OFF)
endif()
if(PUBLIC_ONLY)
  list(APPEND configure_args -DONEBIT_HEADERS_PUBLIC_ONLY=ON)
else()
  list(APPEND configure_args -DONEBIT_HEADERS_PUBLIC_ONLY=OFF)
endif()
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

execute_process(COMMAND "${CMAKE_COMMAND}" ${configure_args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the header check with ${compiler} failed (${rc})")
endif()
# -k 0 / keep going: report every header that fails, not only the first.
if(GENERATOR MATCHES "Ninja")
  set(keep_going -- -k 0)
else()
  set(keep_going -- -k)
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}" --parallel 2 ${keep_going}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "a public header does not compile on its own with ${compiler} "
                      "-std=c++${STANDARD} -Wall -Wextra -Werror (see above)")
endif()
if(SYNTAX_ONLY)
  set(how "front end only")
else()
  set(how "with code generation at -O3")
endif()
if(PUBLIC_ONLY)
  set(which "all public headers (not detail/)")
else()
  set(which "all headers, detail/ included,")
endif()
message("${which} compile on their own with ${compiler} as C++${STANDARD} (${how})")
