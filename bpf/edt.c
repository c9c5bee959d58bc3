/* SPDX-License-Identifier: Apache-2.0 */
/*
 * podnet's EDT shaper, three tc programs (each a TCX link or a clsact
 * direct-action filter) sharing one endpoint map:
 * - edt_egress, on the egress hook of the device the pods' traffic leaves
 *   through (an ipvlan/macvlan master): finds the endpoint by the packet's
 *   source address and stamps the departure time; fq on the same device
 *   holds the packet until then (see include/edt.h).
 * - edt_redirect, on the same master's ingress hook: hands a packet whose
 *   destination has an ingress entry to podnet's ifb (podnet_ingress_v1
 *   names it); everything else goes on as before. tc ingress runs before
 *   the macvlan/ipvlan receive handler, so every mode is seen here.
 *   edt_redirect_ahead, its twin where the ifb's root is fq, lets a small
 *   packet whose lane ahead is idle go straight on, charged here.
 * - edt_ingress, on the ifb's egress hook: the same scheduling by the
 *   destination's ingress entry, with fq on the ifb. The ifb then hands
 *   the packet back to the master's receive path past tc (it sets
 *   tc_skip_classify), and macvlan/ipvlan deliver it to the pod.
 * - edt_pod_ingress, on a veth pod's host-side veth egress (what the pod
 *   receives): by the destination's EDT_DIR_POD_INGRESS entry, with fq on
 *   that veth.
 * - edt_classify, on a veth pod's host-side veth ingress (what the pod
 *   sends, its own source address still on it): a packet whose source has
 *   a tag (podnet_tag_v1) and that the node routes out through the tag's
 *   device gets EDT_TAG_FLAG | slot in skb->queue_mapping, which
 *   forwarding and NAT leave alone. edt_egress on that device finds the
 *   slot's address (podnet_slot_v1), so the pod's egress entry schedules
 *   the packet after masquerade has replaced its source, and clears
 *   queue_mapping, so the device picks its transmit queue as ever. What
 *   the node delivers elsewhere (to itself, to another pod) is not tagged.
 *   On a device the HTB backend shapes, edt_egress only does this: the
 *   slot names the pod's class, and the packet's priority selects it.
 *
 * Fails open: a packet that is not IPv4/IPv6 over Ethernet, or whose
 * address has no entry, passes untouched.
 */
#include "bpf_api.h"
#include "edt_abi.h"
#include "edt.h"

char _license[] SEC("license") = "GPL";

/* Pinned by name under podnet's pin directory (/sys/fs/bpf/podnet), so the
 * entries and their state outlive podnetd and survive a program upgrade.
 * Hash, not LRU: an entry is configuration and must never be evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct edt_key);
	__type(value, struct edt_info);
	__uint(max_entries, EDT_MAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_edt_v1 SEC(".maps");

/* The ifindex of podnet's ingress ifb (0: none yet, redirect nothing),
 * written by podnet; pinned beside the endpoint map. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_ingress_v1 SEC(".maps");

/* Veth pods' tags: a veth pod's egress key -> its slot and device, read by
 * edt_classify; and slot -> that key, read by edt_egress. Written by
 * podnet, slot first. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct edt_key);
	__type(value, struct edt_tag);
	__uint(max_entries, EDT_TAG_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_tag_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct edt_slot);
	__uint(max_entries, EDT_TAG_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_slot_v1 SEC(".maps");

/* Copies the packet's source address (len bytes at offset off) into key:
 * straight from the linear data when the headers are there, as they are
 * for what a host or a pod sends, and through bpf_skb_load_bytes() when
 * they are not. Direct access saves two helper calls a packet, most of what
 * finding the endpoint costs (bench/shaping's cost table). */
static __always_inline int edt_load_addr(struct __sk_buff *skb, __u8 *data,
					 __u8 *data_end, __u32 off,
					 __u8 *addr, __u32 len)
{
	if (data + off + 16 <= data_end) {
		if (len == 4)
			__builtin_memcpy(addr, data + off, 4);
		else
			__builtin_memcpy(addr, data + off, 16);
		return 1;
	}
	return bpf_skb_load_bytes(skb, off, addr, len) == 0;
}

/* Fills key with the packet's source address (dst 0) or destination
 * address (dst 1); 0 if it has none we shape. */
