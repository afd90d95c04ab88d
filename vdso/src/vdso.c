/*
 * The vDSO the Sentry maps into every application.
 *
 * CLOCK_REALTIME and CLOCK_MONOTONIC are computed from the time-stamp
 * counter and the parameter page the Sentry keeps up to date (the layout is
 * `Params` in lib.rs; the offsets are pinned on both sides). Anything this
 * code does not handle, or any call before the Sentry has calibrated the
 * clock, falls back to a real `syscall`, which traps into the Sentry and is
 * answered there from the same parameters, so both paths agree.
 *
 * Freestanding: no libc, no relocations, no writable data.
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;

#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1

#define NR_gettimeofday 96
#define NR_time 201
#define NR_clock_gettime 228
#define NR_clock_getres 229
#define NR_getcpu 309

/* Spins on an odd sequence count before giving up and asking the Sentry. */
#define MAX_SPINS 1000

struct timespec_k {
	i64 tv_sec;
	i64 tv_nsec;
};

struct timeval_k {
	i64 tv_sec;
	i64 tv_usec;
};

struct timezone_k {
	int tz_minuteswest;
	int tz_dsttime;
};

struct params {
	u64 seq;
	u64 ready;
	u64 base_tsc;
	u64 base_ns;
	u64 mult;
	u64 shift;
	i64 realtime_offset;
	u64 getcpu_rdtscp;
};

#define OFFSET_IS(field, n) \
	_Static_assert(__builtin_offsetof(struct params, field) == (n), #field)
OFFSET_IS(seq, 0);
OFFSET_IS(ready, 8);
OFFSET_IS(base_tsc, 16);
OFFSET_IS(base_ns, 24);
OFFSET_IS(mult, 32);
OFFSET_IS(shift, 40);
OFFSET_IS(realtime_offset, 48);
OFFSET_IS(getcpu_rdtscp, 56);

/* Defined by the linker script: the page below the image. */
extern const volatile struct params vvar_params
	__attribute__((visibility("hidden")));

static inline long syscall2(long nr, long a, long b)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a), "S"(b)
			 : "rcx", "r11", "memory");
	return ret;
}

static inline long syscall3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The TSC, read after every earlier instruction and before any later one. */
static inline u64 rdtsc_ordered(void)
{
	u32 lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) : : "memory");
	return ((u64)hi << 32) | lo;
}

/*
 * CLOCK_MONOTONIC in nanoseconds into *mono and the realtime offset into
 * *offset; 0 if the parameters are not ready (the caller asks the Sentry).
 */
static inline int read_clock(u64 *mono, i64 *offset)
{
	const volatile struct params *p = &vvar_params;
	u64 seq, ready, base_tsc, base_ns, mult, shift, tsc;
	i64 off;
	int spins = 0;

	for (;;) {
		seq = p->seq;
		if (seq & 1) {
			if (++spins > MAX_SPINS)
				return 0;
			__asm__ volatile("pause" ::: "memory");
			continue;
		}
		ready = p->ready;
		base_tsc = p->base_tsc;
		base_ns = p->base_ns;
		mult = p->mult;
		shift = p->shift;
		off = p->realtime_offset;
		tsc = rdtsc_ordered();
		if (p->seq == seq)
			break;
	}
	if (!ready)
		return 0;
	u64 delta = tsc > base_tsc ? tsc - base_tsc : 0;
	*mono = base_ns + (u64)(((unsigned __int128)delta * mult) >> shift);
	*offset = off;
	return 1;
}

/* The time of `clock` in nanoseconds; 0 if this code cannot tell. */
static inline int clock_ns(int clock, u64 *ns)
{
	u64 mono;
	i64 off;

	if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC)
		return 0;
	if (!read_clock(&mono, &off))
		return 0;
	*ns = clock == CLOCK_REALTIME ? mono + (u64)off : mono;
	return 1;
}

int __vdso_clock_gettime(int clock, struct timespec_k *ts)
{
	u64 ns;

	if (!clock_ns(clock, &ns))
		return syscall2(NR_clock_gettime, clock, (long)ts);
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
	return 0;
}

int __vdso_gettimeofday(struct timeval_k *tv, struct timezone_k *tz)
{
	u64 ns;

	if (tv) {
		if (!clock_ns(CLOCK_REALTIME, &ns))
			return syscall2(NR_gettimeofday, (long)tv, (long)tz);
		tv->tv_sec = ns / 1000000000;
		tv->tv_usec = ns % 1000000000 / 1000;
	}
	if (tz) {
		/* The Sentry keeps no timezone: zeros, as its syscall says. */
		tz->tz_minuteswest = 0;
		tz->tz_dsttime = 0;
	}
	return 0;
}

i64 __vdso_time(i64 *t)
{
	u64 ns;
	i64 sec;

	if (!clock_ns(CLOCK_REALTIME, &ns))
		return syscall2(NR_time, (long)t, 0);
	sec = ns / 1000000000;
	if (t)
		*t = sec;
	return sec;
}

int __vdso_clock_getres(int clock, struct timespec_k *res)
{
	/* Both clocks count nanoseconds; everything else is the Sentry's. */
	if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC)
		return syscall2(NR_clock_getres, clock, (long)res);
	if (res) {
		res->tv_sec = 0;
		res->tv_nsec = 1;
	}
	return 0;
}

int __vdso_getcpu(u32 *cpu, u32 *node, void *cache)
{
	u32 lo, hi, aux;

	if (!vvar_params.getcpu_rdtscp)
		return syscall3(NR_getcpu, (long)cpu, (long)node, (long)cache);
	/* Linux keeps (node << 12) | cpu in TSC_AUX on every CPU. */
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	(void)lo;
	(void)hi;
	if (cpu)
		*cpu = aux & 0xfff;
	if (node)
		*node = aux >> 12;
	return 0;
}

int clock_gettime(int, struct timespec_k *)
	__attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval_k *, struct timezone_k *)
	__attribute__((weak, alias("__vdso_gettimeofday")));
i64 time(i64 *) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int, struct timespec_k *)
	__attribute__((weak, alias("__vdso_clock_getres")));
int getcpu(u32 *, u32 *, void *)
	__attribute__((weak, alias("__vdso_getcpu")));
