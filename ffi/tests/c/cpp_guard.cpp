// The header included from C++ as is: `extern "C"` linkage, and <cerrno> before it.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "clockbound.h"

int main(int argc, char **argv)
{
	const char *missing = argc > 1 ? argv[1] : "/nonexistent/clockbound/shm1";
	clockbound_err err = {};
	clockbound_ctx *ctx = clockbound_open_with(missing, VMCLOCK_SHM_DEFAULT_PATH, &err);
	if (ctx != nullptr || err.kind != CLOCKBOUND_ERR_SYSCALL ||
	    clockbound_err_errno(&err) != ENOENT) {
		std::fprintf(stderr, "open: kind %d errno %d: %s\n", err.kind,
			     clockbound_err_errno(&err), err.detail);
		return 1;
	}
	clockbound_now_result res;
	clockbound_err *e = clockbound_now(nullptr, &res, &err);
	if (e != &err || err.kind != CLOCKBOUND_ERR_INVALID_ARGUMENT) {
		return 1;
	}
	std::printf("c++: ok\n");
	return 0;
}
