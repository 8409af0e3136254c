// C++ twin of cs_hooks.c for tests/e2e_abi.rs (same arguments, output and
// socket protocol), using an RAII guard for critical sections and
// capture-less lambdas as hooks; linked against libselfckpt.so.
#include "selfckpt.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

class CriticalSection {
  public:
    CriticalSection() { selfckpt_disable(); }
    ~CriticalSection() { selfckpt_enable(); }
    CriticalSection(const CriticalSection &) = delete;
    CriticalSection &operator=(const CriticalSection &) = delete;
};

int conn = -1;
const char *sock_path;
std::atomic<int> hook_runs{0};

int say(const std::string &msg) {
    return conn >= 0 && write(conn, msg.data(), msg.size()) == (ssize_t)msg.size() ? 0 : -1;
}

int connect_to(const std::string &hello) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        std::perror("connect");
        return -1;
    }
    return say(hello);
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s DIR SOCKET STEPS CS_STEP CKPT_STEP SLEEP_MS\n", argv[0]);
        return 2;
    }
    sock_path = argv[2];
    int steps = std::atoi(argv[3]), cs_step = std::atoi(argv[4]), ckpt_step = std::atoi(argv[5]);
    int sleep_ms = std::atoi(argv[6]);
    selfckpt_config cfg;
    selfckpt_config_init(&cfg);
    cfg.dir = argv[1];
    cfg.keep = 5;
    cfg.workers = 1;
    if (selfckpt_init_config(&cfg) != 0) {
        std::fprintf(stderr, "selfckpt_init_config: %s\n", selfckpt_last_error());
        return 3;
    }
    selfckpt_register_hook(
        SELFCKPT_HOOK_CHECKPOINT,
        [](int state, void *) -> int {
            if (state != SELFCKPT_CHECKPOINT && state != SELFCKPT_TERM)
                return 1;
            say("bye\n");
            close(conn);
            conn = -1;
            hook_runs++;
            return 0;
        },
        nullptr);
    selfckpt_hook_fn reopen = [](int state, void *) -> int {
        if (conn >= 0)
            return 0;
        return connect_to(state == SELFCKPT_RESTART ? "hello restart\n" : "hello continue\n");
    };
    selfckpt_register_hook(SELFCKPT_HOOK_CONTINUE, reopen, nullptr);
    selfckpt_register_hook(SELFCKPT_HOOK_RESTART, reopen, nullptr);
    if (connect_to("hello start\n") != 0)
        return 4;

    unsigned long long x = 1;
    for (int step = 0; step < steps; step++) {
        if (step == cs_step) {
            int seen = hook_runs.load();
            {
                CriticalSection outer;
                CriticalSection inner;
                kill(getpid(), SIGUSR1);
                if (selfckpt_checkpoint() != SELFCKPT_DEFERRED) {
                    std::fprintf(stderr, "FAIL: checkpoint inside a critical section not deferred\n");
                    return 5;
                }
                usleep(400000);
                if (hook_runs.load() != seen) {
                    std::fprintf(stderr, "FAIL: checkpoint ran inside a critical section\n");
                    return 5;
                }
            }
            for (int i = 0; i < 1000 && hook_runs.load() == seen; i++)
                usleep(10000);
            if (hook_runs.load() == seen) {
                std::fprintf(stderr, "FAIL: no checkpoint after the critical section ended\n");
                return 5;
            }
            std::fprintf(stderr, "critical section: checkpoint deferred, then taken\n");
        }
        int sent;
        {
            CriticalSection cs;
            x = x * 6364136223846793005ULL + static_cast<unsigned long long>(step);
            sent = say("step " + std::to_string(step) + "\n");
        }
        std::printf("step %d %llu\n", step, x);
        std::fflush(stdout);
        if (sent != 0) {
            std::fprintf(stderr, "FAIL: socket write at step %d\n", step);
            return 6;
        }
        if (step == ckpt_step) {
            int rc = selfckpt_checkpoint();
            std::fprintf(stderr, "checkpoint at step %d: %s\n", step,
                         rc == SELFCKPT_CONTINUE  ? "continue"
                         : rc == SELFCKPT_RESTART ? "restart"
                                                  : selfckpt_last_error());
            if (rc != SELFCKPT_CONTINUE && rc != SELFCKPT_RESTART)
                return 7;
        }
        usleep(sleep_ms * 1000);
    }
    std::printf("done %llu\n", x);
    return 0;
}
