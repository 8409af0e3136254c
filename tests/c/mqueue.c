/* POSIX message queues across a checkpoint (tests/e2e_mqueue.rs).
 *
 * mqueue single NAME: four queues, NAME-a, NAME-s (named), and two
 * unlinked ones. NAME-a holds messages of several priorities and has a
 * second, non-blocking, read-only descriptor; the first unlinked one
 * holds two messages; NAME-s has a SIGEV_SIGNAL registration, the second
 * unlinked one a SIGEV_THREAD one. It prints "waiting", waits 1.5 s (the
 * checkpoint comes then), and prints what it finds: attributes, messages
 * in the order received, that the non-blocking descriptor does not block,
 * that the unlinked queue has no name, and that each notification fires
 * once a message arrives, with its value, exactly once.
 *
 * mqueue tree NAME ROUNDS: a parent and its forked child. The parent
 * opens NAME-q before the fork (one description for both) and unlinks it
 * once the child has it; both open NAME-r by name on their own. The
 * parent keeps three numbers queued ahead on q (priority 1); the
 * child takes each, naps, answers n*n on r; the parent prints each
 * answer. Deterministic output. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static mqd_t open_q(const char *name, int flags, long maxmsg, long msgsize) {
    struct mq_attr a = {0};
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    mqd_t q = mq_open(name, flags | O_CREAT, 0600, &a);
    if (q == (mqd_t)-1) {
        perror(name);
        exit(1);
    }
    return q;
}

static void send_or_die(mqd_t q, const char *m, unsigned prio) {
    if (mq_send(q, m, strlen(m), prio) != 0) {
        perror("mq_send");
        exit(1);
    }
}

static volatile sig_atomic_t signalled, sig_value, sig_code_ok;
static volatile int threaded, thread_value_ok;
static int cookie = 77;

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    signalled++;
    sig_value = si->si_value.sival_int;
    sig_code_ok = si->si_code == SI_MESGQ;
}

static void on_thread(union sigval v) {
    thread_value_ok = v.sival_ptr == &cookie;
    __atomic_add_fetch(&threaded, 1, __ATOMIC_SEQ_CST);
}

static int single(const char *base) {
    char a_name[256], s_name[256], u_name[256], t_name[256];
    snprintf(a_name, sizeof a_name, "%s-a", base);
    snprintf(s_name, sizeof s_name, "%s-s", base);
    snprintf(u_name, sizeof u_name, "%s-u", base);
    snprintf(t_name, sizeof t_name, "%s-t", base);
    mq_unlink(a_name);
    mq_unlink(s_name);
    mq_unlink(u_name);
    mq_unlink(t_name);
    mqd_t a = open_q(a_name, O_RDWR, 8, 64);
    mqd_t a2 = mq_open(a_name, O_RDONLY | O_NONBLOCK);
    mqd_t s = open_q(s_name, O_RDWR, 4, 32);
    mqd_t u = open_q(u_name, O_RDWR, 4, 32);
    mqd_t t = open_q(t_name, O_RDWR, 4, 32);
    mq_unlink(u_name);
    mq_unlink(t_name);
    send_or_die(a, "one", 1);
    send_or_die(a, "five", 5);
    send_or_die(a, "one-again", 1);
    send_or_die(a, "nine", 9);
    send_or_die(a, "", 5);
    send_or_die(u, "unlinked-1", 3);
    send_or_die(u, "unlinked-2", 3);

    struct sigaction sa = {0};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 1;
    ev.sigev_value.sival_int = 4242;
    if (mq_notify(s, &ev) != 0) {
        perror("mq_notify signal");
        return 1;
    }
    struct sigevent tv = {0};
    tv.sigev_notify = SIGEV_THREAD;
    tv.sigev_notify_function = on_thread;
    tv.sigev_value.sival_ptr = &cookie;
    if (mq_notify(t, &tv) != 0) {
        perror("mq_notify thread");
        return 1;
    }
    /* A second registration is refused, as the kernel says. */
    printf("second registration: %s\n",
           mq_notify(t, &tv) != 0 && errno == EBUSY ? "EBUSY" : "accepted?");
    printf("waiting\n");
    fflush(stdout);
    nap_ms(1500);

    struct mq_attr at;
    mq_getattr(a, &at);
    printf("a: maxmsg %ld msgsize %ld curmsgs %ld flags %s\n", at.mq_maxmsg,
           at.mq_msgsize, at.mq_curmsgs, at.mq_flags & O_NONBLOCK ? "nonblock" : "block");
    mq_getattr(a2, &at);
    printf("a2: flags %s\n", at.mq_flags & O_NONBLOCK ? "nonblock" : "block");
    char buf[64];
    unsigned prio;
    ssize_t n;
    while ((n = mq_receive(a2, buf, sizeof buf, &prio)) >= 0)
        printf("a: prio %u \"%.*s\"\n", prio, (int)n, buf);
    printf("a2 then: %s\n", errno == EAGAIN ? "EAGAIN" : strerror(errno));
    printf("a2 send: %s\n", mq_send(a2, "x", 1, 0) != 0 && errno == EBADF ? "EBADF" : "sent?");
    mq_getattr(u, &at);
    printf("u: maxmsg %ld msgsize %ld curmsgs %ld\n", at.mq_maxmsg, at.mq_msgsize,
           at.mq_curmsgs);
    while (mq_getattr(u, &at) == 0 && at.mq_curmsgs > 0) {
        n = mq_receive(u, buf, 32, &prio);
        printf("u: prio %u \"%.*s\"\n", prio, (int)n, buf);
    }
    mqd_t again = mq_open(u_name, O_RDONLY);
    printf("u by name: %s\n", again == (mqd_t)-1 && errno == ENOENT ? "ENOENT" : "found?");

    printf("signals before a message: %d\n", (int)signalled);
    send_or_die(s, "wake", 0);
    for (int i = 0; i < 500 && !signalled; i++)
        nap_ms(10);
    printf("signal notification: %d, value %d, %s\n", (int)signalled, (int)sig_value,
           sig_code_ok ? "SI_MESGQ" : "other code");
    send_or_die(s, "again", 0);
    nap_ms(100);
    printf("signals after a second message: %d\n", (int)signalled);

    printf("thread calls before a message: %d\n", threaded);
    send_or_die(t, "wake", 0);
    for (int i = 0; i < 500 && !__atomic_load_n(&threaded, __ATOMIC_SEQ_CST); i++)
        nap_ms(10);
    printf("thread notification: %d, value %s\n", threaded, thread_value_ok ? "right" : "wrong");
    /* One-shot: registering again works, and fires again. */
    n = mq_receive(t, buf, 32, &prio);
    if (mq_notify(t, &tv) != 0)
        perror("mq_notify again");
    send_or_die(t, "wake2", 0);
    for (int i = 0; i < 500 && __atomic_load_n(&threaded, __ATOMIC_SEQ_CST) < 2; i++)
        nap_ms(10);
    printf("thread notification again: %d\n", threaded);
    mq_unlink(a_name);
    mq_unlink(s_name);
    printf("mqueue ok\n");
    return 0;
}

