// The kernels built for the "base" instruction set (flags in CMakeLists.txt).
#define PCR_ISA_NS base
#define PCR_ISA_NAME "base"
#include "isa_table.hpp"
