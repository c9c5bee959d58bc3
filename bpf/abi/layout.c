/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Not a program: build.rs compiles this for the BPF target to assembly and
 * reads each constant below, so the Rust mirrors in src/shaping/abi.rs are
 * checked against the layout the datapath really has (not against numbers
 * copied by hand). One `layout_<struct>__<field>` per field, plus
 * `layout_<struct>__size`.
 */
#include "bpf_api.h"
#include "edt_abi.h"

#define SIZE(s) const unsigned long layout_##s##__size = sizeof(struct s)
#define FIELD(s, f) const unsigned long layout_##s##__##f = offsetof(struct s, f)

SIZE(edt_key);
FIELD(edt_key, addr);
FIELD(edt_key, family);
FIELD(edt_key, direction);
FIELD(edt_key, pad);

SIZE(edt_tag);
FIELD(edt_tag, slot);
FIELD(edt_tag, ifindex);

SIZE(edt_slot);
FIELD(edt_slot, key);
FIELD(edt_slot, classid);

SIZE(edt_info);
FIELD(edt_info, rate_bytes);
FIELD(edt_info, horizon_ns);
FIELD(edt_info, burst_ns);
FIELD(edt_info, t_last);
FIELD(edt_info, bytes);
FIELD(edt_info, packets);
FIELD(edt_info, drops);
FIELD(edt_info, drop_bytes);
FIELD(edt_info, ns_per_byte_q24);
FIELD(edt_info, ce_threshold_ns);
FIELD(edt_info, marks);
FIELD(edt_info, t_ahead);

/* The constants the Rust side repeats. */
const unsigned long layout_const__EDT_FAMILY_IPV4 = EDT_FAMILY_IPV4;
const unsigned long layout_const__EDT_FAMILY_IPV6 = EDT_FAMILY_IPV6;
const unsigned long layout_const__EDT_DIR_EGRESS = EDT_DIR_EGRESS;
const unsigned long layout_const__EDT_DIR_INGRESS = EDT_DIR_INGRESS;
const unsigned long layout_const__EDT_DIR_POD_INGRESS = EDT_DIR_POD_INGRESS;
const unsigned long layout_const__EDT_TAG_FLAG = EDT_TAG_FLAG;
const unsigned long layout_const__EDT_TAG_SLOTS = EDT_TAG_SLOTS;
const unsigned long layout_const__EDT_DEFAULT_HORIZON_NS = EDT_DEFAULT_HORIZON_NS;
const unsigned long layout_const__EDT_MAP_MAX_ENTRIES = EDT_MAP_MAX_ENTRIES;
const unsigned long layout_const__EDT_Q24_SHIFT = EDT_Q24_SHIFT;
const unsigned long layout_const__EDT_Q24_MAX_LEN_BITS = EDT_Q24_MAX_LEN_BITS;
const unsigned long layout_const__EDT_Q24_MIN_RATE_BYTES = EDT_Q24_MIN_RATE_BYTES;
const unsigned long layout_const__EDT_AHEAD_MAX_LEN = EDT_AHEAD_MAX_LEN;
const unsigned long layout_const__EDT_AHEAD_BACKLOG_NS = EDT_AHEAD_BACKLOG_NS;
