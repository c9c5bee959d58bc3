/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The little of the kernel's BPF UAPI and of libbpf's bpf_helpers.h that
 * podnet's programs use, written out so that building needs only clang:
 * no linux-headers, no libbpf-dev, and no multiarch include path for
 * <asm/types.h>. Everything here is stable kernel ABI (UAPI structs only
 * grow at the end, helper numbers never change).
 */
#ifndef PODNET_BPF_API_H
#define PODNET_BPF_API_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;

#define NULL ((void *)0)

#define SEC(name) __attribute__((section(name), used))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define offsetof(type, member) __builtin_offsetof(type, member)

/* BTF-defined maps, as libbpf and aya read them from the ".maps" section. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
};

/* map_flags */
#define BPF_F_NO_PREALLOC (1U << 0)

/* pinning: the loader pins the map at <pin dir>/<map name> and reuses a
 * map already pinned there. */
#define LIBBPF_PIN_BY_NAME 1

/* Helper functions, by their fixed numbers in enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
				  __u32 len) = (void *)26;
/* Sets CE on an ECT (ECN-capable) IPv4/IPv6 packet, fixing the IPv4 header
 * checksum; 1 if it did, 0 if the packet is not ECT (or its IP header is
 * not writable). Runs on the network header the stack set. tc since 5.1. */
static long (*bpf_skb_ecn_set_ce)(void *skb) = (void *)97;
/* Hands the packet to ifindex's egress once the program returns (its
 * TC_ACT_REDIRECT). tc since 4.4. */
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;

/* struct bpf_fib_lookup from <linux/bpf.h>: a route lookup as the packet's
 * forwarding would make it (tc since 4.18). */
#define AF_INET 2
#define AF_INET6 10
struct bpf_fib_lookup {
	__u8 family;
	__u8 l4_protocol;
	__be16 sport;
	__be16 dport;
	__u16 tot_len;		/* 0: the helper checks the skb's own size */
	__u32 ifindex;		/* in: the receiving device; out: egress */
	union {
		__u8 tos;	/* IPv4 */
		__be32 flowinfo; /* IPv6: flow label and priority */
	};
	__u32 src[4];		/* IPv4: src[0] */
	__u32 dst[4];
	__u32 vlan_tbid;
	__u8 macs[12];
};
_Static_assert(sizeof(struct bpf_fib_lookup) == 64, "bpf_fib_lookup size");
/* Return codes the callers here read: a route out of the node was found
 * (the neighbour or the MTU aside, params.ifindex is the egress device). */
#define BPF_FIB_LKUP_RET_SUCCESS 0
#define BPF_FIB_LKUP_RET_NO_NEIGH 7
#define BPF_FIB_LKUP_RET_FRAG_NEEDED 8
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params,
			      int plen, __u32 flags) = (void *)69;

/* Return codes of a tc (sched_cls, direct-action) program. For a TCX
 * program TC_ACT_UNSPEC is TCX_NEXT and TC_ACT_OK is TCX_PASS. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

#define __bpf_md_ptr(type, name) \
	union { \
		type name; \
		__u64 : 64; \
	} __attribute__((aligned(8)))

/* struct __sk_buff from <linux/bpf.h>, up to the last field podnet reads.
 * The verifier checks accesses by offset against the kernel's own layout,
 * so a prefix is enough; the asserts below pin the offsets we rely on. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(void *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
};

_Static_assert(offsetof(struct __sk_buff, protocol) == 16, "__sk_buff.protocol");
_Static_assert(offsetof(struct __sk_buff, tstamp) == 152, "__sk_buff.tstamp");
_Static_assert(offsetof(struct __sk_buff, wire_len) == 160, "__sk_buff.wire_len");

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_htons(x) ((__be16)__builtin_bswap16(x))
#else
#define bpf_htons(x) ((__be16)(x))
#endif

#define ETH_HLEN 14
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Shared fields are read and written once per access, as the kernel's
 * macros do: the compiler may neither tear nor repeat nor cache them. */
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#endif /* PODNET_BPF_API_H */
