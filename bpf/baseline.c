/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The baselines of bench/shaping's cost table, never attached.
 * BPF_PROG_TEST_RUN times them the same way as edt_egress:
 * - empty: does nothing. EDT minus it is what the shaper's program costs a
 *   packet, without the test harness's own overhead.
 * - clock: reads CLOCK_MONOTONIC once, as EDT must for every packet it
 *   stamps; minus empty, it is the time source's share of that cost.
 */
#include "bpf_api.h"

char _license[] SEC("license") = "GPL";

SEC("classifier")
int empty(struct __sk_buff *skb)
{
	(void)skb;
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int clock(struct __sk_buff *skb)
{
	/* Written where the verifier cannot drop the call. */
	skb->mark = (__u32)bpf_ktime_get_ns();
	return TC_ACT_UNSPEC;
}
