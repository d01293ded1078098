# Debian 12's xsimd 8.1 package exports its target with INTERFACE_LINK_LIBRARIES "xtl", a
# package it neither ships nor looks up, so linking the plain target adds -lxtl and every link
# fails ("cannot find -lxtl"). xsimd needs xtl only for its optional xtl::xcomplex support,
# which onebit does not use: when there is no xtl target, drop the bare name. Included after
# xsimd is found, by CMakeLists.txt and by the installed onebitConfig.cmake.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_onebit_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_onebit_xsimd_links)
    list(REMOVE_ITEM _onebit_xsimd_links xtl)
    set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "${_onebit_xsimd_links}")
  endif()
  unset(_onebit_xsimd_links)
endif()
