// memory_limit.h — a call under a real allocation limit: a child process whose address space may grow only by a
// given headroom (RLIMIT_AS), for tests of what a call allocates (XENT_OUT_OF_MEMORY, the fused op's chunk budget).
// AddressSanitizer reserves address space that such a limit breaks: tests skip under XENT_UNDER_ASAN.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>

#if defined(__SANITIZE_ADDRESS__)  // gcc
#define XENT_UNDER_ASAN 1
#elif defined(__has_feature)       // clang
#if __has_feature(address_sanitizer)
#define XENT_UNDER_ASAN 1
#endif
#endif

namespace xent::test {

// Bytes of address space this process maps now.
inline size_t mapped_bytes() {
  long pages = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f) {
    if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return static_cast<size_t>(pages) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Runs `body` in a child process whose address space may grow by `headroom` bytes; returns its exit status (10: the
// limit could not be set; 100 + a signal's number: killed, e.g. by the 60-second alarm).
template <typename Body>
int in_limited_child(size_t headroom, const Body& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    const rlimit limit{mapped_bytes() + headroom, mapped_bytes() + headroom};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(10);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

}  // namespace xent::test
