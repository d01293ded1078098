# CTest driver of onebit-convert on OneBit's own checkpoints:
#
#   cmake -DCONVERT=<onebit-convert> -DCHECKPOINT=<tests/data/onebit_checkpoint/checkpoint.safetensors>
#         -DPYTHON=/usr/bin/python3 -DCHECK_SCRIPT=<check_safetensors.py> -DWORK_DIR=<scratch>
#         -P onebit_checkpoint_cli.cmake
#
# The numpy-written checkpoint converts to a onebit file (its 14 modules as layers with the
# post-norm) and back; converting the result again gives the same bytes both ways (a fixed
# point), the Python check reads the onebit file, and the options that do not go together are
# usage errors.
cmake_minimum_required(VERSION 3.16)

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run code regex)
  execute_process(COMMAND "${CONVERT}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err WORKING_DIRECTORY "${WORK_DIR}")
  if(NOT rc EQUAL code OR NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "onebit-convert ${ARGN}: exit ${rc} (expected ${code}), output\n${out}${err}")
  endif()
  message("ok: onebit-convert ${ARGN} -> exit ${rc}")
endfunction()

function(same a b)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${a}" "${b}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${a} and ${b} differ")
  endif()
endfunction()

run(0 "14 OneBit layers" --from-onebit-checkpoint "${CHECKPOINT}" onebit1.safetensors)
run(0 "14 OneBit layers" --to-onebit-checkpoint onebit1.safetensors official1.safetensors)
run(0 "14 OneBit layers" --from-onebit-checkpoint official1.safetensors onebit2.safetensors)
run(0 "14 OneBit layers" --to-onebit-checkpoint onebit2.safetensors official2.safetensors)
same("${WORK_DIR}/onebit1.safetensors" "${WORK_DIR}/onebit2.safetensors")
same("${WORK_DIR}/official1.safetensors" "${WORK_DIR}/official2.safetensors")
run(0 "model.layers.1.mlp.down_proj" --dry-run --from-onebit-checkpoint "${CHECKPOINT}")
run(2 "one at a time" --from-onebit-checkpoint --to-onebit-checkpoint a b)
run(2 "take no quantisation" --from-onebit-checkpoint --method=rtn a b)
# A file with nothing to convert is an error, not an empty result.
run(1 "holds no OneBit layer" --to-onebit-checkpoint "${CHECKPOINT}" nothing.safetensors)
run(1 "holds no OneBit module" --from-onebit-checkpoint onebit1.safetensors nothing.safetensors)

if(EXISTS "${PYTHON}")
  execute_process(COMMAND "${PYTHON}" "${CHECK_SCRIPT}" "${WORK_DIR}/onebit1.safetensors"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message("ok: check_safetensors.py reads the converted file: ${out}")
  elseif(rc EQUAL 77 OR "${err}" MATCHES "numpy")
    message("skipped the Python check: ${err}")
  else()
    message(FATAL_ERROR "check_safetensors.py refused the converted file (${rc}):\n${out}${err}")
  endif()
endif()
