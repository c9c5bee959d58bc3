//! The rtnetlink backend: links, addresses and routes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{AddressMessageBuilder, LinkIpVlan, LinkMacVlan, LinkUnspec, RouteMessageBuilder};

use crate::config::ChildKind;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{errno, refused, Errno, Kernel};
use crate::observe::{to_ipvlan_mode, to_macvlan_mode};
use crate::plan::{Action, Change, NewLink};
use crate::state::{PODNET_LINK_GROUP, RTPROT_PODNET, RT_TABLE_MAIN};

/// Executes plan steps, acting by ifindex once a name is resolved.
pub struct NetlinkBackend<'k> {
    kernel: &'k Kernel,
    index: HashMap<String, u32>,
}

impl<'k> NetlinkBackend<'k> {
    pub fn new(kernel: &'k Kernel, index: HashMap<String, u32>) -> Self {
        NetlinkBackend { kernel, index }
    }

    async fn index_of(&mut self, name: &str) -> Result<u32> {
        if let Some(i) = self.index.get(name) {
            return Ok(*i);
        }
        let mut found = self
            .kernel
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match found.try_next().await {
            Ok(Some(m)) => {
                self.index.insert(name.to_string(), m.header.index);
                Ok(m.header.index)
            }
            Ok(None) => Err(Error::new(
                ErrorKind::NotFoundYet,
                format!("no interface {name}"),
            )),
            Err(e) if errno(&e) == Some(Errno::ENODEV) => Err(Error::new(
                ErrorKind::NotFoundYet,
                format!("no interface {name}"),
            )),
            Err(e) => Err(refused(e)),
        }
    }

    /// Runs one step. Removing what is already gone succeeds, so a retry or
    /// an undo after a partial failure converges.
    pub async fn execute(&mut self, action: &Action) -> Result<()> {
        let name = action.name.as_str();
        let h = self.kernel.handle().clone();
        match &action.change {
            Change::CreateLink(link) => return self.create(name, link).await,
            Change::DeleteLink { .. } => {
                let i = match self.index_of(name).await {
                    Ok(i) => i,
                    Err(e) if e.kind == ErrorKind::NotFoundYet => return Ok(()),
                    Err(e) => return Err(e),
                };
                self.index.remove(name);
                h.link()
                    .del(i)
                    .execute()
                    .await
                    .or_else(ignore(Errno::ENODEV))
            }
            Change::SetMtu { to, .. } => {
                let i = self.index_of(name).await?;
                h.link()
                    .set(LinkUnspec::new_with_index(i).mtu(*to).build())
                    .execute()
                    .await
            }
            Change::SetUp { up } => {
                let i = self.index_of(name).await?;
                let b = LinkUnspec::new_with_index(i);
                let b = if *up { b.up() } else { b.down() };
                h.link().set(b.build()).execute().await
            }
            Change::AddAddress { prefix } => {
                let i = self.index_of(name).await?;
                h.address()
                    .add(i, prefix.addr(), prefix.prefix_len())
                    .execute()
                    .await
            }
            Change::DelAddress { prefix } => {
                let i = self.index_of(name).await?;
                if prefix.addr().is_ipv4() {
                    keep_secondaries(name)?;
                }
                let msg = match prefix.addr() {
                    IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                        .index(i)
                        .address(a, prefix.prefix_len())
                        .build(),
                    IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                        .index(i)
                        .address(a, prefix.prefix_len())
                        .build(),
                };
                h.address()
                    .del(msg)
                    .execute()
                    .await
                    .or_else(ignore(Errno::EADDRNOTAVAIL))
            }
            Change::AddRoute { dst } => {
                let i = self.index_of(name).await?;
                h.route().add(link_route(*dst, i)).execute().await
            }
            Change::MarkLink { alias } => {
                let i = self.index_of(name).await?;
                h.link().set(mark(i, alias)).execute().await
            }
            Change::DelRoute { dst } => {
                let i = match self.index_of(name).await {
                    Ok(i) => i,
                    // The route went with its link.
                    Err(e) if e.kind == ErrorKind::NotFoundYet => return Ok(()),
                    Err(e) => return Err(e),
                };
                h.route()
                    .del(link_route(*dst, i))
                    .execute()
                    .await
                    .or_else(ignore(Errno::ESRCH))
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Bug,
                    format!("{}: {other:?} is not a netlink step", action.object()),
                ))
            }
        }
        .map_err(refused)
    }

    async fn create(&mut self, name: &str, link: &NewLink) -> Result<()> {
        let parent = self.index_of(&link.parent).await?;
        // podnet's group in the create request itself: should podnet stop
        // before the mark below, the link is still known as podnet's.
        let group = LinkAttribute::Group(PODNET_LINK_GROUP);
        let msg = match link.kind {
            ChildKind::Macvlan => {
                let b = LinkMacVlan::new(name, parent, to_macvlan_mode(link.mode))
                    .append_extra_attribute(group);
                match link.mtu {
                    Some(m) => b.mtu(m).build(),
                    None => b.build(),
                }
            }
            ChildKind::Ipvlan => {
                let b = LinkIpVlan::new(name, parent, to_ipvlan_mode(link.mode))
                    .append_extra_attribute(group);
                match link.mtu {
                    Some(m) => b.mtu(m).build(),
                    None => b.build(),
                }
            }
        };
        let h = self.kernel.handle().clone();
        h.link().add(msg).execute().await.map_err(|e| {
            let err = refused(e);
            if err.kind == ErrorKind::NotSupported {
                Error::new(
                    ErrorKind::NotSupported,
                    format!(
                        "this kernel cannot create {} links (module not available?)",
                        link.kind
                    ),
                )
            } else {
                err
            }
        })?;
        crate::failpoint::hit("after-create");
        // The kernel ignores IFLA_IFALIAS in a create request: the ownership
        // mark needs its own RTM_SETLINK. If marking fails, take the link
        // back rather than leave it half-made.
        let i = self.index_of(name).await?;
        let marked = h.link().set(mark(i, &link.alias)).execute().await;
        if let Err(e) = marked {
            let _ = h.link().del(i).execute().await;
            self.index.remove(name);
            return Err(refused(e).context("marking the new link as podnet's"));
        }
        Ok(())
    }
}

