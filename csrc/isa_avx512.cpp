// The kernels built for the "avx512" instruction set (flags in CMakeLists.txt).
#define PCR_ISA_NS avx512
#define PCR_ISA_NAME "avx512"
#include "isa_table.hpp"