static __always_inline int edt_key_from(struct __sk_buff *skb,
					struct edt_key *key, int dst)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *data_end = (__u8 *)(long)skb->data_end;
	__be16 proto;

	/* The EtherType in the frame must agree with skb->protocol: that
	 * rules out devices without a 14-byte Ethernet header and frames
	 * with an in-band VLAN tag. */
	if (data + ETH_HLEN <= data_end)
		proto = *(__be16 *)(data + 12);
	else if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
		return 0;
	if (proto != skb->protocol)
		return 0;

	if (proto == bpf_htons(ETH_P_IP)) {
		/* saddr, daddr: offsets 12 and 16 of the IPv4 header */
		if (!edt_load_addr(skb, data, data_end, ETH_HLEN + (dst ? 16 : 12),
				   key->addr, 4))
			return 0;
		key->family = EDT_FAMILY_IPV4;
		return 1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		/* saddr, daddr: offsets 8 and 24 of the IPv6 header */
		if (!edt_load_addr(skb, data, data_end, ETH_HLEN + (dst ? 24 : 8),
				   key->addr, 16))
			return 0;
		key->family = EDT_FAMILY_IPV6;
		return 1;
	}
	return 0;
}

/* Whether a packet may take edt_schedule()'s lane ahead of the endpoint's
 * queue: at most EDT_AHEAD_MAX_LEN bytes on the wire and not TCP data, i.e.
 * ICMP, UDP, or TCP with no payload (an ACK, a SYN, a FIN). TCP data never
 * does: a small segment must not overtake its own flow's earlier ones.
 * IPv6 with extension headers, and anything this does not read, queues. */
static __always_inline int edt_ahead(struct __sk_buff *skb, __u8 family)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *data_end = (__u8 *)(long)skb->data_end;
	__u8 *ip = data + ETH_HLEN;
	__u8 *tcp;
	__u32 ihl, payload, doff;
	__u8 proto;

	if (edt_wire_len(skb) > EDT_AHEAD_MAX_LEN)
		return 0;
	if (family == EDT_FAMILY_IPV4) {
		if (ip + 20 > data_end)
			return 0;
		proto = ip[9];
		ihl = (ip[0] & 0x0f) * 4;
		payload = ((__u32)ip[2] << 8 | ip[3]);
		if (ihl < 20 || payload < ihl)
			return 0;
		payload -= ihl;
	} else {
		if (ip + 40 > data_end)
			return 0;
		proto = ip[6];
		ihl = 40;
		payload = ((__u32)ip[4] << 8 | ip[5]);
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 || proto == IPPROTO_UDP)
		return 1;
	if (proto != IPPROTO_TCP)
		return 0;
	/* ihl is at most 60: the verifier sees the bound. One pointer for
	 * the check and the read, so it sees they are the same. */
	tcp = ip + ihl;
	if (tcp + 13 > data_end)
		return 0;
	doff = (tcp[12] >> 4) * 4;
	return doff >= 20 && payload == doff;
}

/* Schedules the packet by its endpoint's entry in `direction`, keyed by
 * the source address (egress) or the destination (ingress). */
static __always_inline int edt_shape(struct __sk_buff *skb, __u8 direction)
{
	/* Zeroed as a whole: the pad bytes are part of the hash key. */
	struct edt_key key = {};
	struct edt_info *info;

	if (!edt_key_from(skb, &key, direction != EDT_DIR_EGRESS))
		return EDT_PASS;
	key.direction = direction;

	info = bpf_map_lookup_elem(&podnet_edt_v1, &key);
	if (!info)
		return EDT_PASS;
	return edt_schedule(skb, info, edt_ahead(skb, key.family));
}

/* The egress entry of a packet a veth pod's edt_classify tagged, found by
 * the slot's address; the tag is cleared whatever it names. With HTB on
 * the device the slot names the pod's class instead, and the packet's
 * priority selects it (htb takes a priority that is one of its leaf
 * classes' ids before any filter); there is no entry then. NULL for a
 * packet with no tag (or a slot podnet has since dropped). */
static __always_inline struct edt_info *edt_tagged(struct __sk_buff *skb)
{
	__u32 mapping = skb->queue_mapping, slot;
	struct edt_slot *named;

	if (!(mapping & EDT_TAG_FLAG))
		return NULL;
	skb->queue_mapping = 0;
	slot = mapping & (EDT_TAG_FLAG - 1);
	named = bpf_map_lookup_elem(&podnet_slot_v1, &slot);
	if (!named)
		return NULL;
	if (named->classid)
		skb->priority = named->classid;
	return bpf_map_lookup_elem(&podnet_edt_v1, &named->key);
}

