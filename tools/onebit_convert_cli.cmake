# CTest driver of onebit-convert's command line:
#
#   cmake -DCONVERT=<onebit-convert> -DEXPORTER=<export_tinyllama_safetensors or ""> -DDATA_DIR=<dir>
#         -DPYTHON=/usr/bin/python3 -DCHECK_SCRIPT=<check_safetensors.py> -DWORK_DIR=<scratch>
#         -P onebit_convert_cli.cmake
#
# --help and --version print to standard output and exit 0; usage errors exit 2 with a hint on
# standard error; an input that cannot be read or an output that cannot be written exit 1 and
# leave no file. Then the tiny Llama, exported to safetensors, is converted, and the Python
# check reads the result (each step skipped, saying so, when its program or data is missing).
cmake_minimum_required(VERSION 3.16)

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# expect(<exit code> <regex on stdout+stderr> <args...>)
function(expect code regex)
  execute_process(COMMAND "${CONVERT}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err WORKING_DIRECTORY "${WORK_DIR}")
  if(NOT rc EQUAL code)
    message(FATAL_ERROR "onebit-convert ${ARGN}: exit ${rc}, expected ${code}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "onebit-convert ${ARGN}: output does not match '${regex}':\n${out}${err}")
  endif()
  message("ok: onebit-convert ${ARGN} -> exit ${rc}")
  set(last_out "${out}" PARENT_SCOPE)
  set(last_err "${err}" PARENT_SCOPE)
endfunction()

expect(0 "Usage: onebit-convert \\[OPTION\\]... INPUT OUTPUT.*Exit status" --help)
if(NOT last_err STREQUAL "")
  message(FATAL_ERROR "--help wrote to standard error")
endif()
expect(0 "Usage:" -h)
expect(0 "^onebit-convert \\(onebit\\) [0-9]" --version)
expect(2 "needs INPUT and OUTPUT files.*Try 'onebit-convert --help'")
expect(2 "unknown option '--bogus'" --bogus in out)
expect(2 "unknown option '-z'" -z in out)
expect(2 "needs a value" in out --include)
expect(2 "whole number" --iterations=0 in out)
expect(2 "unknown method 'cbq'" --method cbq in out)
expect(2 "too many files" a b c)
expect(2 "takes no value" --quiet=yes in out)
expect(2 "go with --method=rtn" --bits=2 in out)
expect(2 "--bits needs a whole number from 1 to 8, not '9'" -m rtn -b 9 in out)
expect(2 "--symmetric needs --bits of 2 or more" -m rtn -b 1 --symmetric in out)
# GGUF input (tests/data/gguf, written by make_gguf.py): a Q1_0 tensor to a group-scaled layer.
expect(0 "blk.0.ffn_down.weight Q1_0 \\[5, 384\\] -> blk.0.ffn_down.*1 of 2 tensors" --dry-run -i "*ffn_down*" "${DATA_DIR}/gguf/layer_v2.gguf")
expect(0 "blk.0.ffn_down +group128 +5x384 1\\.1250.*6 parameters kept" -i "*ffn_down*" "${DATA_DIR}/gguf/layer_v2.gguf" "${WORK_DIR}/layer_v2.safetensors")
expect(1 "missing.safetensors: cannot open the file" missing.safetensors out.safetensors)
if(EXISTS "${WORK_DIR}/out.safetensors")
  message(FATAL_ERROR "a failed conversion left out.safetensors behind")
endif()

if(EXPORTER STREQUAL "" OR NOT EXISTS "${DATA_DIR}/tinyllamas/stories260K.bin")
  message("ONEBIT-SKIP-PART: no exporter or no tinyllamas data; the model conversion did not run")
  return()
endif()
set(float_file "${WORK_DIR}/stories260K.safetensors")
execute_process(COMMAND "${EXPORTER}" "${DATA_DIR}/tinyllamas/stories260K.bin" "${float_file}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "export_tinyllama_safetensors failed (${rc})")
endif()
expect(0 "35 of 47 tensors would be converted" --dry-run "${float_file}")
expect(0 "35 layers, 226560 weights.*mean relative error 0\\.5[0-9]+" "${float_file}" converted.safetensors)
expect(0 "^$" -q -i "layers.0.*" -x "*.w2.weight" "${float_file}" partial.safetensors)
expect(0 "rtn w2 g32.*35 layers, 226560 weights: 4\\.0[0-9]+ bits per parameter, mean relative error 0\\.[34]"
       -m rtn -b 2 -g 32 "${float_file}" rtn.safetensors)
expect(1 "no-such-dir/out.safetensors: cannot create a temporary file" "${float_file}" no-such-dir/out.safetensors)
expect(0 "warning: no tensor of .* matches" -i "norm.weight" "${float_file}" unchanged.safetensors)

if(NOT EXISTS "${PYTHON}")
  message("ONEBIT-SKIP-PART: ${PYTHON} is missing; the converted file was not checked in Python")
  return()
endif()
foreach(check "converted.safetensors;117 tensors, 35 OneBit layers, 0 low-bit matrices: ok"
              "rtn.safetensors;117 tensors, 0 OneBit layers, 35 low-bit matrices: ok")
  list(GET check 0 file)
  list(GET check 1 expected)
  execute_process(COMMAND "${PYTHON}" "${CHECK_SCRIPT}" "${WORK_DIR}/${file}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("${out}")
  if(rc EQUAL 0)
    if(NOT out MATCHES "${expected}")
      message(FATAL_ERROR "unexpected check result")
    endif()
  elseif(out MATCHES "No module named 'numpy'")
    message("ONEBIT-SKIP-PART: numpy is missing; ${file} was not checked in Python")
  else()
    message(FATAL_ERROR "check_safetensors.py refused ${file} (${rc})")
  endif()
endforeach()
