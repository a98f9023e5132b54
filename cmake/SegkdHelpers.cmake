# segkd_library(NAME SOURCES ... DEPS ...): one static library per folder, reusing the shared torch PCH.
function(segkd_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} ${TORCH_LIBRARIES})
  target_precompile_headers(${name} REUSE_FROM segkd_pch)
  add_dependencies(${name} segkd_pch)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

# segkd_add_test(NAME SOURCES ... DEPS ... [LABELS ...]): one GoogleTest executable, registered in ctest.
function(segkd_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} segkd_testing GTest::gtest GTest::gtest_main)
  target_precompile_headers(${name} REUSE_FROM segkd_pch)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "unit;${ARG_LABELS}"
    ENVIRONMENT "SEGKD_SOURCE_DIR=${PROJECT_SOURCE_DIR};SEGKD_BINARY_DIR=${PROJECT_BINARY_DIR};OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endfunction()

# segkd_add_mpi_test(NAME SOURCES ... DEPS ... RANKS 2 3): a GoogleTest program with its own main() (MPI init),
# registered once per rank count as `mpiexec -n N`; root-safe and oversubscribed so it runs on 2 cores.
function(segkd_add_mpi_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;RANKS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} segkd_testing GTest::gtest)
  target_precompile_headers(${name} REUSE_FROM segkd_pch)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  foreach(n IN LISTS ARG_RANKS)
    add_test(NAME ${name}_np${n}
      COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe --bind-to none
              $<TARGET_FILE:${name}>)
    set_tests_properties(${name}_np${n} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "mpi" PROCESSORS ${n}
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;SEGKD_SOURCE_DIR=${PROJECT_SOURCE_DIR};SEGKD_BINARY_DIR=${PROJECT_BINARY_DIR};OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  endforeach()
endfunction()

# segkd_link_hdf5(TARGET SCOPE): links HDF5's C library, through its imported target where CMake's FindHDF5 made one.
function(segkd_link_hdf5 target scope)
  if(TARGET hdf5::hdf5)
    target_link_libraries(${target} ${scope} hdf5::hdf5)
  else()
    target_include_directories(${target} ${scope} ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
    target_link_libraries(${target} ${scope} ${HDF5_C_LIBRARIES})
  endif()
endfunction()