SEC("classifier")
int edt_egress(struct __sk_buff *skb)
{
	struct edt_info *info = edt_tagged(skb);

	if (info) {
		__u8 family = skb->protocol == bpf_htons(ETH_P_IPV6) ?
			EDT_FAMILY_IPV6 : EDT_FAMILY_IPV4;
		return edt_schedule(skb, info, edt_ahead(skb, family));
	}
	return edt_shape(skb, EDT_DIR_EGRESS);
}

SEC("classifier")
int edt_ingress(struct __sk_buff *skb)
{
	return edt_shape(skb, EDT_DIR_INGRESS);
}

SEC("classifier")
int edt_pod_ingress(struct __sk_buff *skb)
{
	return edt_shape(skb, EDT_DIR_POD_INGRESS);
}

/* Hands a packet with an ingress entry to podnet's ifb. `ahead` (the ifb
 * shapes with EDT): a small packet that is not TCP data whose lane ahead
 * is idle is charged here and goes on to the pod at once, as from the
 * ifb it would leave at once anyway; it skips the ifb, where it would
 * wait behind the 64 KiB GRO aggregates the ifb hands back before it. */
static __always_inline int edt_to_ifb(struct __sk_buff *skb, int ahead)
{
	struct edt_key key = {};
	struct edt_info *info;
	__u32 zero = 0, *ifb;

	if (!edt_key_from(skb, &key, 1))
		return EDT_PASS;
	key.direction = EDT_DIR_INGRESS;
	info = bpf_map_lookup_elem(&podnet_edt_v1, &key);
	if (!info)
		return EDT_PASS;
	ifb = bpf_map_lookup_elem(&podnet_ingress_v1, &zero);
	if (!ifb || !*ifb)
		return EDT_PASS;
	if (ahead && edt_ahead(skb, key.family) && edt_ahead_now(skb, info))
		return EDT_PASS;
	/* Egress of the ifb: its qdisc (fq or htb) then its edt_ingress. */
	return bpf_redirect(*ifb, 0);
}

SEC("classifier")
int edt_redirect(struct __sk_buff *skb)
{
	return edt_to_ifb(skb, 0);
}

/* The redirect where the ifb's root is fq (EDT): an HTB class would not
 * know of what went around it. */
SEC("classifier")
int edt_redirect_ahead(struct __sk_buff *skb)
{
	return edt_to_ifb(skb, 1);
}

/* Whether the node routes this packet (received on skb->ifindex) out
 * through ifindex: the forwarding lookup the stack will make. */
static __always_inline int edt_routed_out(struct __sk_buff *skb,
					  struct edt_key *src, __u32 ifindex)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *data_end = (__u8 *)(long)skb->data_end;
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.ifindex = skb->ifindex;
	if (src->family == EDT_FAMILY_IPV4) {
		__u8 *ip = data + ETH_HLEN;

		if (ip + 20 > data_end)
			return 0;
		fib.family = AF_INET;
		fib.tos = ip[1];
		fib.l4_protocol = ip[9];
		__builtin_memcpy(fib.src, ip + 12, 4);
		__builtin_memcpy(fib.dst, ip + 16, 4);
	} else {
		__u8 *ip = data + ETH_HLEN;

		if (ip + 40 > data_end)
			return 0;
		fib.family = AF_INET6;
		fib.l4_protocol = ip[6];
		__builtin_memcpy(fib.src, ip + 8, 16);
		__builtin_memcpy(fib.dst, ip + 24, 16);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH &&
	    rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 0;
	return fib.ifindex == ifindex;
}

SEC("classifier")
int edt_classify(struct __sk_buff *skb)
{
	struct edt_key key = {};
	struct edt_tag *tag;
	__u32 slot;

	if (!edt_key_from(skb, &key, 0))
		return EDT_PASS;
	key.direction = EDT_DIR_EGRESS;
	tag = bpf_map_lookup_elem(&podnet_tag_v1, &key);
	if (!tag)
		return EDT_PASS;
	slot = READ_ONCE(tag->slot);
	if (!slot || slot >= EDT_TAG_SLOTS)
		return EDT_PASS;
	if (!edt_routed_out(skb, &key, READ_ONCE(tag->ifindex)))
		return EDT_PASS;
	skb->queue_mapping = EDT_TAG_FLAG | slot;
	return EDT_PASS;
}