static int tree(const char *base, int rounds) {
    char q_name[256], r_name[256];
    snprintf(q_name, sizeof q_name, "%s-q", base);
    snprintf(r_name, sizeof r_name, "%s-r", base);
    mq_unlink(q_name);
    mq_unlink(r_name);
    setvbuf(stdout, NULL, _IOLBF, 0);
    mqd_t q = open_q(q_name, O_RDWR, 8, 16);
    /* r exists before the fork: each opens it by name afterwards. */
    mqd_t r0 = open_q(r_name, O_RDWR, 8, 16);
    mq_close(r0);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        mqd_t r = open_q(r_name, O_WRONLY, 8, 16);
        for (int i = 1; i <= rounds; i++) {
            char buf[16];
            unsigned prio;
            ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
            if (n < 0) {
                perror("child mq_receive");
                _exit(2);
            }
            buf[n] = 0;
            long v = atol(buf);
            nap_ms(30);
            char out[40];
            snprintf(out, sizeof out, "%ld:%u", v * v, prio);
            if (mq_send(r, out, strlen(out), 0) != 0)
                _exit(3);
        }
        _exit(0);
    }
    mqd_t r = open_q(r_name, O_RDONLY, 8, 16);
    char num[16];
    int next = 1;
    for (; next <= 3 && next <= rounds; next++) {
        snprintf(num, sizeof num, "%d", next);
        send_or_die(q, num, 1);
    }
    mq_unlink(q_name);
    for (int i = 1; i <= rounds; i++) {
        char buf[16];
        ssize_t n = mq_receive(r, buf, sizeof buf, NULL);
        if (n < 0) {
            perror("parent mq_receive");
            return 1;
        }
        printf("%d -> %.*s\n", i, (int)n, buf);
        if (next <= rounds) {
            snprintf(num, sizeof num, "%d", next);
            send_or_die(q, num, 1);
            next++;
        }
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    mq_unlink(r_name);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "single") == 0)
        return single(argv[2]);
    if (argc > 3 && strcmp(argv[1], "tree") == 0)
        return tree(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: mqueue single NAME | tree NAME ROUNDS\n");
    return 2;
}
