// faults.h — fault injection for tests: every call of the C API passes fault_point() once validation has passed and
// before anything is allocated or written, and a test's hook can throw there what an allocation or a bug would
// (tests/errors_test.cc checks that each becomes a status, a message, and untouched outputs).
#pragma once

namespace xent::internal {

using FaultHook = void (*)(const char* where);

// Installs `hook` for every thread (nullptr: none, the default).
void set_fault_hook(FaultHook hook);

// Calls the hook, if any, with the name of the point.
void fault_point(const char* where);

}  // namespace xent::internal
