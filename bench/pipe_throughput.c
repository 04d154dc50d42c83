// pipe_throughput.c — how many 512-bit vector operations of each kind this core retires per cycle, for the
// roofline arguments in docs/performance.md (which exps and shuffles a kernel can overlap, and how fast).
// Not part of the build (x86-64 with AVX-512 only):
//   gcc -O2 -mavx512f bench/pipe_throughput.c -o /tmp/pipes && /tmp/pipes
// Each throughput loop runs 12 independent chains, one operation each per iteration, on zmm0..zmm11 (they hide a
// latency of up to 12 cycles at one operation per cycle, 6 at two); the "a | b" loops run 6 of one kind and 6 of
// the other. The latency loops run 12 dependent operations per iteration: their time per operation is its
// latency, and the scalar add's (one core cycle) gives the core's clock against the TSC.
#include <stdio.h>
#include <x86intrin.h>

enum { kReps = 10000000 };

// One operation on register zmm<r>, with zmm30 (zero) as its other source.
#define ON(op, r) op " %%zmm30, %%zmm" #r ", %%zmm" #r "\n"
#define ROW(op, a, b, c, d, e, f) ON(op, a) ON(op, b) ON(op, c) ON(op, d) ON(op, e) ON(op, f)
#define LOW(op) ROW(op, 0, 1, 2, 3, 4, 5)
#define HIGH(op) ROW(op, 6, 7, 8, 9, 10, 11)
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11"

// TSC cycles per operation of a loop whose body runs `per_iteration` operations.
#define TIMED(name, body, per_iteration)                                             \
  static double name(void) {                                                        \
    const unsigned long long start = __rdtsc();                                     \
    for (long r = 0; r < kReps; ++r) __asm__ volatile(body ::: CLOBBERS, "rax");    \
    return (double)(__rdtsc() - start) / (kReps * (double)(per_iteration));         \
  }

#define BOTH(a, b) LOW(a) HIGH(b)
TIMED(fma_alone, BOTH("vfmadd231ps", "vfmadd231ps"), 12)
TIMED(mul_alone, BOTH("vmulps", "vmulps"), 12)
TIMED(add_alone, BOTH("vaddps", "vaddps"), 12)
TIMED(max_alone, BOTH("vmaxps", "vmaxps"), 12)
TIMED(unpack, BOTH("vunpcklps", "vunpcklps"), 12)
TIMED(block_shuffle, BOTH("vshuff32x4 $0x44,", "vshuff32x4 $0x44,"), 12)
TIMED(permute, BOTH("vpermps", "vpermps"), 12)
TIMED(permute2, BOTH("vpermt2ps", "vpermt2ps"), 12)
TIMED(shift, BOTH("vpsllvd", "vpsllvd"), 12)
TIMED(int_add, BOTH("vpaddd", "vpaddd"), 12)
TIMED(fma_add, BOTH("vfmadd231ps", "vaddps"), 12)
TIMED(fma_unpack, BOTH("vfmadd231ps", "vunpcklps"), 12)
TIMED(add_unpack, BOTH("vaddps", "vunpcklps"), 12)
TIMED(fma_shift, BOTH("vfmadd231ps", "vpsllvd"), 12)
TIMED(fma_int_add, BOTH("vfmadd231ps", "vpaddd"), 12)
// Latency chains: 12 dependent operations per iteration, all on zmm0 (or rax).
#define ON0(op) op " %%zmm30, %%zmm0, %%zmm0\n"
#define CHAIN(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op) ON0(op)
TIMED(fma_latency, CHAIN("vfmadd231ps"), 12)
TIMED(add_latency, CHAIN("vaddps"), 12)
#define INC "add $1, %%rax\n"
TIMED(scalar_add_latency, INC INC INC INC INC INC INC INC INC INC INC INC, 12)

int main(void) {
  __asm__ volatile("vxorps %%xmm30, %%xmm30, %%xmm30" ::: "xmm30");
  const struct {
    const char* name;
    double (*run)(void);
  } loops[] = {
      {"vfmadd231ps", fma_alone},           {"vmulps", mul_alone},
      {"vaddps", add_alone},                {"vmaxps", max_alone},
      {"vunpcklps", unpack},          {"vshuff32x4", block_shuffle},
      {"vpermps", permute},           {"vpermt2ps", permute2},
      {"vpsllvd", shift},             {"vpaddd", int_add},
      {"fma | add", fma_add},         {"fma | vunpcklps", fma_unpack},
      {"add | vunpcklps", add_unpack}, {"fma | vpsllvd", fma_shift},
      {"fma | vpaddd", fma_int_add},
  };
  printf("throughput, TSC cycles per operation (12 independent per iteration):\n");
  for (size_t i = 0; i < sizeof loops / sizeof loops[0]; ++i) printf("  %-18s %.3f\n", loops[i].name, loops[i].run());
  const double one_cycle = scalar_add_latency();
  printf("latency, TSC cycles: scalar add %.3f (one core cycle: the core runs at %.2fx the TSC), vfmadd231ps %.3f "
         "(%.1f core cycles), vaddps %.3f (%.1f core cycles)\n",
         one_cycle, 1 / one_cycle, fma_latency(), fma_latency() / one_cycle, add_latency(), add_latency() / one_cycle);
  return 0;
}
