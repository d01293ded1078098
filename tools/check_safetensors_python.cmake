# CTest driver of the independent Python check (scripts/check_safetensors.py):
#
#   cmake -DPYTHON=/usr/bin/python3 -DSCRIPT=<check_safetensors.py> -DTEST_PROGRAM=<test_safetensors>
#         -DWORK_DIR=<scratch> -P check_safetensors_python.cmake
#
# test_safetensors writes a file (layers and plain tensors) and what onebit reads from it; the
# script, with numpy alone, must find the same; and a copy with one sign bit flipped must fail
# the check (so the check can see a difference). Without /usr/bin/python3 or numpy it prints
# ONEBIT-SKIP, which the test registers as its skip expression.
cmake_minimum_required(VERSION 3.16)

if(NOT EXISTS "${PYTHON}")
  message("ONEBIT-SKIP: ${PYTHON} is not installed; the Python check of safetensors files did not run")
  return()
endif()
execute_process(COMMAND "${PYTHON}" -c "import numpy" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 0)
  message("ONEBIT-SKIP: numpy is not importable by ${PYTHON} (Debian: python3-numpy)")
  return()
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env "ONEBIT_PYTHON_CHECK_DIR=${WORK_DIR}"
          "${TEST_PROGRAM}" "--test-case=files for the independent Python check"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "test_safetensors could not write the files to check (${rc})")
endif()

set(file "${WORK_DIR}/python_check.safetensors")
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${file}" "${WORK_DIR}/python_check.expected"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_safetensors.py found the file differs from what onebit holds (${rc})")
endif()

# The same file with the first sign of the first layer flipped: the check must see it.
set(tampered "${WORK_DIR}/tampered.safetensors")
execute_process(COMMAND "${PYTHON}" -c [=[
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
w = min((v["data_offsets"][0], k) for k, v in header.items() if k.endswith(".W"))
data[8 + n + w[0]] ^= 1
open(sys.argv[2], "wb").write(data)
]=] "${file}" "${tampered}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "could not write the tampered copy (${rc})")
endif()
execute_process(COMMAND "${PYTHON}" "${SCRIPT}" "${tampered}" "${WORK_DIR}/python_check.expected"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "check_safetensors.py did not notice a flipped sign bit (${rc}):\n${out}")
endif()
message("check_safetensors.py refuses a copy with one sign bit flipped, as it should")
