// The kernels built for the "avx2" instruction set (flags in CMakeLists.txt).
#define PCR_ISA_NS avx2
#define PCR_ISA_NAME "avx2"
#include "isa_table.hpp"
