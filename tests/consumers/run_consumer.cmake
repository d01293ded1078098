# Configures, builds and runs one consumer project of onebit, from scratch, as a CTest test:
#
#   cmake -DMODE=find_package|find_package_core|add_subdirectory|fetchcontent -DONEBIT_SOURCE_DIR=<src>
#         -DONEBIT_BINARY_DIR=<onebit build> -DWORK_DIR=<scratch> -DCXX=<compiler>
#         -DGENERATOR=<generator> [-DMAKE_PROGRAM=<make or ninja>] -P run_consumer.cmake
#
# find_package and find_package_core first run `cmake --install` of ONEBIT_BINARY_DIR into
# WORK_DIR/prefix. find_package_core is configured so that Eigen and nlohmann-json cannot be
# found (CMAKE_DISABLE_FIND_PACKAGE_*), and its compile lines must not reach their headers. The
# consumer is built the way an engine builds it: -O2 and no -march flag (checked), so the
# instruction set comes from onebit's run-time dispatch, never from the consumer's flags.
cmake_minimum_required(VERSION 3.16)

foreach(var MODE ONEBIT_SOURCE_DIR WORK_DIR CXX GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()
set(consumer_source "${CMAKE_CURRENT_LIST_DIR}/${MODE}")
if(NOT EXISTS "${consumer_source}/CMakeLists.txt")
  message(FATAL_ERROR "no consumer project ${consumer_source}")
endif()

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("---- ${step}: ${ARGN}\n${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer '${MODE}': ${step} failed (${rc})")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(configure_args
  -S "${consumer_source}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX}"
  -DCMAKE_BUILD_TYPE=
  "-DCMAKE_CXX_FLAGS=-O2 -Wall -Wextra"
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
  "-DONEBIT_SOURCE_DIR=${ONEBIT_SOURCE_DIR}")
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

if(MODE STREQUAL "find_package_core")
  list(APPEND configure_args -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON
                             -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON)
endif()

if(MODE MATCHES "^find_package")
  if(NOT DEFINED ONEBIT_BINARY_DIR)
    message(FATAL_ERROR "run_consumer.cmake: find_package needs ONEBIT_BINARY_DIR")
  endif()
  set(prefix "${WORK_DIR}/prefix")
  run(install "${CMAKE_COMMAND}" --install "${ONEBIT_BINARY_DIR}" --prefix "${prefix}")
  foreach(file include/onebit/onebit.hpp lib/cmake/onebit/onebitConfig.cmake
               lib/cmake/onebit/onebitConfigVersion.cmake lib/cmake/onebit/onebitTargets.cmake)
    if(NOT EXISTS "${prefix}/${file}")
      message(FATAL_ERROR "cmake --install did not install ${file}")
    endif()
  endforeach()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}" "-DONEBIT_EXPECTED_PREFIX=${prefix}")
endif()

run(configure "${CMAKE_COMMAND}" ${configure_args})
run(build "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --parallel 2)

file(READ "${WORK_DIR}/build/compile_commands.json" commands)
if(commands MATCHES "-march=|-mcpu=|-mavx|-msse|-mtune=")
  message(FATAL_ERROR "the consumer was built with an instruction-set flag:\n${commands}")
endif()

if(MODE STREQUAL "find_package_core")
  if(commands MATCHES "eigen3|nlohmann")
    message(FATAL_ERROR "the core consumer's compile lines reach Eigen or nlohmann-json:\n${commands}")
  endif()
  # nlohmann-json sits on the default include path on Debian, so the compile lines alone prove
  # nothing for it: list every file the installed core umbrella pulls in.
  execute_process(COMMAND "${CXX}" -std=c++17 -M -I "${WORK_DIR}/prefix/include"
                          "${CMAKE_CURRENT_LIST_DIR}/main.cpp"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE deps)
  if(NOT rc EQUAL 0 OR deps MATCHES "[Ee]igen|nlohmann")
    message(FATAL_ERROR "the core umbrella reaches Eigen or nlohmann-json (or -M failed):\n${deps}")
  endif()
endif()

run(run "${WORK_DIR}/build/consumer")
if(NOT run_output MATCHES "onebit consumer: ok")
  message(FATAL_ERROR "consumer '${MODE}' did not report success")
endif()
message("consumer '${MODE}': configured, built and ran")
