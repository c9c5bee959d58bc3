/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EDT map's key and value: the ABI between the datapath (edt.h) and
 * podnet (src/shaping/abi.rs mirrors every struct here as #[repr(C)]; a unit
 * test compares its sizes and offsets with the ones build.rs reads from
 * abi/layout.c, compiled for the BPF target).
 *
 * Rules for changing it: every hole is an explicit, zeroed pad field;
 * fields were added in place of `reserved`, which is used up: anything
 * else is a new map name (EDT_MAP_NAME), because the map is pinned and
 * outlives podnet. A field an older podnet left zero must mean "off".
 */
#ifndef PODNET_EDT_ABI_H
#define PODNET_EDT_ABI_H

#define NSEC_PER_SEC 1000000000ULL

/* edt_key.family */
#define EDT_FAMILY_IPV4 4
#define EDT_FAMILY_IPV6 6

/* edt_key.direction: egress (by source address), ingress through podnet's
 * ifb (by destination; the masters' redirect hands it these), and ingress
 * at a veth pod's host-side veth (by destination; never redirected, so a
 * veth pod's packets routed in through a master are shaped once). */
#define EDT_DIR_EGRESS 0
#define EDT_DIR_INGRESS 1
#define EDT_DIR_POD_INGRESS 2

/* Veth pods' egress tags: edt_classify, on a veth pod's host-side veth,
 * puts EDT_TAG_FLAG | slot in skb->queue_mapping for a packet that leaves
 * through the tag's device; edt_egress there finds the pod's address by
 * the slot (masquerade has replaced the source by then) and clears it.
 * Real queue numbers stay far below the flag (a device has at most 4096
 * queues). Slots are 1 .. EDT_TAG_SLOTS - 1. */
#define EDT_TAG_FLAG 0x8000
#define EDT_TAG_SLOTS 32768

/* Used when an entry has horizon_ns == 0. */
#define EDT_DEFAULT_HORIZON_NS (2 * NSEC_PER_SEC)

#define EDT_MAP_MAX_ENTRIES 65536

/* One endpoint address in one direction. IPv4 fills addr[0..4] (network
 * order) and leaves addr[4..16] zero; IPv6 fills all 16 bytes. */
struct edt_key {
	__u8 addr[16];
	__u8 family;
	__u8 direction;
	__u8 pad[2];
};

/* podnet_tag_v1's value, keyed by a veth pod's egress key: the pod's
 * slot and the device (ifindex) its shaped traffic leaves through. */
struct edt_tag {
	__u32 slot;
	__u32 ifindex;
};

/* podnet_slot_v1's value: the veth pod's egress key, and (HTB) the
 * classid of its class on the tag's device, 0 with EDT. */
struct edt_slot {
	struct edt_key key;
	__u32 classid;
};

/* Per-endpoint state. podnet writes the configuration part; the datapath
 * writes the rest, from several CPUs at once (hence READ_ONCE/WRITE_ONCE
 * and atomics on it). podnet preserves t_last and the counters when it
 * changes a limit, so a rate change neither forgets the queue already
 * scheduled nor resets the counters. */
struct edt_info {
	/* configuration, written by podnet */
	__u64 rate_bytes;	/* bytes/s on the wire; 0 = count, never delay */
	__u64 horizon_ns;	/* drop a packet that would leave later than
				 * now + horizon_ns; 0 = EDT_DEFAULT_HORIZON_NS */
	__u64 burst_ns;		/* credit after idle, as time at rate_bytes */
	/* state, written by the datapath */
	__u64 t_last;		/* departure time of the last packet scheduled
				 * (CLOCK_MONOTONIC ns) */
	__u64 bytes;		/* bytes passed (wire length) */
	__u64 packets;		/* packets passed */
	__u64 drops;		/* packets dropped at the horizon */
	__u64 drop_bytes;	/* their bytes */
	/* configuration, written by podnet beside rate_bytes */
	__u64 ns_per_byte_q24;	/* NSEC_PER_SEC * 2^24 / rate_bytes, rounded
				 * up: the datapath multiplies by it instead
				 * of dividing by the rate. 0 (an entry an
				 * older podnet wrote, or a rate below
				 * EDT_Q24_MIN_RATE_BYTES) = divide. */
	/* configuration, written by podnet (0 in an older podnet's entry) */
	__u64 ce_threshold_ns;	/* CE-mark an ECN-capable packet that waits
				 * longer than this behind the endpoint's
				 * earlier packets; 0 = never mark */
	/* state, written by the datapath */
	__u64 marks;		/* packets CE-marked */
	__u64 t_ahead;		/* departure time of the last packet sent
				 * ahead of the queue (edt.h, "ahead") */
};

/* ns_per_byte_q24's fixed point, and the bounds that keep len * it within
 * 64 bits: a packet shorter than 2^EDT_Q24_MAX_LEN_BITS bytes (BIG TCP's
 * 512 KiB GSO packets are), at a rate of at least EDT_Q24_MIN_RATE_BYTES
 * (7.6 kbit/s), so that ns_per_byte_q24 < 2^(64 - EDT_Q24_MAX_LEN_BITS). */
#define EDT_Q24_SHIFT 24
#define EDT_Q24_MAX_LEN_BITS 20
#define EDT_Q24_MIN_RATE_BYTES 954

_Static_assert(sizeof(struct edt_key) == 20, "edt_key size");
_Static_assert(offsetof(struct edt_key, family) == 16, "edt_key.family");
_Static_assert(sizeof(struct edt_tag) == 8, "edt_tag size");
_Static_assert(sizeof(struct edt_slot) == 24, "edt_slot size");
_Static_assert(sizeof(struct edt_info) == 96, "edt_info size");
_Static_assert(offsetof(struct edt_info, t_last) == 24, "edt_info.t_last");
_Static_assert(offsetof(struct edt_info, ns_per_byte_q24) == 64, "edt_info.ns_per_byte_q24");
_Static_assert(offsetof(struct edt_info, ce_threshold_ns) == 72, "edt_info.ce_threshold_ns");
_Static_assert(offsetof(struct edt_info, marks) == 80, "edt_info.marks");
_Static_assert(offsetof(struct edt_info, t_ahead) == 88, "edt_info.t_ahead");

/* edt.h's lane ahead of the queue: packets up to this long on the wire, and
 * at most this much of the lane's own backlog. */
#define EDT_AHEAD_MAX_LEN 256
#define EDT_AHEAD_BACKLOG_NS 1000000ULL

#endif /* PODNET_EDT_ABI_H */
