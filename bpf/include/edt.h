/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Earliest Departure Time shaping, after Cilium's bpf/lib/edt.h.
 *
 * The kernel behaviour this relies on:
 * - The fq qdisc (sch_fq, since Linux 4.20's switch to the "earliest
 *   departure time" model) treats skb->tstamp as the packet's earliest
 *   departure time, in CLOCK_MONOTONIC nanoseconds, and holds the packet
 *   until then. Since 5.7 (39d010504e6b, "net_sched: sch_fq: add horizon
 *   attribute") it drops packets stamped further out than its horizon;
 *   podnet sets that above any endpoint's, so our own horizon decides.
 * - bpf_ktime_get_ns() is CLOCK_MONOTONIC, the same clock.
 * - tc egress (clsact or TCX) runs in __dev_queue_xmit before the root qdisc
 *   enqueues the packet, so a stamp written here is what fq sees; at egress
 *   the kernel keeps a BPF write to skb->tstamp as a delivery time.
 * - skb->wire_len (qdisc_skb_cb()->pkt_len) is the length tc accounts, GSO
 *   segments' headers included, so rates are in bytes on the wire.
 *
 * - bpf_skb_ecn_set_ce() (tc since 5.1) sets CE only on an ECT packet and
 *   fixes the IPv4 checksum; on a clone whose header is shared it does
 *   nothing (TCP's clones own their headers).
 *
 * So the program only computes departure times; fq does the waiting, TCP
 * small queues and ECN push back on the sender, and nothing here ever
 * sleeps.
 */
#ifndef PODNET_EDT_H
#define PODNET_EDT_H

#include "bpf_api.h"
#include "edt_abi.h"

/* What to do with a packet that is not shaped here. TC_ACT_UNSPEC, not
 * TC_ACT_OK: as a TCX program that is "next", as a clsact filter
 * "continue", and when nothing follows the packet passes either way. Either
 * way a program attached after ours (a firewall, another CNI's) still runs,
 * which TC_ACT_OK would skip. */
#define EDT_PASS TC_ACT_UNSPEC

static __always_inline __u64 edt_wire_len(const struct __sk_buff *skb)
{
	__u32 len = skb->wire_len;

	return len ? len : skb->len;
}

/* A packet's time at the endpoint's rate, in ns: a multiply instead of a
 * 64-bit division, about 10 ns a packet. */
static __always_inline __u64 edt_delay(struct edt_info *info, __u64 len, __u64 rate)
{
	__u64 mult = READ_ONCE(info->ns_per_byte_q24);

	if (mult && len < (1ULL << EDT_Q24_MAX_LEN_BITS))
		return (len * mult) >> EDT_Q24_SHIFT;
	return len * NSEC_PER_SEC / rate;
}

/*
 * Takes `delay` on the endpoint's lane ahead (see edt_schedule()) from `t`
 * on: the packet's departure time on it when that is at most `t + within`,
 * its time then also charged to the endpoint's clock, which the bulk
 * yields; 0, with the lane given back, when not.
 */
static __always_inline __u64 edt_lane_take(struct edt_info *info, __u64 t,
					   __u64 delay, __u64 within)
{
	__u64 last = READ_ONCE(info->t_ahead), t_next;

	if (last < t)
		__sync_val_compare_and_swap(&info->t_ahead, last, t);
	t_next = __sync_fetch_and_add(&info->t_ahead, delay) + delay;
	if (t_next > t + within) {
		__sync_fetch_and_sub(&info->t_ahead, delay);
		return 0;
	}
	__sync_fetch_and_add(&info->t_last, delay);
	return t_next;
}

/*
 * The lane ahead (see edt_schedule()) for a packet that may take it, when
 * that lane is idle: the packet would leave now, so it is charged here
 * exactly as edt_schedule() charges it and needs no queue at all (1). 0,
 * with nothing charged, when the lane holds a backlog or the entry has
 * none (no rate, or no marking and so no lane): the packet then queues.
 */
static __always_inline int edt_ahead_now(struct __sk_buff *skb,
					 struct edt_info *info)
{
	__u64 now, delay, rate, len = edt_wire_len(skb);

	rate = READ_ONCE(info->rate_bytes);
	if (!rate || !READ_ONCE(info->ce_threshold_ns))
		return 0;
	delay = edt_delay(info, len, rate);
	now = bpf_ktime_get_ns();
	/* Idle: nothing ahead of it, it leaves after its own time. */
	if (!edt_lane_take(info, now, delay, delay))
		return 0;
	__sync_fetch_and_add(&info->packets, 1);
	__sync_fetch_and_add(&info->bytes, len);
	return 1;
}

/*
 * Stamps the packet with its departure time for the endpoint `info`, or
 * tells to drop it. The departure time is
 *
 *	t_next = max(now - burst, t_last) + len * NSEC_PER_SEC / rate
 *
 * i.e. the packet leaves once the endpoint's earlier packets and this one
 * have had their time at `rate`. t_last advances by an atomic add, so
 * packets of one endpoint sent from several CPUs at once each reserve
 * their own slot (Cilium's READ_ONCE/WRITE_ONCE pair can lose one to a
 * race, letting that packet through for free).
 *
 * `ahead`: the packet may go ahead of the endpoint's queue (edt_ahead()).
 */
static __always_inline int edt_schedule(struct __sk_buff *skb,
					struct edt_info *info, int ahead)
{
	__u64 now, t, floor, last, delay, t_next, horizon, burst, rate, ce;
	__u64 len = edt_wire_len(skb);

	rate = READ_ONCE(info->rate_bytes);
	if (!rate)
		goto pass;
	horizon = READ_ONCE(info->horizon_ns);
	if (!horizon)
		horizon = EDT_DEFAULT_HORIZON_NS;
	burst = READ_ONCE(info->burst_ns);

	now = bpf_ktime_get_ns();
	/* A departure time already on the packet (TCP's own pacing, or
	 * SO_TXTIME) is honoured when it is plausible. */
	t = skb->tstamp;
	if (t < now || t > now + horizon)
		t = now;

	delay = edt_delay(info, len, rate);

	/*
	 * The lane ahead. One clock per endpoint is one FIFO: a ping, a DNS
	 * query or a TCP ACK waits behind the endpoint's own bulk, up to the
	 * horizon (2 s in Cilium), and with 128 connections no marking can
	 * make that FIFO short, as each keeps at least two segments in it.
	 * So a small packet that is not TCP data (see edt_ahead(); TCP data
	 * keeps its order) leaves at once, paced at the rate on a clock of
	 * its own, and its time is charged to the endpoint's clock, which
	 * the bulk then yields: over time the endpoint still gets exactly its
	 * rate. Only while that lane's own backlog stays under
	 * EDT_AHEAD_BACKLOG_NS: an endpoint sending nothing but small
	 * packets fills it and queues as before, so it can be ahead of its
	 * rate by at most that much. An entry that never marks
	 * (ce_threshold_ns 0: "off", or an older podnet's) has no lane
	 * either: one FIFO, as Cilium keeps.
	 */
	if (ahead && READ_ONCE(info->ce_threshold_ns)) {
		t_next = edt_lane_take(info, t, delay, EDT_AHEAD_BACKLOG_NS);
		if (t_next) {
			if (t_next > t)
				skb->tstamp = t_next;
			goto pass;
		}
	}

	/* After idle, t_last lags behind: move it up to the floor first.
	 * If the exchange loses, another CPU moved it, which is as good. */
	floor = t > burst ? t - burst : 0;
	last = READ_ONCE(info->t_last);
	if (last < floor)
		__sync_val_compare_and_swap(&info->t_last, last, floor);
	t_next = __sync_fetch_and_add(&info->t_last, delay) + delay;

	if (t_next > now + horizon) {
		/* Give the slot back: the packet never goes out. */
		__sync_fetch_and_sub(&info->t_last, delay);
		__sync_fetch_and_add(&info->drops, 1);
		__sync_fetch_and_add(&info->drop_bytes, len);
		return TC_ACT_SHOT;
	}
	/* Congestion: the packet waits longer than the threshold behind the
	 * endpoint's earlier packets (t_next - delay is when its own slot
	 * starts). Its own transmission time is not counted: a 64 KiB GSO
	 * packet at 10 Mbit/s takes 52 ms and is no sign of a queue. An
	 * ECN-capable sender is told to slow down long before the horizon;
	 * for the others the horizon is the bound. */
	ce = READ_ONCE(info->ce_threshold_ns);
	if (ce && t_next - delay > now + ce && bpf_skb_ecn_set_ce(skb))
		__sync_fetch_and_add(&info->marks, 1);
	if (t_next > t)
		skb->tstamp = t_next;
pass:
	__sync_fetch_and_add(&info->packets, 1);
	__sync_fetch_and_add(&info->bytes, len);
	return EDT_PASS;
}

#endif /* PODNET_EDT_H */
