/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tc program that does nothing: the baseline of bench/shaping's cost
 * table. BPF_PROG_TEST_RUN times it the same way as edt_egress, so the
 * difference between the two is what the shaper's program itself costs a
 * packet, without the test harness's own overhead. Never attached.
 */
#include "bpf_api.h"

char _license[] SEC("license") = "GPL";

SEC("classifier")
int empty(struct __sk_buff *skb)
{
	(void)skb;
	return TC_ACT_UNSPEC;
}
