/* A library a launcher might preload into one process only (tests/test_process.py builds it and sets LD_PRELOAD):
   a malloc of its own (forwarding to glibc's) and, as any object linked with -ffast-math or -Ofast does when it is
   loaded, flush-to-zero and denormals-are-zero for the whole process. */
#include <stddef.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* ptr, size_t size);
extern void __libc_free(void* ptr);

void* malloc(size_t size) { return __libc_malloc(size); }
void* calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
void* realloc(void* ptr, size_t size) { return __libc_realloc(ptr, size); }
void free(void* ptr) { __libc_free(ptr); }

__attribute__((constructor)) static void flush_denormals(void) {
#if defined(__x86_64__)
  unsigned int csr;
  __asm__ volatile("stmxcsr %0" : "=m"(csr));
  csr |= 0x8040; /* FTZ | DAZ */
  __asm__ volatile("ldmxcsr %0" : : "m"(csr));
#elif defined(__aarch64__)
  unsigned long fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  fpcr |= 1ul << 24; /* FZ */
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#endif
}