/// Removing a primary IPv4 address removes the secondaries of its subnet
/// with it, unless they are promoted: a shim re-addressed within one
/// subnet (`.1/24` to `.2/24`, the new one added first) would lose both.
/// Only ever called for podnet's own shims.
fn keep_secondaries(name: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/promote_secondaries");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        _ => std::fs::write(&path, "1").map_err(|e| {
            Error::new(
                ErrorKind::KernelRefused,
                format!("{name}: setting promote_secondaries before removing an address: {e}"),
            )
        }),
    }
}

/// podnet's ifalias on link `index`, and its group back to the default.
fn mark(index: u32, alias: &str) -> netlink_packet_route::link::LinkMessage {
    LinkUnspec::new_with_index(index)
        .alias(alias.to_string())
        .append_extra_attribute(LinkAttribute::Group(0))
        .build()
}

fn ignore(code: Errno) -> impl Fn(rtnetlink::Error) -> std::result::Result<(), rtnetlink::Error> {
    move |e| {
        if errno(&e) == Some(code) {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// `<dst> dev <oif> scope link proto podnet` in the main table. Delete uses
/// the same message: IPv4 matches scope and protocol exactly.
fn link_route(dst: IpNet, oif: u32) -> RouteMessage {
    let proto = RouteProtocol::from(RTPROT_PODNET);
    match dst {
        IpNet::V4(d) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(d.addr(), d.prefix_len())
            .output_interface(oif)
            .scope(RouteScope::Link)
            .protocol(proto)
            .table_id(RT_TABLE_MAIN)
            .build(),
        IpNet::V6(d) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(d.addr(), d.prefix_len())
            .output_interface(oif)
            .protocol(proto)
            .table_id(RT_TABLE_MAIN)
            .build(),
    }
}
